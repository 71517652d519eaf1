//! `--quota-backend-bytes` and the NOSPACE alarm, end to end on a 3-member cluster through Debian's etcdctl: the
//! store is filled until a put is refused with etcd's "database space exceeded"; the alarm is then raised on every
//! member (and survives a member's restart); puts are refused everywhere while reads and deletes work; after
//! deletes, a compaction and a defragmentation (online: writes never stop) the operator disarms, puts resume, and
//! every acknowledged key that was not deleted is still there on every member.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{launch_with, specs};
use common::etcdctl;

const QUOTA: &str = "--quota-backend-bytes=262144";
const NOSPACE: &str = "etcdserver: mvcc: database space exceeded";

/// etcdctl through `endpoint`, retried while the cluster elects (but not on a refusal for space).
fn ctl(endpoint: &str, args: &[&str]) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, err) = etcdctl(endpoint, args, None);
        if ok {
            return Ok(out);
        }
        if err.contains(NOSPACE) || Instant::now() > deadline {
            return Err(err);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn value(i: usize) -> String {
    format!("{i:06}-{}", "v".repeat(8 << 10))
}

#[test]
fn nospace_alarm_refuses_growth_everywhere_until_room_is_made_and_it_is_disarmed() {
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = specs(3);
    let mut members: Vec<_> = specs.iter().map(|s| launch_with(dir.path(), s, &cluster, &[QUOTA])).collect();
    let eps: Vec<String> = members.iter().map(|m| m.endpoint.clone()).collect();

    // Fill: 8 KiB values until the quota refuses one (256 KiB of quota: it must come well before 200 puts).
    let mut acked = BTreeMap::new();
    let refusal = (0..200).find_map(|i| match ctl(&eps[i % 3], &["put", &format!("k{i:04}"), &value(i)]) {
        Ok(_) => {
            acked.insert(format!("k{i:04}"), value(i));
            None
        }
        Err(e) => Some(e),
    });
    let refusal = refusal.expect("the quota never refused a put");
    assert!(refusal.contains(NOSPACE), "refused for another reason: {refusal}");
    assert!(acked.len() >= 10, "refused after only {} puts", acked.len());

    // The alarm is raised through Raft: every member lists it (and reports it in Status and /health).
    for ep in &eps {
        let list = ctl(ep, &["alarm", "list"]).unwrap();
        assert!(list.contains("alarm:NOSPACE"), "{ep}: {list}");
        let (code, body) = common::http_get(ep.trim_start_matches("http://"), "/health");
        assert_eq!((code, body.trim()), (503, r#"{"health":"false"}"#), "{ep}");
    }
    let status = ctl(&eps[1], &["endpoint", "status"]).unwrap();
    assert!(status.contains("alarm:NOSPACE"), "{status}");

    // It survives a restart: the member reloads it from its store.
    members.remove(2);
    members.push(launch_with(dir.path(), &specs[2], &cluster, &[QUOTA]));
    let list = ctl(&eps[2], &["alarm", "list"]).unwrap();
    assert!(list.contains("alarm:NOSPACE"), "after a restart: {list}");

    // Puts (small ones too), lease grants and txns with a put are refused on every member; reads go on.
    for ep in &eps {
        let err = ctl(ep, &["put", "small", "x"]).unwrap_err();
        assert!(err.contains(NOSPACE), "{ep}: {err}");
        let err = ctl(ep, &["lease", "grant", "100"]).unwrap_err();
        assert!(err.contains(NOSPACE), "{ep}: {err}");
        let got = ctl(ep, &["get", "k0000", "--print-value-only"]).unwrap();
        assert_eq!(got.trim(), value(0));
    }
    let (ok, _, err) = etcdctl(&eps[0], &["txn"], Some("\nput small x\n\n\n"));
    assert!(!ok && err.contains(NOSPACE), "a txn with a put: {err}");
    // A put larger than the whole quota, through each member: no member's store has room for it, so each raises
    // an alarm of its own, as etcd's do (a member that still has room for a put refuses it without one; how full
    // each member's file is differs a little with the pages its readers still hold).
    let larger = "v".repeat(300 << 10);
    for ep in &eps {
        let (ok, _, err) = etcdctl(ep, &["put", "large"], Some(&larger));
        assert!(!ok && err.contains(NOSPACE), "{ep}: {err}");
    }
    let list = ctl(&eps[0], &["alarm", "list"]).unwrap();
    assert_eq!(list.matches("alarm:NOSPACE").count(), 3, "{list}");

    // Make room: delete half the keys (a txn without puts passes too), compact, defragment; writes never stop.
    let deleted: Vec<String> = acked.keys().take(acked.len() / 2).cloned().collect();
    for (n, k) in deleted.iter().enumerate() {
        if n % 2 == 0 {
            assert_eq!(ctl(&eps[n % 3], &["del", k]).unwrap().trim(), "1");
        } else {
            let (ok, out, err) = etcdctl(&eps[n % 3], &["txn"], Some(&format!("\ndel {k}\n\n\n")));
            assert!(ok, "a txn that deletes: {err}");
            assert!(out.contains("SUCCESS"), "{out}");
        }
        acked.remove(k);
    }
    let rev: serde_json::Value =
        serde_json::from_str(&ctl(&eps[0], &["endpoint", "status", "-w", "json"]).unwrap()).unwrap();
    let rev = rev[0]["Status"]["header"]["revision"].as_i64().unwrap().to_string();
    ctl(&eps[0], &["compact", &rev, "--physical"]).unwrap();
    ctl(&eps.join(","), &["defrag"]).unwrap();

    // Disarm (etcdctl lists, then clears each alarm), and puts resume on every member.
    let disarmed = ctl(&eps[0], &["alarm", "disarm"]).unwrap();
    assert!(disarmed.contains("alarm:NOSPACE"), "{disarmed}");
    for ep in &eps {
        assert_eq!(ctl(ep, &["alarm", "list"]).unwrap().trim(), "", "{ep}");
        let (code, _) = common::http_get(ep.trim_start_matches("http://"), "/health");
        assert_eq!(code, 200, "{ep}");
    }
    for (n, ep) in eps.iter().enumerate() {
        let k = format!("after-{n}");
        ctl(ep, &["put", &k, "small"]).unwrap();
        acked.insert(k, "small".into());
    }

    // Nothing acknowledged and not deleted is lost, on any member (serializable reads: each member's own store).
    for ep in &eps {
        let out = ctl(ep, &["get", "", "--from-key", "--consistency=s"]).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        let held: BTreeMap<String, String> = lines.chunks(2).map(|kv| (kv[0].to_string(), kv[1].to_string())).collect();
        assert_eq!(held, acked, "{ep}");
    }
}
