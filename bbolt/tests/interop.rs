//! Against the real bbolt (Go's, inside Debian's etcdctl 3.4 and etcd 3.4.23):
//! - a file this crate writes passes `etcdctl snapshot status`, which runs bbolt's own integrity check
//!   (`tx.Check`: every page reachable or free, none twice) and reports the revision, key count and hash it reads;
//! - a data file real etcd wrote reads back through this crate's reader with the same key count and hash
//!   (CRC-32C over every bucket name, key and value, as `snapshot status` computes it).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Buckets = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

fn have(cmd: &str) -> bool {
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {cmd}")).output().is_ok_and(|o| o.status.success());
    assert!(found || std::env::var_os("CI").is_none(), "CI installs {cmd}");
    if !found {
        eprintln!("skipping: {cmd} is not installed");
    }
    found
}

/// `etcdctl snapshot status FILE -w json`: (hash, revision, total keys).
fn status(path: &std::path::Path) -> (u32, i64, u64) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "snapshot status: {text}{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    (v["hash"].as_u64().unwrap() as u32, v["revision"].as_i64().unwrap(), v["totalKey"].as_u64().unwrap())
}

/// What `snapshot status` computes, over what this crate reads.
fn hash_of(b: &Buckets) -> (u32, u64) {
    let mut h = 0u32;
    let mut n = 0u64;
    for (name, entries) in b {
        h = crc32c::crc32c_append(h, name);
        for (k, v) in entries {
            h = crc32c::crc32c_append(crc32c::crc32c_append(h, k), v);
            n += 1;
        }
    }
    (h, n)
}

fn rev_key(main: u64, sub: u64) -> Vec<u8> {
    let mut k = main.to_be_bytes().to_vec();
    k.push(b'_');
    k.extend_from_slice(&sub.to_be_bytes());
    k
}

struct Mem<'a>(&'a Buckets);

impl bbolt::Source for Mem<'_> {
    fn visit(&mut self, bucket: usize, f: &mut bbolt::Visit<'_>) -> bbolt::Result<()> {
        for (k, v) in self.0.values().nth(bucket).expect("a bucket") {
            f(k, v)?;
        }
        Ok(())
    }
}

#[test]
fn real_bbolt_checks_and_reads_what_we_write() {
    if !have("etcdctl") {
        return;
    }
    let mut key = BTreeMap::new();
    for main in 2..20_002u64 {
        let value = if main % 997 == 0 { vec![b'x'; 9000] } else { format!("value of revision {main}").into_bytes() };
        key.insert(rev_key(main, 0), value);
    }
    let meta: BTreeMap<Vec<u8>, Vec<u8>> = [(b"consistent_index".to_vec(), 20_002u64.to_be_bytes().to_vec())].into();
    let b: Buckets =
        [(b"empty".to_vec(), BTreeMap::new()), (b"key".to_vec(), key), (b"meta".to_vec(), meta)].into_iter().collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    let names: Vec<&[u8]> = b.keys().map(Vec::as_slice).collect();
    bbolt::write(&mut file.as_file(), &names, &mut Mem(&b), bbolt::WriteOptions::default()).unwrap();
    let (hash, revision, keys) = status(file.path());
    assert_eq!((hash, keys), hash_of(&b));
    assert_eq!(revision, 20_001);
}

#[test]
fn we_read_what_real_etcd_writes() {
    if !have("etcd") || !have("etcdctl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = |_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (c, p) = (format!("http://127.0.0.1:{}", port(0)), format!("http://127.0.0.1:{}", port(1)));
    let mut etcd = Command::new("etcd")
        .args(["--data-dir", dir.path().join("etcd").to_str().unwrap(), "--listen-client-urls", &c])
        .args(["--advertise-client-urls", &c, "--listen-peer-urls", &p, "--initial-advertise-peer-urls", &p])
        .args(["--initial-cluster", &format!("default={p}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ctl = |args: &[&str], input: Option<&str>| {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3").arg(format!("--endpoints={c}")).args(args);
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = input {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        child.wait().unwrap().success()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ctl(&["put", "first", "1"], None) {
        assert!(Instant::now() < deadline, "etcd did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in 0..300 {
        assert!(ctl(&["put", &format!("k{i:03}"), &"v".repeat(if i % 50 == 0 { 9000 } else { 100 })], None));
    }
    for i in (0..300).step_by(7) {
        assert!(ctl(&["del", &format!("k{i:03}")], None));
    }
    assert!(ctl(&["lease", "grant", "600"], None));
    // SIGTERM: etcd commits its backend on the way out.
    // SAFETY: kill(2) takes no pointers; the PID is our own live child.
    unsafe { libc::kill(etcd.id() as i32, libc::SIGTERM) };
    etcd.wait().unwrap();
    let db = dir.path().join("etcd").join("member").join("snap").join("db");
    let r = bbolt::Reader::open(&db).unwrap();
    let mut read = Buckets::new();
    for name in r.buckets().unwrap() {
        let mut entries = BTreeMap::new();
        r.for_each(&name, &mut |k, v| {
            entries.insert(k.to_vec(), v.to_vec());
            Ok(())
        })
        .unwrap();
        read.insert(name, entries);
    }
    for bucket in ["key", "meta", "lease", "members", "cluster"] {
        assert!(read.contains_key(bucket.as_bytes()), "bucket {bucket} in {:?}", read.keys().collect::<Vec<_>>());
    }
    let (hash, _, keys) = status(&db);
    assert_eq!(hash_of(&read), (hash, keys));
}
