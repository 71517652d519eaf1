//! Members talking over TLS: with certificates a CA made in the test and `--peer-client-cert-auth`, and with
//! `--peer-auto-tls`. Writes go through a leader and are read back on another member, which only works if Raft's
//! traffic crosses the TLS connections; a dialler without a certificate, or speaking plain TCP, is turned away.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Member, etcdctl, free_port};

/// Starts three members with https peer URLs and `extra` flags; waits until each serves.
fn cluster(dir: &Path, extra: &[String]) -> (Vec<Member>, Vec<u16>) {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> =
        ports.iter().enumerate().map(|(i, (_, p))| format!("m{i}=https://127.0.0.1:{p}")).collect();
    let initial = initial.join(",");
    let members = ports
        .iter()
        .enumerate()
        .map(|(i, (c, p))| {
            let (c, p) = (format!("http://127.0.0.1:{c}"), format!("https://127.0.0.1:{p}"));
            let (name, data) = (format!("m{i}"), dir.join(format!("m{i}")));
            let mut args: Vec<&str> = vec!["--name", &name, "--data-dir", data.to_str().unwrap()];
            args.extend_from_slice(&["--listen-client-urls", &c, "--advertise-client-urls", &c]);
            args.extend_from_slice(&["--listen-peer-urls", &p, "--initial-advertise-peer-urls", &p]);
            args.extend_from_slice(&["--initial-cluster", &initial, "--heartbeat-interval", "50"]);
            args.extend_from_slice(&["--election-timeout", "500"]);
            args.extend(extra.iter().map(String::as_str));
            common::spawn(&args, format!("127.0.0.1:{}", ports[i].0))
        })
        .collect();
    (members, ports.iter().map(|(_, p)| *p).collect())
}

/// A put through one member, read back (linearizably) through another, retried while the cluster elects.
fn write_and_read_across(members: &[Member]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, _, err) = etcdctl(&members[0].endpoint, &["put", "over-tls", "yes"], None);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "no put went through: {err}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out, err) = etcdctl(&members[2].endpoint, &["get", "over-tls", "--print-value-only"], None);
    assert!(ok && out.trim() == "yes", "read on another member: {out} {err}");
}

#[test]
fn a_cluster_over_peer_tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::pki::pki(dir.path());
    let extra = [
        "--peer-cert-file".into(),
        p.cert.clone(),
        "--peer-key-file".into(),
        p.key.clone(),
        "--peer-trusted-ca-file".into(),
        p.ca.clone(),
        "--peer-client-cert-auth".into(),
    ];
    let (members, peer_ports) = cluster(dir.path(), &extra);
    write_and_read_across(&members);
    // A member's peer port answers a dialler with the CA's certificate, and no one else.
    common::pki::dial_peer(peer_ports[0], Path::new(&p.ca), Some((Path::new(&p.cert), Path::new(&p.key))))
        .expect("a dialler with a certificate is answered");
    let refused = common::pki::dial_peer(peer_ports[0], Path::new(&p.ca), None);
    assert!(refused.is_err(), "a dialler without a client certificate is refused");
    // Plain TCP on a TLS port: the handshake fails and the connection closes without an answer.
    use std::io::{Read, Write};
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", peer_ports[1])).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    plain.write_all(b"FKVP\x01\x01\x00\x00\x00\x04").unwrap();
    let mut buf = [0u8; 64];
    let n = plain.read(&mut buf).unwrap_or(0);
    assert!(n == 0 || buf[0] == 0x15, "a plain dialler gets no frame (at most a TLS alert), got {:?}", &buf[..n]);
}

#[test]
fn a_cluster_over_peer_auto_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (members, _) = cluster(dir.path(), &["--peer-auto-tls".to_string()]);
    write_and_read_across(&members);
    for i in 0..3 {
        let fixtures = dir.path().join(format!("m{i}")).join("fixtures").join("peer");
        assert!(fixtures.join("cert.pem").exists() && fixtures.join("key.pem").exists(), "{}", fixtures.display());
    }
}
