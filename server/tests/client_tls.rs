//! Clients over TLS, as an operator runs them: `etcdctl --cacert --cert --key` against a member with
//! `--client-cert-auth`; a client without a certificate is refused; one port serving both http and https; and
//! `--auto-tls`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Member, free_port};

/// A single member with `urls` as its client URLs and `extra` flags.
fn member(dir: &Path, urls: &str, extra: &[&str]) -> Member {
    let peer = format!("http://127.0.0.1:{}", free_port());
    let data = dir.join("m");
    let mut args = vec!["--data-dir", data.to_str().unwrap(), "--listen-client-urls", urls];
    args.extend_from_slice(&["--advertise-client-urls", urls, "--listen-peer-urls", &peer]);
    args.extend_from_slice(&["--initial-advertise-peer-urls", &peer]);
    args.extend_from_slice(extra);
    common::spawn(&args, urls.to_string())
}

/// etcdctl with `args`, retried for a few seconds while the member elects itself; (success, stdout+stderr).
fn etcdctl(args: &[&str]) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("etcdctl").env("ETCDCTL_API", "3").args(args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() || Instant::now() > deadline || text.contains("certificate") {
            return (out.status.success(), text);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn etcdctl_with_client_certificates_and_a_refused_client() {
    let dir = tempfile::tempdir().unwrap();
    let common::pki::Pki { ca, cert, key } = common::pki::pki(dir.path());
    let url = format!("https://127.0.0.1:{}", free_port());
    let _m = member(
        dir.path(),
        &url,
        &["--cert-file", &cert, "--key-file", &key, "--trusted-ca-file", &ca, "--client-cert-auth"],
    );
    let ep = format!("--endpoints={url}");
    let tls = ["--cacert", ca.as_str(), "--cert", cert.as_str(), "--key", key.as_str()];
    let (ok, out) = etcdctl(&[&[ep.as_str()][..], &tls, &["put", "k", "over-tls"]].concat());
    assert!(ok, "put over mutual TLS: {out}");
    let (ok, out) = etcdctl(&[&[ep.as_str()][..], &tls, &["get", "k", "--print-value-only"]].concat());
    assert!(ok && out.trim() == "over-tls", "{out}");
    // Without a client certificate the handshake fails: etcdctl says so and nothing is served.
    let (ok, out) = etcdctl(&[ep.as_str(), "--cacert", &ca, "--dial-timeout=2s", "get", "k"]);
    assert!(!ok, "a client without a certificate is served: {out}");
}

#[test]
fn one_port_serves_http_and_https_and_auto_tls() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let urls = format!("http://127.0.0.1:{port},https://127.0.0.1:{port}");
    let _m = member(dir.path(), &urls, &["--auto-tls"]);
    let (ok, out) = etcdctl(&[&format!("--endpoints=http://127.0.0.1:{port}"), "put", "a", "plain"]);
    assert!(ok, "http on the shared port: {out}");
    // Auto TLS is self-signed: the client skips verification, as with etcd.
    let https = format!("--endpoints=https://127.0.0.1:{port}");
    let (ok, out) = etcdctl(&[
        &https,
        "--insecure-transport=false",
        "--insecure-skip-tls-verify",
        "get",
        "a",
        "--print-value-only",
    ]);
    assert!(ok && out.trim() == "plain", "https on the shared port: {out}");
    assert!(dir.path().join("m").join("fixtures").join("client").join("cert.pem").exists());
}
