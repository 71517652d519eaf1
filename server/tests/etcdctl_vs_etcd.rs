//! Side by side: one script of `etcdctl` 3.4 commands run against real etcd 3.4.23 (Debian's etcd-server) and
//! against ferrokv, each on a fresh single member; every command's exit status, standard output and error line
//! must be the same once what legitimately differs is masked (member, cluster and lease ids, ports, hashes,
//! timings, sizes, the Raft term). The script covers get with every range option etcdctl 3.4 has, put with
//! --prev-kv, --ignore-value and --lease, del, txn compares on value, version, create and mod revision (and a
//! duplicate key), compaction and reads of compacted and future revisions, leases, member list, endpoint
//! health/hashkv, defrag, alarm list, move-leader and over-size requests. The commands meant to fail are listed, and
//! must fail on etcd, so the script checks itself.
//!
//! Needs `etcd` and `etcdctl` on PATH (scripts/test.sh installs both; under CI=true their absence is a failure).

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};

use common::etcd::installed;
use common::{free_port, start};
use regex::Regex;

/// One command of the script: etcdctl's arguments and what to feed its standard input.
struct Step {
    args: Vec<String>,
    stdin: Option<String>,
}

/// `args` split on spaces; `''` stands for an empty argument (the empty key).
fn step(args: &str) -> Step {
    let args = args.split_whitespace().map(|a| if a == "''" { String::new() } else { a.to_string() }).collect();
    Step { args, stdin: None }
}

fn step_in(args: &str, stdin: &str) -> Step {
    Step { stdin: Some(stdin.to_string()), ..step(args) }
}

/// Runs one step against `endpoint`; returns (success, stdout, the stderr line that says "Error: ...").
fn run(endpoint: &str, s: &Step) -> (bool, String, String) {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoint}")).arg("--command-timeout=10s").args(&s.args);
    cmd.stdin(if s.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("etcdctl");
    if let Some(input) = &s.stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.lines().filter(|l| l.starts_with("Error:")).collect::<Vec<_>>().join("\n");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), err)
}

/// Masks what differs between two correct servers. Ids are numbered in order of first appearance, so the same id
/// must come back in the same places on both.
struct Masker {
    ids: HashMap<String, usize>,
    rules: Vec<(Regex, &'static str)>,
    id: Regex,
}

impl Masker {
    fn new(client: u16, peer: u16) -> Masker {
        let rules = vec![
            (Regex::new(&format!(r"127\.0\.0\.1:{client}\b")).unwrap(), "<client>"),
            (Regex::new(&format!(r"127\.0\.0\.1:{peer}\b")).unwrap(), "<peer>"),
            (Regex::new(r"took = [0-9.]+[µnm]?s").unwrap(), "took = <t>"),
            (Regex::new(r"remaining\(\d+s\)").unwrap(), "remaining(<n>s)"),
            (Regex::new(r#""(cluster_id|member_id|raft_term|hash|dbSize|dbSizeInUse|leader|raftIndex|raftTerm|raftAppliedIndex|ID)":\d+"#).unwrap(), "\"$1\":<n>"),
            // The version's patch level, and endpoint status's table: db size, Raft term, Raft index, applied index.
            (Regex::new(r#"\b3\.4\.\d+\b"#).unwrap(), "3.4.x"),
            (Regex::new(r"(3\.4\.x), [0-9.]+ [kMG]?B, (true|false), (true|false), \d+, \d+, \d+,").unwrap(), "$1, <size>, $2, $3, <term>, <index>, <index>,"),
            (Regex::new(r"(<client>), \d+\n").unwrap(), "$1, <hash>\n"),
        ];
        Masker { ids: HashMap::new(), rules, id: Regex::new(r"\b[0-9a-f]{12,16}\b").unwrap() }
    }

    fn mask(&mut self, text: &str) -> String {
        let mut s = text.to_string();
        for (re, with) in &self.rules {
            s = re.replace_all(&s, *with).into_owned();
        }
        let mut out = String::new();
        let mut last = 0;
        for m in self.id.find_iter(&s) {
            let n = self.ids.len();
            let n = *self.ids.entry(m.as_str().to_string()).or_insert(n);
            out.push_str(&s[last..m.start()]);
            out.push_str(&format!("<id{n}>"));
            last = m.end();
        }
        out.push_str(&s[last..]);
        out
    }
}

fn script() -> Vec<Step> {
    let big = "x".repeat(1_600_000);
    vec![
        step("put a 1"),
        step("put b 2"),
        step("put c 3"),
        step("put d 4"),
        step("put b 22 --prev-kv"),
        step("get a"),
        step("get a -w json"),
        step("get a c"),
        step("get b --from-key"),
        step("get '' --prefix --keys-only"),
        step("get '' --prefix --limit 2"),
        step("get b --print-value-only"),
        step("get '' --prefix --sort-by=MODIFY --order=DESCEND --keys-only"),
        step("get '' --prefix --sort-by=CREATE --order=ASCEND --keys-only"),
        step("get '' --prefix --sort-by=VERSION --order=DESCEND"),
        step("get '' --prefix --sort-by=VALUE --order=DESCEND"),
        step("get '' --prefix --sort-by=KEY --order=DESCEND --limit 3"),
        step("get a --rev=2"),
        step("get b --rev=3 -w json"),
        step("get a --consistency=s"),
        step("get nothing"),
        step("put b --ignore-value"),
        step("get b -w json"),
        step("put nokey --ignore-value"),
        step("del d"),
        step("del d"),
        step("del a --prev-kv"),
        step("put p/1 x"),
        step("put p/2 y"),
        step("del p/ --prefix"),
        step("put d 4"),
        step_in("txn", "value(\"b\") = \"22\"\n\nput t1 yes\n\nput t1 no\n\n"),
        step_in("txn", "value(\"b\") > \"3\"\n\nput t2 yes\n\nput t2 no\n\n"),
        step_in("txn", "version(\"b\") = \"3\"\n\nget b\n\nget c\n\n"),
        step_in("txn", "create(\"c\") = \"4\"\n\nput t3 yes\n\ndel t1\n\n"),
        step_in("txn", "mod(\"c\") < \"5\"\nversion(\"d\") = \"1\"\n\nput t4 yes\n\nput t4 no\n\n"),
        step_in("txn -w json", "mod(\"zz\") = \"0\"\n\nput t5 yes\n\n\n"),
        step_in("txn -w json", "\nget b\nput t6 x\ndel t7\n\n\n"),
        step_in("txn", "\nput t6 x\ndel t6\n\n\n"),
        step("get t --prefix"),
        step("compaction 5"),
        step("get b --rev=4"),
        step("get b --rev=5"),
        step("get b --rev=100000"),
        step("compaction 3"),
        step("compaction 100000"),
        step("lease grant 100"),
        step("lease list"),
        step("put lk lv --lease=0"),
        step("put lk lv --lease=1234"),
        step("lease revoke 1234"),
        step("lease timetolive 1234"),
        step("lease keep-alive --once 1234"),
        step("alarm list"),
        step("alarm disarm"),
        step("endpoint status -w json"),
        step("endpoint status"),
        step("member list -w json"),
        step("endpoint hashkv -w json"),
        step("endpoint health"),
        step("endpoint hashkv"),
        step("defrag"),
        step("member list"),
        step("move-leader 1234"),
        step_in("put big", &big),
        step("get '' --prefix --keys-only"),
    ]
}

/// Runs `script` against a fresh etcd and a fresh ferrokv, side by side: every command must print the same on both
/// (once masked), and exactly `expected_failures` must fail on etcd (so a typo in the script cannot pass
/// unnoticed).
fn side_by_side(script: Vec<Step>, expected_failures: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (fk_client, fk_peer, etcd_client, etcd_peer) = (free_port(), free_port(), free_port(), free_port());
    let etcd = common::etcd::start(&dir.path().join("etcd"), etcd_client, etcd_peer);
    let ferrokv = start(&dir.path().join("ferrokv"), fk_client, fk_peer);
    let (mut mask_etcd, mut mask_ours) = (Masker::new(etcd_client, etcd_peer), Masker::new(fk_client, fk_peer));
    let (mut differences, mut failed) = (Vec::new(), Vec::new());
    for s in script {
        let theirs = run(&etcd.endpoint, &s);
        let ours = run(&ferrokv.endpoint, &s);
        let theirs = (theirs.0, mask_etcd.mask(&theirs.1), mask_etcd.mask(&theirs.2));
        let ours = (ours.0, mask_ours.mask(&ours.1), mask_ours.mask(&ours.2));
        let shown = s.args.join(" ");
        if !theirs.0 {
            failed.push(shown.clone());
        }
        if theirs != ours {
            differences.push(format!("etcdctl {shown}\n  etcd:    {theirs:?}\n  ferrokv: {ours:?}"));
        }
    }
    drop(etcd);
    assert_eq!(failed, expected_failures, "the commands that fail on etcd");
    assert!(differences.is_empty(), "{} commands differ:\n{}", differences.len(), differences.join("\n"));
}

#[test]
fn etcdctl_prints_what_etcd_prints() {
    if !installed("etcdctl") || !installed("etcd") {
        return;
    }
    let expected_failures = [
        "put nokey --ignore-value",
        "txn",
        "get b --rev=4",
        "get b --rev=100000",
        "compaction 3",
        "compaction 100000",
        "put lk lv --lease=1234",
        "lease revoke 1234",
        "lease keep-alive --once 1234",
        "move-leader 1234",
        "put big",
    ];
    side_by_side(script(), &expected_failures);
}

/// Users, roles and permissions: every command of etcdctl 3.4's `user` and `role`, with the errors etcd gives.
fn auth_script() -> Vec<Step> {
    vec![
        step("user add alice:secret"),
        step("user add alice:other"),
        step("user add :nameless"),
        step("user add bob:pw"),
        step("user list"),
        step("user get alice"),
        step("user get nobody"),
        step("role add reader"),
        step("role add reader"),
        step("role add writer"),
        step("role list"),
        step("role grant-permission reader read /a/ --prefix"),
        step("role grant-permission reader write k1"),
        step("role grant-permission reader readwrite k2 k9"),
        step("role grant-permission reader read z --from-key"),
        step("role grant-permission reader readwrite k1"),
        step("role get reader"),
        step("role get nobody"),
        step("role grant-permission nobody read x"),
        step("role revoke-permission reader k1"),
        step("role revoke-permission reader k1"),
        step("role revoke-permission reader /a/ --prefix"),
        step("role get reader"),
        step("user grant-role alice reader"),
        step("user grant-role alice reader"),
        step("user grant-role alice writer"),
        step("user grant-role alice nobody"),
        step("user grant-role nobody reader"),
        step("user grant-role alice root"),
        step("user get alice"),
        step("user get alice --detail"),
        step("user revoke-role alice root"),
        step("user revoke-role alice root"),
        step("user revoke-role nobody root"),
        step_in("user passwd alice --interactive=false", "newpass\n"),
        step("role delete reader"),
        step("user get alice"),
        step("role delete reader"),
        step("user delete alice"),
        step("user delete alice"),
        step("user list"),
        step("role list"),
        step("auth disable"),
    ]
}

#[test]
fn user_and_role_commands_print_what_etcd_prints() {
    if !installed("etcdctl") || !installed("etcd") {
        return;
    }
    let expected_failures = [
        "user add alice:other",
        "user add :nameless",
        "user get nobody",
        "role add reader",
        "role get nobody",
        "role grant-permission nobody read x",
        "role revoke-permission reader k1",
        "user grant-role alice nobody",
        "user grant-role nobody reader",
        // alice holds the role root, which has no record: etcd's RoleGet of it fails.
        "user get alice --detail",
        "user revoke-role alice root",
        "user revoke-role nobody root",
        "role delete reader",
        "user delete alice",
    ];
    side_by_side(auth_script(), &expected_failures);
}
