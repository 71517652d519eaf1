//! etcd's Lock and Election gRPC services (`v3lockpb`, `v3electionpb`) through the `etcd-client` crate, as a
//! client library uses them (jetcd's lock client calls the same service).
//!
//! - Several contenders for one lock, each on a lease of its own kept alive: exactly one holds the lock at a time,
//!   every one gets it in turn, and a holder that dies (its keep-alives stop, it never unlocks) gives the lock up
//!   only when its lease expires.
//! - An election with three campaigners and an observer: the observer sees every leader and every proclamation in
//!   order; resigning and a revoked lease hand leadership to the next campaigner.
//! - The answers and errors a client sees (key names, "election: not leader", "election: no leader", the missing
//!   leader key, an unknown lease, a waiter that gives up) compared with etcd 3.4.23's for the same calls.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{free_port, start};
use etcd_client::{Client, LeaderKey, LockOptions, ProclaimOptions, ResignOptions};

const LEASE_TTL: i64 = 2;

async fn client(endpoint: &str) -> Client {
    Client::connect([endpoint], None).await.expect("connect")
}

/// A lease kept alive until the returned handle is aborted (the contender "dies").
async fn kept_lease(c: &mut Client) -> (i64, tokio::task::JoinHandle<()>) {
    let id = c.lease_grant(LEASE_TTL, None).await.unwrap().id();
    let (mut keeper, mut acks) = c.lease_keep_alive(id).await.unwrap();
    let task = tokio::spawn(async move {
        loop {
            if keeper.keep_alive().await.is_err() || acks.message().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    (id, task)
}

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f).await.expect("in time")
}

#[test]
fn contenders_hold_the_lock_one_at_a_time_and_a_dead_holder_lets_go_at_lease_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(dir.path(), free_port(), free_port());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(within(60, async {
        let holders = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let died_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
        let mut tasks = Vec::new();
        for i in 0..4usize {
            let (endpoint, holders, order, died_at) =
                (m.endpoint.clone(), Arc::clone(&holders), Arc::clone(&order), Arc::clone(&died_at));
            tasks.push(tokio::spawn(async move {
                let mut c = client(&endpoint).await;
                let (lease, keeper) = kept_lease(&mut c).await;
                let got = c.lock("job", Some(LockOptions::new().with_lease(lease))).await.unwrap();
                let acquired = Instant::now();
                assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "contender {i}: someone else holds the lock");
                assert_eq!(got.key(), format!("job/{lease:x}").as_bytes(), "etcd's key: the name, /, the lease in hex");
                // The server agrees: this key is the oldest under the lock's prefix.
                let first = c
                    .get(
                        "job/",
                        Some(
                            etcd_client::GetOptions::new()
                                .with_prefix()
                                .with_sort(etcd_client::SortTarget::Create, etcd_client::SortOrder::Ascend)
                                .with_limit(1),
                        ),
                    )
                    .await
                    .unwrap();
                assert_eq!(first.kvs()[0].key(), got.key(), "contender {i}");
                let previous_death = died_at.lock().unwrap().take();
                if let Some(t) = previous_death {
                    let waited = acquired - t;
                    assert!(
                        waited >= Duration::from_millis(1000),
                        "contender {i} got the lock {waited:?} after the holder died: before its lease expired"
                    );
                }
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(200)).await;
                holders.fetch_sub(1, Ordering::SeqCst);
                if i == 0 {
                    // The first holder dies holding the lock: no unlock, no more keep-alives.
                    *died_at.lock().unwrap() = Some(Instant::now());
                    keeper.abort();
                    return;
                }
                c.unlock(got.key()).await.unwrap();
                keeper.abort();
                c.lease_revoke(lease).await.unwrap();
            }));
            // Contender 0 first, so that the one that dies holds the lock while the others wait.
            if i == 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 4, "every contender got the lock: {order:?}");
        assert_eq!(order[0], 0);
    }));
}

#[test]
fn an_observer_sees_every_leader_and_proclamation_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(dir.path(), free_port(), free_port());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(within(60, async {
        let mut c = client(&m.endpoint).await;
        let mut observer = c.observe("svc").await.unwrap();
        let mut leases = Vec::new();
        for _ in 0..3 {
            leases.push(c.lease_grant(30, None).await.unwrap().id());
        }
        let first = c.campaign("svc", "a1", leases[0]).await.unwrap();
        let first = first.leader().unwrap().clone();
        // The others wait behind the first.
        let mut waiting = Vec::new();
        for (lease, value) in [(leases[1], "b1"), (leases[2], "c1")] {
            let mut c = c.clone();
            waiting.push(tokio::spawn(async move { c.campaign("svc", value, lease).await.unwrap() }));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(waiting.iter().all(|w| !w.is_finished()), "nobody else leads while the first does");
        let leader = c.leader("svc").await.unwrap();
        assert_eq!(leader.kv().unwrap().value(), b"a1");
        c.proclaim("a2", Some(ProclaimOptions::new().with_leader(first.clone()))).await.unwrap();
        c.resign(Some(ResignOptions::new().with_leader(first.clone()))).await.unwrap();
        let second = within(10, waiting.remove(0)).await.unwrap();
        assert_eq!(second.leader().unwrap().lease(), leases[1]);
        // A stale leader key is refused with etcd's error.
        let stale = c.proclaim("a3", Some(ProclaimOptions::new().with_leader(first.clone()))).await.unwrap_err();
        assert!(stale.to_string().contains("election: not leader"), "{stale}");
        // The second leader's lease is revoked: the third campaigner leads.
        c.lease_revoke(leases[1]).await.unwrap();
        let third = within(10, waiting.remove(0)).await.unwrap();
        assert_eq!(third.leader().unwrap().lease(), leases[2]);

        let mut seen = Vec::new();
        while seen.len() < 4 {
            let resp = within(10, observer.message()).await.unwrap().expect("the observe stream stays open");
            seen.push(String::from_utf8(resp.kv().unwrap().value().to_vec()).unwrap());
        }
        assert_eq!(seen, ["a1", "a2", "b1", "c1"], "every leader and proclamation, in order");
    }));
}

/// What a client sees of a fixed sequence of calls, with ids and revisions masked.
async fn script(endpoint: String) -> Vec<String> {
    let mut c = client(&endpoint).await;
    let mut out = Vec::new();
    let lease = c.lease_grant(30, None).await.unwrap().id();
    let mask = |s: String| s.replace(&format!("{lease:x}"), "<lease>");
    let locked = c.lock("lk", Some(LockOptions::new().with_lease(lease))).await.unwrap();
    out.push(mask(format!("lock key {}", String::from_utf8_lossy(locked.key()))));
    let again = c.lock("lk", Some(LockOptions::new().with_lease(lease))).await.unwrap();
    out.push(format!("lock again, same key: {}", again.key() == locked.key()));
    // A waiter that goes away before it holds the lock leaves no key behind to block the contenders after it.
    let other = c.lease_grant(30, None).await.unwrap().id();
    let waiting = c.lock("lk", Some(LockOptions::new().with_lease(other)));
    out.push(format!(
        "a second lease waits: {}",
        tokio::time::timeout(Duration::from_millis(500), waiting).await.is_err()
    ));
    let mut gone = false;
    for _ in 0..50 {
        if c.get(format!("lk/{other:x}"), None).await.unwrap().kvs().is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out.push(format!("its key deleted once it went away: {gone}"));
    c.unlock(locked.key()).await.unwrap();
    out.push(format!("unlocked, key gone: {}", c.get(locked.key(), None).await.unwrap().kvs().is_empty()));
    let unknown = c.lock("lk", Some(LockOptions::new().with_lease(0x7777))).await.unwrap_err();
    out.push(format!("lock on an unknown lease: {unknown}"));
    let none = c.leader("nobody").await.unwrap_err();
    out.push(format!("leader of an empty election: {none}"));
    let missing = c.resign(None).await.unwrap_err();
    out.push(format!("resign without a leader key: {missing}"));
    let missing = c.proclaim("v", None).await.unwrap_err();
    out.push(format!("proclaim without a leader key: {missing}"));
    let won = c.campaign("el", "v1", lease).await.unwrap();
    let leader = won.leader().unwrap().clone();
    out.push(mask(format!(
        "campaign: key {}, lease matches {}, rev is the key's create revision {}",
        String::from_utf8_lossy(leader.key()),
        leader.lease() == lease,
        c.get(leader.key(), None).await.unwrap().kvs()[0].create_revision() == leader.rev()
    )));
    let stale = LeaderKey::new().with_name("el").with_key(leader.key()).with_rev(leader.rev() + 100).with_lease(lease);
    let refused = c.proclaim("v2", Some(ProclaimOptions::new().with_leader(stale.clone()))).await.unwrap_err();
    out.push(format!("proclaim with a wrong revision: {refused}"));
    c.resign(Some(ResignOptions::new().with_leader(stale))).await.unwrap();
    out.push(format!(
        "resign with a wrong revision keeps the key: {}",
        c.get(leader.key(), None).await.unwrap().count()
    ));
    out
}

/// Under authentication: a user whose role may read and write the lock's prefix locks and campaigns; one whose
/// role may not is refused with etcd's error, as the KV request it makes would be.
async fn auth_script(endpoint: String) -> Vec<String> {
    for args in [
        &["role", "add", "locker"][..],
        &["role", "grant-permission", "locker", "readwrite", "lk", "--prefix"],
        &["user", "add", "alice:alicepw"],
        &["user", "grant-role", "alice", "locker"],
        &["user", "add", "bob:bobpw"],
    ] {
        common::etcdctl_ok(&endpoint, args);
    }
    common::enable_root_auth(&endpoint);
    let mut out = Vec::new();
    for (user, password) in [("alice", "alicepw"), ("bob", "bobpw")] {
        let options = etcd_client::ConnectOptions::new().with_user(user, password);
        let mut c = Client::connect([&endpoint], Some(options)).await.unwrap();
        let lease = c.lease_grant(30, None).await.unwrap().id();
        let lock = c.lock("lk", Some(LockOptions::new().with_lease(lease))).await;
        out.push(format!("{user} locks: {:?}", lock.map(|_| ()).map_err(|e| e.to_string())));
        let campaign = c.campaign("lkelection", "v", lease).await;
        out.push(format!("{user} campaigns: {:?}", campaign.map(|_| ()).map_err(|e| e.to_string())));
        let leader = c.leader("other").await;
        out.push(format!("{user} reads another election: {:?}", leader.map(|_| ()).map_err(|e| e.to_string())));
    }
    out
}

#[test]
fn under_authentication_the_callers_permissions_decide() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let m = start(&dir.path().join("ferrokv"), free_port(), free_port());
    let ours = rt.block_on(within(60, auth_script(m.endpoint.clone())));
    drop(m);
    assert!(ours[0].contains("Ok(())"), "{ours:#?}");
    if !common::etcd::installed("etcd") {
        return;
    }
    let e = common::etcd::start(&dir.path().join("etcd"), free_port(), free_port());
    let theirs = rt.block_on(within(60, auth_script(e.endpoint.clone())));
    assert_eq!(ours, theirs);
}

#[test]
fn answers_and_errors_match_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let m = start(&dir.path().join("ferrokv"), free_port(), free_port());
    let ours = rt.block_on(within(30, script(m.endpoint.clone())));
    drop(m);
    assert!(ours.iter().any(|l| l.contains("election: no leader")), "{ours:#?}");
    if !common::etcd::installed("etcd") {
        return;
    }
    let e = common::etcd::start(&dir.path().join("etcd"), free_port(), free_port());
    let theirs = rt.block_on(within(30, script(e.endpoint.clone())));
    assert_eq!(ours, theirs);
}
