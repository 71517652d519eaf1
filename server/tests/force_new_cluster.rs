//! `--force-new-cluster`: after a 3-member cluster loses two members for good, the survivor restarted with the flag
//! becomes the only member of the same cluster (same cluster id), keeps every acknowledged write, serves reads and
//! writes at once, and stays a one-member cluster when restarted without the flag.

mod common;

use common::cluster::{launch, launch_with, specs};

use common::etcdctl_ok as ctl;

#[test]
fn the_survivor_of_a_lost_quorum_restarts_as_a_one_member_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = specs(3);
    let mut members: Vec<_> = specs.iter().map(|s| launch(dir.path(), s, &cluster)).collect();
    let ep = members[0].endpoint.clone();
    for i in 0..30 {
        ctl(&members[i % 3].endpoint, &["put", &format!("k{i:02}"), "v"]);
    }
    let before = ctl(&ep, &["endpoint", "status", "-w", "fields"]);
    let id_of = |text: &str| {
        text.lines().find(|l| l.contains("\"ClusterID\"")).map(|l| l.split(':').nth(1).unwrap().trim().to_string())
    };
    let id = id_of(&before).expect("a cluster id");
    // Quorum is lost for good: all three are killed; only the first comes back.
    members.truncate(1);
    drop(members);
    let forced = launch_with(dir.path(), &specs[0], &cluster, &["--force-new-cluster"]);
    ctl(&ep, &["put", "after", "forced"]);
    let list = ctl(&ep, &["member", "list"]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.contains(&specs[0].name), "{list}");
    let keys = ctl(&ep, &["get", "k", "--prefix", "--keys-only"]);
    assert_eq!(keys.split_whitespace().count(), 30, "{keys}");
    assert_eq!(id_of(&ctl(&ep, &["endpoint", "status", "-w", "fields"])), Some(id.clone()), "the cluster id is kept");
    let log: Vec<String> = forced.log.lock().unwrap().iter().cloned().collect();
    assert!(log.iter().any(|l| l.contains("forcing restart member")), "etcd's line");
    drop(forced);
    // Restarted without the flag, it is still the one member, with everything.
    let _again = launch(dir.path(), &specs[0], &cluster);
    assert_eq!(ctl(&ep, &["get", "after", "--print-value-only"]).trim(), "forced");
    assert_eq!(ctl(&ep, &["member", "list"]).lines().count(), 1);
}
