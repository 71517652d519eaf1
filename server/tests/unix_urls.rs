//! `unix://` URLs, as etcd serves them: members talk to each other over unix sockets, clients (`etcdctl
//! --endpoints unix://...`) are served on one, and a stale socket file from an earlier run does not stop a
//! restart.

mod common;

use common::Member;

use common::etcdctl_ok as ctl;

#[test]
fn members_and_clients_over_unix_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let sock = |name: &str| format!("unix://{}", dir.path().join(name).display());
    let cluster: Vec<String> = (1..=3).map(|i| format!("m{i}={}", sock(&format!("peer{i}")))).collect();
    let cluster = cluster.join(",");
    let start = |i: usize| {
        let (peer, client) = (sock(&format!("peer{i}")), sock(&format!("client{i}")));
        let data = dir.path().join(format!("m{i}"));
        let args = [
            "--name",
            &format!("m{i}"),
            "--data-dir",
            data.to_str().unwrap(),
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &cluster,
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
        ]
        .map(String::from);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::spawn_detached(&args, client.clone()).0
    };
    let mut members: Vec<Member> = (1..=3).map(start).collect();
    let client1 = sock("client1");
    ctl(&client1, &["put", "over", "unix"]);
    // Read on another member: the write crossed the peer sockets.
    let got = ctl(&sock("client3"), &["get", "over", "--print-value-only"]);
    assert_eq!(got.trim(), "unix");
    let list = ctl(&client1, &["member", "list"]);
    assert!(list.contains(&sock("peer2")), "{list}");
    // A member killed leaves its socket files behind; it restarts over them.
    drop(members.remove(1));
    assert!(dir.path().join("peer2").exists(), "the stale socket file stays after kill -9");
    members.insert(1, start(2));
    let got = ctl(&sock("client2"), &["get", "over", "--print-value-only", "--consistency=l"]);
    assert_eq!(got.trim(), "unix");
}
