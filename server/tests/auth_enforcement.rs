//! Authentication as an attacker tries it: with authentication enabled, a user who may read only `/a/` is refused
//! everything else on every request path, and learns nothing from the refusal (no value, no count, no revision of
//! a key it may not read): ranges wider than its permission, writes, deletes, Txns whose compares or untaken branch
//! or nested Txn touch other keys, compaction (which etcd lets anyone make), watches, the keys of a lease,
//! maintenance and membership calls, and every way of granting itself more. No token is "user name is empty", a
//! made-up token "invalid auth token", a token dies with its user's password, and a revoked role ends an open watch
//! before its next event and refuses the next request. A wrong password and an unknown user cost the same bcrypt
//! time (no user enumeration by timing).

mod common;

use std::time::{Duration, Instant};

use server::proto::authpb;
use server::proto::etcdserverpb::{
    self as pb, auth_client::AuthClient, cluster_client::ClusterClient, kv_client::KvClient, lease_client::LeaseClient,
    maintenance_client::MaintenanceClient, watch_client::WatchClient,
};
use tonic::transport::Channel;
use tonic::{Code, Request};

/// A request carrying `token` as etcd's clients send it.
fn with<T>(token: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    if !token.is_empty() {
        r.metadata_mut().insert("token", token.parse().unwrap());
    }
    r
}

fn prefix_end(p: &str) -> Vec<u8> {
    let mut e = p.as_bytes().to_vec();
    *e.last_mut().unwrap() += 1;
    e
}

fn put(key: &str, value: &str) -> pb::RequestOp {
    let p = pb::PutRequest { key: key.into(), value: value.into(), ..Default::default() };
    pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(p)) }
}

fn range(key: &str) -> pb::RequestOp {
    let r = pb::RangeRequest { key: key.into(), ..Default::default() };
    pb::RequestOp { request: Some(pb::request_op::Request::RequestRange(r)) }
}

fn value_is(key: &str, value: &str) -> pb::Compare {
    pb::Compare {
        key: key.into(),
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Value as i32,
        target_union: Some(pb::compare::TargetUnion::Value(value.into())),
        ..Default::default()
    }
}

/// Asserts a refusal with `code` and `message`, and that the response (there is none) told nothing.
fn refused<T: std::fmt::Debug>(what: &str, r: Result<tonic::Response<T>, tonic::Status>, code: Code, message: &str) {
    match r {
        Ok(resp) => panic!("{what}: answered {:?}", resp.into_inner()),
        Err(s) => {
            assert_eq!((s.code(), s.message()), (code, message), "{what}");
            assert!(!s.message().contains("s3cret"), "{what}: the refusal names the secret");
        }
    }
}

fn denied<T: std::fmt::Debug>(what: &str, r: Result<tonic::Response<T>, tonic::Status>) {
    refused(what, r, Code::PermissionDenied, "etcdserver: permission denied");
}

/// A watch stream opened as `token` with one create request for `[key, end)`; the stream stays open while the
/// sender lives.
async fn watch_as(
    ch: &Channel,
    token: &str,
    key: &str,
    end: Vec<u8>,
) -> (tokio::sync::mpsc::Sender<pb::WatchRequest>, tonic::Streaming<pb::WatchResponse>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let create = pb::WatchCreateRequest { key: key.into(), range_end: end, ..Default::default() };
    tx.send(pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) })
        .await
        .unwrap();
    let stream = tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx);
    (tx, WatchClient::new(ch.clone()).watch(with(token, stream)).await.unwrap().into_inner())
}

async fn authenticate(ch: &Channel, name: &str, password: &str) -> Result<String, tonic::Status> {
    let r = pb::AuthenticateRequest { name: name.into(), password: password.into() };
    Ok(AuthClient::new(ch.clone()).authenticate(r).await?.into_inner().token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_is_refused_everything_else_and_learns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::start(&dir.path().join("m"), common::free_port(), common::free_port());
    let ch = Channel::from_shared(format!("http://{}", m.endpoint)).unwrap().connect().await.unwrap();
    let (mut kv, mut auth) = (KvClient::new(ch.clone()), AuthClient::new(ch.clone()));
    let mut leases = LeaseClient::new(ch.clone());

    // Set-up, before authentication is on: root, a reader of /a/, a writer of /w/, data, a lease on a secret.
    let role = |name: &str| pb::AuthRoleAddRequest { name: name.into() };
    let user =
        |name: &str, pw: &str| pb::AuthUserAddRequest { name: name.into(), password: pw.into(), ..Default::default() };
    let grant = |user: &str, role: &str| pb::AuthUserGrantRoleRequest { user: user.into(), role: role.into() };
    let perm = |role: &str, key: &str, kind: authpb::permission::Type| pb::AuthRoleGrantPermissionRequest {
        name: role.into(),
        perm: Some(authpb::Permission { perm_type: kind as i32, key: key.into(), range_end: prefix_end(key) }),
    };
    auth.role_add(role("root")).await.unwrap();
    auth.user_add(user("root", "rootpw")).await.unwrap();
    auth.user_grant_role(grant("root", "root")).await.unwrap();
    for (r, k, t) in
        [("reader", "/a/", authpb::permission::Type::Read), ("writer", "/w/", authpb::permission::Type::Readwrite)]
    {
        auth.role_add(role(r)).await.unwrap();
        auth.role_grant_permission(perm(r, k, t)).await.unwrap();
    }
    auth.user_add(user("alice", "alicepw")).await.unwrap();
    auth.user_grant_role(grant("alice", "reader")).await.unwrap();
    auth.user_add(user("bob", "bobpw")).await.unwrap();
    auth.user_grant_role(grant("bob", "writer")).await.unwrap();
    let lease = leases.lease_grant(pb::LeaseGrantRequest { ttl: 600, id: 0 }).await.unwrap().into_inner().id;
    for (k, v, l) in [("/a/1", "one", 0), ("/secret/x", "s3cret", lease), ("/w/1", "w", 0)] {
        kv.put(pb::PutRequest { key: k.into(), value: v.into(), lease: l, ..Default::default() }).await.unwrap();
    }
    auth.auth_enable(pb::AuthEnableRequest {}).await.unwrap();
    let root = authenticate(&ch, "root", "rootpw").await.unwrap();
    let alice = authenticate(&ch, "alice", "alicepw").await.unwrap();

    // What alice may do.
    let mine = pb::RangeRequest { key: "/a/".into(), range_end: prefix_end("/a/"), ..Default::default() };
    let got = kv.range(with(&alice, mine.clone())).await.unwrap().into_inner();
    assert_eq!(got.kvs.len(), 1);

    // Reads beyond /a/: one key, all keys, a wider range, a count.
    let key = |k: &str| pb::RangeRequest { key: k.into(), ..Default::default() };
    denied("range of a secret key", kv.range(with(&alice, key("/secret/x"))).await);
    let all = pb::RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
    denied("range of every key", kv.range(with(&alice, all.clone())).await);
    let wider = pb::RangeRequest { key: "/".into(), range_end: "/b".into(), count_only: true, ..Default::default() };
    denied("count of a wider range", kv.range(with(&alice, wider)).await);
    let serializable = pb::RangeRequest { serializable: true, ..key("/secret/x") };
    denied("serializable range", kv.range(with(&alice, serializable)).await);
    // Writes.
    denied(
        "put in her read-only range",
        kv.put(with(&alice, pb::PutRequest { key: "/a/1".into(), ..Default::default() })).await,
    );
    let del =
        pb::DeleteRangeRequest { key: "/secret/".into(), range_end: prefix_end("/secret/"), ..Default::default() };
    denied("delete of secrets", kv.delete_range(with(&alice, del)).await);
    // Txns: a compare on a secret (an oracle for its value), a branch not taken, a nested Txn.
    let oracle = pb::TxnRequest {
        compare: vec![value_is("/secret/x", "s3cret")],
        success: vec![range("/a/1")],
        ..Default::default()
    };
    denied("txn comparing a secret", kv.txn(with(&alice, oracle)).await);
    let untaken = pb::TxnRequest {
        compare: vec![value_is("/a/1", "one")],
        success: vec![range("/a/1")],
        failure: vec![range("/secret/x")],
    };
    denied("txn reading a secret in the branch not taken", kv.txn(with(&alice, untaken)).await);
    let inner = pb::TxnRequest { success: vec![range("/secret/x")], ..Default::default() };
    let nested = pb::TxnRequest {
        success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestTxn(inner)) }],
        ..Default::default()
    };
    denied("nested txn reading a secret", kv.txn(with(&alice, nested)).await);
    let write_txn = pb::TxnRequest { success: vec![put("/w/2", "x")], ..Default::default() };
    denied("txn writing elsewhere", kv.txn(with(&alice, write_txn)).await);
    // Leases: revoking one deletes its keys; its keys are not hers to see.
    denied(
        "revoke of a lease on a secret",
        leases.lease_revoke(with(&alice, pb::LeaseRevokeRequest { id: lease })).await,
    );
    let ttl = pb::LeaseTimeToLiveRequest { id: lease, keys: true };
    denied("the keys of a lease on a secret", leases.lease_time_to_live(with(&alice, ttl)).await);
    // Compaction erases every key's history: not for a reader, nor for a caller with no token (etcd lets both).
    let compact = pb::CompactionRequest { revision: 2, physical: false };
    denied("compaction by a reader", kv.compact(with(&alice, compact)).await);
    refused(
        "compaction with no token",
        kv.compact(Request::new(compact)).await,
        Code::InvalidArgument,
        "etcdserver: user name is empty",
    );
    // Maintenance and membership.
    let mut maint = MaintenanceClient::new(ch.clone());
    denied("defragment", maint.defragment(with(&alice, pb::DefragmentRequest {})).await);
    denied("hashkv", maint.hash_kv(with(&alice, pb::HashKvRequest { revision: 0 })).await);
    denied("hash", maint.hash(with(&alice, pb::HashRequest {})).await);
    denied("move leader", maint.move_leader(with(&alice, pb::MoveLeaderRequest { target_id: 1 })).await);
    match maint.snapshot(with(&alice, pb::SnapshotRequest {})).await {
        Ok(r) => {
            let first = r.into_inner().message().await;
            assert!(first.is_err(), "a snapshot stream must be refused, got {first:?}");
        }
        Err(s) => assert_eq!(s.code(), Code::PermissionDenied),
    }
    let add = pb::MemberAddRequest { peer_ur_ls: vec!["http://127.0.0.1:1".into()], is_learner: false };
    denied("member add", ClusterClient::new(ch.clone()).member_add(with(&alice, add)).await);
    // Granting herself more.
    denied("grant herself root", auth.user_grant_role(with(&alice, grant("alice", "root"))).await);
    denied(
        "widen her role",
        auth.role_grant_permission(with(&alice, perm("reader", "/", authpb::permission::Type::Readwrite))).await,
    );
    denied("add a user", auth.user_add(with(&alice, user("mallory", "pw"))).await);
    denied(
        "change root's password",
        auth.user_change_password(with(
            &alice,
            pb::AuthUserChangePasswordRequest { name: "root".into(), password: "x".into(), ..Default::default() },
        ))
        .await,
    );
    denied("disable authentication", auth.auth_disable(with(&alice, pb::AuthDisableRequest {})).await);
    denied("list users", auth.user_list(with(&alice, pb::AuthUserListRequest {})).await);
    denied("read another user", auth.user_get(with(&alice, pb::AuthUserGetRequest { name: "bob".into() })).await);
    denied("read another role", auth.role_get(with(&alice, pb::AuthRoleGetRequest { role: "writer".into() })).await);
    auth.user_get(with(&alice, pb::AuthUserGetRequest { name: "alice".into() })).await.expect("her own roles");
    auth.role_get(with(&alice, pb::AuthRoleGetRequest { role: "reader".into() })).await.expect("her own role");

    // A watch on secrets, or on more than hers, is refused with etcd's reason, and delivers nothing.
    for (what, key, end) in [("secrets", "/secret/", prefix_end("/secret/")), ("everything", "/", vec![0])] {
        let (tx, mut resp) = watch_as(&ch, &alice, key, end).await;
        let first = resp.message().await.unwrap().unwrap();
        assert!(first.created && first.canceled && first.watch_id == -1, "watch on {what}: {first:?}");
        assert_eq!(first.cancel_reason, "rpc error: code = PermissionDenied desc = etcdserver: permission denied");
        assert!(first.events.is_empty());
        drop(tx);
    }

    // Tokens: none, made up, and one whose user's password changed.
    refused(
        "no token",
        kv.range(Request::new(mine.clone())).await,
        Code::InvalidArgument,
        "etcdserver: user name is empty",
    );
    refused(
        "a made-up token",
        kv.range(with("abcdefghijklmnop.7", mine.clone())).await,
        Code::Unauthenticated,
        "etcdserver: invalid auth token",
    );
    let bob = authenticate(&ch, "bob", "bobpw").await.unwrap();
    kv.range(with(&bob, pb::RangeRequest { key: "/w/1".into(), ..Default::default() })).await.unwrap();
    kv.compact(with(&bob, compact)).await.expect("a writer compacts, as kube-apiserver does");
    let change = pb::AuthUserChangePasswordRequest { name: "bob".into(), password: "new".into(), ..Default::default() };
    auth.user_change_password(with(&root, change)).await.unwrap();
    refused(
        "a token older than its password",
        kv.range(with(&bob, key("/w/1"))).await,
        Code::Unauthenticated,
        "etcdserver: invalid auth token",
    );

    // A revoked role: her open watch ends before it delivers anything more, and her next request is refused.
    let (tx, mut watch) = watch_as(&ch, &alice, "/a/", prefix_end("/a/")).await;
    let created = watch.message().await.unwrap().unwrap();
    assert!(created.created && !created.canceled, "{created:?}");
    kv.put(with(&root, pb::PutRequest { key: "/a/2".into(), value: "seen".into(), ..Default::default() }))
        .await
        .unwrap();
    let seen = watch.message().await.unwrap().unwrap();
    assert_eq!(seen.events.len(), 1, "allowed, she sees the put: {seen:?}");
    let revoke = pb::AuthUserRevokeRoleRequest { name: "alice".into(), role: "reader".into() };
    auth.user_revoke_role(with(&root, revoke)).await.unwrap();
    kv.put(with(&root, pb::PutRequest { key: "/a/3".into(), value: "unseen".into(), ..Default::default() }))
        .await
        .unwrap();
    let next = watch.message().await.unwrap().unwrap();
    assert!(next.canceled && next.events.is_empty() && next.watch_id == created.watch_id, "{next:?}");
    assert_eq!(next.cancel_reason, "rpc error: code = PermissionDenied desc = etcdserver: permission denied");
    drop(tx);
    denied("a read after the role is revoked", kv.range(with(&alice, mine)).await);

    // Nothing was changed by any refused request.
    let secret = kv.range(with(&root, key("/secret/x"))).await.unwrap().into_inner();
    assert_eq!(secret.kvs[0].value, b"s3cret");
    assert!(kv.range(with(&root, key("/w/2"))).await.unwrap().into_inner().kvs.is_empty());
    let users = auth.user_list(with(&root, pb::AuthUserListRequest {})).await.unwrap().into_inner().users;
    assert_eq!(users, ["alice", "bob", "root"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_costs_the_time_of_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::start(&dir.path().join("m"), common::free_port(), common::free_port());
    let ch = Channel::from_shared(format!("http://{}", m.endpoint)).unwrap().connect().await.unwrap();
    let mut auth = AuthClient::new(ch.clone());
    auth.role_add(pb::AuthRoleAddRequest { name: "root".into() }).await.unwrap();
    let root = pb::AuthUserAddRequest { name: "root".into(), password: "rootpw".into(), ..Default::default() };
    auth.user_add(root).await.unwrap();
    auth.user_grant_role(pb::AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }).await.unwrap();
    auth.auth_enable(pb::AuthEnableRequest {}).await.unwrap();
    let times = |name: &'static str, password: &'static str| {
        let ch = ch.clone();
        async move {
            let mut took = Vec::new();
            for _ in 0..7 {
                let t = Instant::now();
                let r = authenticate(&ch, name, password).await;
                took.push(t.elapsed());
                let s = r.expect_err("a wrong password");
                assert_eq!(s.message(), "etcdserver: authentication failed, invalid user ID or password");
            }
            took.sort();
            took[took.len() / 2]
        }
    };
    let wrong_password = times("root", "nope").await;
    let unknown_user = times("nobody", "nope").await;
    // Both do one bcrypt comparison at the same cost (several ms); noise on a shared machine is far smaller than
    // the difference a skipped comparison would make.
    assert!(wrong_password > Duration::from_millis(5), "a bcrypt comparison takes time: {wrong_password:?}");
    let ratio = unknown_user.as_secs_f64() / wrong_password.as_secs_f64();
    assert!((0.5..2.0).contains(&ratio), "unknown user {unknown_user:?} against wrong password {wrong_password:?}");
}

/// A token issued by one member works on every member: simple tokens because every member applies the
/// Authenticate entry that issues them, JWT because every member holds the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_one_member_works_on_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = common::cluster::specs(3);
    let members: Vec<common::Member> = specs.iter().map(|s| common::cluster::launch(dir.path(), s, &cluster)).collect();
    let endpoints: Vec<String> = members.iter().map(|m| m.endpoint.clone()).collect();
    common::cluster::agreed_leader(&endpoints).await;
    let mut channels = Vec::new();
    for e in &endpoints {
        channels.push(Channel::from_shared(format!("http://{e}")).unwrap().connect().await.unwrap());
    }
    let mut auth = AuthClient::new(channels[0].clone());
    auth.role_add(pb::AuthRoleAddRequest { name: "root".into() }).await.unwrap();
    let root = pb::AuthUserAddRequest { name: "root".into(), password: "rootpw".into(), ..Default::default() };
    auth.user_add(root).await.unwrap();
    auth.user_grant_role(pb::AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }).await.unwrap();
    auth.auth_enable(pb::AuthEnableRequest {}).await.unwrap();
    let token = authenticate(&channels[0], "root", "rootpw").await.unwrap();
    for (i, ch) in channels.iter().enumerate() {
        let mut kv = KvClient::new(ch.clone());
        let key = format!("k{i}");
        let put = pb::PutRequest { key: key.clone().into(), value: b"v".to_vec(), ..Default::default() };
        kv.put(with(&token, put)).await.unwrap_or_else(|e| panic!("put through member {i}: {e}"));
        let got = kv.range(with(&token, pb::RangeRequest { key: key.into(), ..Default::default() })).await;
        assert_eq!(got.unwrap_or_else(|e| panic!("range through member {i}: {e}")).into_inner().kvs.len(), 1);
        refused(
            "no token",
            kv.range(Request::new(pb::RangeRequest { key: "k0".into(), ..Default::default() })).await,
            Code::InvalidArgument,
            "etcdserver: user name is empty",
        );
    }
}
