//! The Watch and Lease streams through the `etcd-client` crate, as a Rust application would use them; each scenario
//! runs against ferrokv and then, unchanged, against real etcd 3.4.23, so every expectation is etcd's behaviour.
//!
//! - One watch stream carries 54 watchers (a prefix from a past revision with prev_kv, an exact key, a range, a
//!   delete-only prefix, fifty single keys); after a scripted workload each watcher has received exactly the events a
//!   model of the workload predicts, in revision order; a cancel ends one watcher only; a watch from a compacted
//!   revision is cancelled with the compaction revision.
//! - Leases kept alive through keep-alive streams outlive their TTL with their keys; the others expire and their keys
//!   go; TimeToLive, Leases, a keep-alive of an unknown lease (TTL 0) and Revoke answer as etcd does.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use common::{free_port, start};
use etcd_client::{
    Client, DeleteOptions, EventType, GetOptions, LeaseTimeToLiveOptions, PutOptions, WatchFilterType, WatchOptions,
    WatchStream,
};

/// One event as a watcher sees it: (revision, is a put, key, value, prev value).
type Seen = (i64, bool, String, String, Option<String>);

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

async fn next(stream: &mut WatchStream) -> etcd_client::WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a watch response within 10 s")
        .expect("the watch stream stays healthy")
        .expect("the watch stream stays open")
}

/// What one watcher asked for.
struct Want {
    start: Vec<u8>,
    end: Vec<u8>, // empty: the single key `start`
    from_rev: i64,
    prev_kv: bool,
    no_put: bool,
}

impl Want {
    fn matches(&self, key: &[u8]) -> bool {
        if self.end.is_empty() { key == self.start } else { key >= &self.start[..] && key < &self.end[..] }
    }
}

/// Runs `scenario` against a fresh ferrokv, then (where installed) against a fresh etcd 3.4.23: the same
/// expectations must hold for both.
fn on_ferrokv_and_etcd<F: Future<Output = ()>>(scenario: impl Fn(String) -> F) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let m = start(&dir.path().join("ferrokv"), free_port(), free_port());
    rt.block_on(scenario(m.endpoint.clone()));
    drop(m);
    if common::etcd::installed("etcd") {
        let etcd = common::etcd::start(&dir.path().join("etcd"), free_port(), free_port());
        eprintln!("the same against etcd 3.4.23 at {}", etcd.endpoint);
        rt.block_on(scenario(etcd.endpoint.clone()));
    }
}

#[test]
fn one_watch_stream_many_watchers() {
    on_ferrokv_and_etcd(watch_scenario);
}

#[test]
fn lease_keep_alive_streams() {
    on_ferrokv_and_etcd(lease_scenario);
}

async fn watch_scenario(endpoint: String) {
    {
        let mut c = Client::connect([endpoint.as_str()], None).await.unwrap();
        // The model: every change with its revision, key, value (None for a delete) and the value it replaced.
        let mut log: Vec<(i64, String, Option<String>, Option<String>)> = Vec::new();
        let mut state: BTreeMap<String, String> = BTreeMap::new();
        async fn put(
            c: &mut Client,
            s: &mut BTreeMap<String, String>,
            l: &mut Vec<(i64, String, Option<String>, Option<String>)>,
            k: &str,
            v: &str,
        ) {
            let r = c.put(k, v, None).await.unwrap();
            let rev = r.header().unwrap().revision();
            l.push((rev, k.into(), Some(v.into()), s.insert(k.into(), v.into())));
        }
        async fn del(
            c: &mut Client,
            s: &mut BTreeMap<String, String>,
            l: &mut Vec<(i64, String, Option<String>, Option<String>)>,
            from: &str,
            to: &str,
        ) {
            let r = c.delete(from, Some(DeleteOptions::new().with_range(to))).await.unwrap();
            let rev = r.header().unwrap().revision();
            let gone: Vec<String> = s.range(from.to_string()..to.to_string()).map(|(k, _)| k.clone()).collect();
            assert_eq!(r.deleted(), gone.len() as i64);
            for k in gone {
                let old = s.remove(&k);
                l.push((rev, k, None, old));
            }
        }
        // History before the watchers exist.
        put(&mut c, &mut state, &mut log, "a/1", "v1").await;
        put(&mut c, &mut state, &mut log, "a/2", "v2").await;
        put(&mut c, &mut state, &mut log, "b", "b1").await;
        del(&mut c, &mut state, &mut log, "a/1", "a/2").await;
        let first_rev = log[0].0;

        let mut wants = vec![
            Want { start: b"a/".to_vec(), end: b"a0".to_vec(), from_rev: first_rev, prev_kv: true, no_put: false },
            Want { start: b"b".to_vec(), end: vec![], from_rev: 0, prev_kv: false, no_put: false },
            Want { start: b"c".to_vec(), end: b"e".to_vec(), from_rev: 0, prev_kv: false, no_put: false },
            Want { start: b"d".to_vec(), end: b"e".to_vec(), from_rev: 0, prev_kv: true, no_put: true },
        ];
        for i in 0..50 {
            wants.push(Want {
                start: format!("many/{i:02}").into_bytes(),
                end: vec![],
                from_rev: 0,
                prev_kv: false,
                no_put: false,
            });
        }
        let options = |w: &Want| {
            let mut o = WatchOptions::new();
            if !w.end.is_empty() {
                o = o.with_range(w.end.clone());
            }
            if w.from_rev > 0 {
                o = o.with_start_revision(w.from_rev);
            }
            if w.prev_kv {
                o = o.with_prev_key();
            }
            if w.no_put {
                o = o.with_filters([WatchFilterType::NoPut]);
            }
            o
        };
        let mut stream = c.watch(wants[0].start.clone(), Some(options(&wants[0]))).await.unwrap();
        for w in &wants[1..] {
            stream.watch(w.start.clone(), Some(options(w))).await.unwrap();
        }
        // One created response per watcher, ids in creation order; history events may come in between.
        let mut seen: BTreeMap<i64, Vec<Seen>> = BTreeMap::new();
        let mut created = Vec::new();
        let record = |r: &etcd_client::WatchResponse, seen: &mut BTreeMap<i64, Vec<Seen>>| {
            for e in r.events() {
                let kv = e.kv().unwrap();
                let prev = e.prev_kv().map(|p| text(p.value()));
                let put = e.event_type() == EventType::Put;
                seen.entry(r.watch_id()).or_default().push((
                    kv.mod_revision(),
                    put,
                    text(kv.key()),
                    text(kv.value()),
                    prev,
                ));
            }
        };
        while created.len() < wants.len() {
            let r = next(&mut stream).await;
            if r.created() {
                created.push(r.watch_id());
            }
            record(&r, &mut seen);
        }
        assert_eq!(created, (0..wants.len() as i64).collect::<Vec<_>>());

        // The workload: keys in and out of every watcher's range, overwrites, single and range deletes.
        put(&mut c, &mut state, &mut log, "a/3", "v3").await;
        put(&mut c, &mut state, &mut log, "b", "b2").await;
        put(&mut c, &mut state, &mut log, "ba", "x").await;
        put(&mut c, &mut state, &mut log, "c1", "c").await;
        put(&mut c, &mut state, &mut log, "d1", "d").await;
        put(&mut c, &mut state, &mut log, "d2", "d").await;
        put(&mut c, &mut state, &mut log, "e", "e").await;
        for i in (0..50).rev() {
            put(&mut c, &mut state, &mut log, &format!("many/{i:02}"), &format!("m{i}")).await;
        }
        put(&mut c, &mut state, &mut log, "many/07", "again").await;
        del(&mut c, &mut state, &mut log, "c", "e").await;
        del(&mut c, &mut state, &mut log, "a/", "a0").await;
        put(&mut c, &mut state, &mut log, "d1", "back").await;

        // What the model predicts for each watcher.
        let watch_start = log.iter().position(|e| e.1 == "a/3").unwrap();
        let expected: BTreeMap<i64, Vec<Seen>> = wants
            .iter()
            .enumerate()
            .map(|(id, w)| {
                let events = log
                    .iter()
                    .enumerate()
                    .filter(|(i, (rev, key, value, _))| {
                        let in_time = if w.from_rev > 0 { *rev >= w.from_rev } else { *i >= watch_start };
                        in_time && w.matches(key.as_bytes()) && !(w.no_put && value.is_some())
                    })
                    .map(|(_, (rev, key, value, old))| {
                        let prev = if w.prev_kv { old.clone() } else { None };
                        (*rev, value.is_some(), key.clone(), value.clone().unwrap_or_default(), prev)
                    })
                    .collect();
                (id as i64, events)
            })
            .filter(|(_, e): &(i64, Vec<Seen>)| !e.is_empty())
            .collect();
        let total: usize = expected.values().map(Vec::len).sum();
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.values().map(Vec::len).sum::<usize>() < total {
            assert!(Instant::now() < deadline, "watch events missing: saw {seen:?}");
            let r = next(&mut stream).await;
            record(&r, &mut seen);
        }
        assert_eq!(seen, expected, "each watcher gets exactly its events, in revision order");

        // Cancelling watcher 1 ("b") ends it alone: a later put of "b" reaches nobody, one of "a/4" watcher 0.
        stream.cancel(1).await.unwrap();
        let r = next(&mut stream).await;
        assert!(r.canceled() && r.watch_id() == 1, "cancel answered for watcher 1: {r:?}");
        c.put("b", "b3", None).await.unwrap();
        let rev = c.put("a/4", "v4", None).await.unwrap().header().unwrap().revision();
        let r = next(&mut stream).await;
        assert_eq!(r.watch_id(), 0);
        assert_eq!(r.events().len(), 1);
        assert_eq!(
            (text(r.events()[0].kv().unwrap().key()), r.events()[0].kv().unwrap().mod_revision()),
            ("a/4".into(), rev)
        );

        // A watch from a compacted revision is cancelled with the compaction revision.
        c.compact(rev, None).await.unwrap();
        let mut old =
            c.watch("a/", Some(WatchOptions::new().with_prefix().with_start_revision(first_rev))).await.unwrap();
        let mut r = next(&mut old).await;
        if r.created() && !r.canceled() {
            r = next(&mut old).await;
        }
        assert!(r.canceled(), "a watch from revision {first_rev} after compacting at {rev} is cancelled: {r:?}");
        assert_eq!(r.compact_revision(), rev);
    }
}

async fn lease_scenario(endpoint: String) {
    {
        let mut c = Client::connect([endpoint.as_str()], None).await.unwrap();
        const TTL: i64 = 2;
        let mut leases = Vec::new();
        for i in 0..20 {
            let g = c.lease_grant(TTL, None).await.unwrap();
            assert_eq!(g.ttl(), TTL);
            c.put(format!("k/{i:02}"), "v", Some(PutOptions::new().with_lease(g.id()))).await.unwrap();
            leases.push(g.id());
        }
        // The first ten are kept alive, each on its own keep-alive stream, for three TTLs.
        let mut keepers = Vec::new();
        for id in &leases[..10] {
            keepers.push(c.lease_keep_alive(*id).await.unwrap());
        }
        let until = Instant::now() + Duration::from_secs(3 * TTL as u64);
        let mut answered = 0;
        while Instant::now() < until {
            for (keeper, stream) in &mut keepers {
                keeper.keep_alive().await.unwrap();
                let r = tokio::time::timeout(Duration::from_secs(5), stream.message()).await.unwrap().unwrap().unwrap();
                assert_eq!((r.id(), r.ttl()), (keeper.id(), TTL));
                answered += 1;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        assert!(answered >= 10 * 5, "{answered} keep-alive responses");
        // Kept-alive leases and their keys are there; the others expired and took their keys with them.
        let keys = c.get("k/", Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
        let keys: Vec<String> = keys.kvs().iter().map(|kv| text(kv.key())).collect();
        assert_eq!(keys, (0..10).map(|i| format!("k/{i:02}")).collect::<Vec<_>>());
        let mut live: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
        live.sort();
        let mut kept = leases[..10].to_vec();
        kept.sort();
        assert_eq!(live, kept);
        let t = c.lease_time_to_live(leases[3], Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
        assert_eq!((t.granted_ttl(), t.keys()), (TTL, &[b"k/03".to_vec()][..]));
        assert!((0..=TTL).contains(&t.ttl()), "remaining TTL {}", t.ttl());
        let t = c.lease_time_to_live(leases[13], None).await.unwrap();
        assert_eq!(t.ttl(), -1, "an expired lease has TTL -1");
        // A keep-alive of an expired lease answers TTL 0 (etcd's answer), which the client reports as not found.
        match c.lease_keep_alive(leases[13]).await {
            Err(etcd_client::Error::LeaseKeepAliveError(e)) => assert_eq!(e, "lease not found"),
            other => panic!("keep-alive of an expired lease: {other:?}"),
        }
        // Revoke takes the keys at once; a second revoke is etcd's NotFound.
        c.lease_revoke(leases[0]).await.unwrap();
        assert_eq!(c.get("k/00", None).await.unwrap().kvs().len(), 0);
        let err = c.lease_revoke(leases[0]).await.unwrap_err().to_string();
        assert!(err.contains("etcdserver: requested lease not found"), "{err}");
    }
}
