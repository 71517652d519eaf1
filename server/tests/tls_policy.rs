//! etcd's TLS restrictions beyond certificates: a client certificate on `--client-crl-file` is refused while
//! another passes; `--peer-cert-allowed-cn` and `--peer-cert-allowed-hostname` admit only members whose certificates
//! carry the name; `--cipher-suites` and `--tls-min-version`/`--tls-max-version` refuse a client that offers none
//! of what they allow, and an unknown suite name stops the start.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::{Authority, dial_peer};
use common::{Member, free_port};

/// A single member with client URL `client` and peer URL `peer` (http or https) and `extra` flags.
fn member(dir: &Path, client: &str, peer: &str, extra: &[&str]) -> Member {
    let data = dir.join("m");
    let mut args = vec!["--data-dir", data.to_str().unwrap(), "--listen-client-urls", client];
    args.extend_from_slice(&["--advertise-client-urls", client, "--listen-peer-urls", peer]);
    args.extend_from_slice(&["--initial-advertise-peer-urls", peer, "--initial-cluster", "default="]);
    let initial = format!("default={peer}");
    *args.last_mut().unwrap() = &initial;
    args.extend_from_slice(extra);
    common::spawn(&args, client.to_string())
}

/// etcdctl over TLS with a client certificate, retried while the member starts; (success, output).
fn etcdctl(url: &str, ca: &str, cert: &str, key: &str, args: &[&str]) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([&format!("--endpoints={url}"), "--cacert", ca, "--cert", cert, "--key", key, "--dial-timeout=2s"])
            .args(args)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() || Instant::now() > deadline {
            return (out.status.success(), text);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_revoked_client_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = Authority::new(dir.path());
    let server = ca.issue("server", "server", &["localhost", "127.0.0.1"]);
    let good = ca.issue("good", "good", &["localhost"]);
    let revoked = ca.issue("revoked", "revoked", &["localhost"]);
    let crl = ca.revoke("crl", &[revoked.serial]);
    let url = format!("https://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let flags = ["--cert-file", &server.cert, "--key-file", &server.key, "--trusted-ca-file", &ca.ca];
    let _m =
        member(dir.path(), &url, &peer, &[&flags[..], &["--client-cert-auth", "--client-crl-file", &crl]].concat());
    let (ok, out) = etcdctl(&url, &ca.ca, &good.cert, &good.key, &["put", "k", "v"]);
    assert!(ok, "a certificate the list does not name: {out}");
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let tls13 = [&rustls::version::TLS13];
    exchange(port, &ca.ca, &tls13, None, Some((&good.cert, &good.key))).expect("a certificate the list does not name");
    let e = exchange(port, &ca.ca, &tls13, None, Some((&revoked.cert, &revoked.key))).unwrap_err();
    assert!(e.contains("CertificateRevoked"), "a revoked certificate: {e}");
}

#[test]
fn allowed_common_name_and_hostname_admit_only_the_members_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = Authority::new(dir.path());
    let server = ca.issue("server", "member", &["localhost", "127.0.0.1"]);
    let named = ca.issue("named", "member", &["allowed.example"]);
    let other = ca.issue("other", "intruder", &["other.example"]);
    let paths = |i: &common::pki::Issued| (Path::new(&i.cert).to_path_buf(), Path::new(&i.key).to_path_buf());
    let ((nc, nk), (oc, ok)) = (paths(&named), paths(&other));
    for (flag, value) in [("--peer-cert-allowed-cn", "member"), ("--peer-cert-allowed-hostname", "allowed.example")] {
        let sub = dir.path().join(&flag[2..]);
        std::fs::create_dir_all(&sub).unwrap();
        let client = format!("http://127.0.0.1:{}", free_port());
        let port = free_port();
        let peer = format!("https://127.0.0.1:{port}");
        let tls = ["--peer-cert-file", &server.cert, "--peer-key-file", &server.key, "--peer-trusted-ca-file", &ca.ca];
        let m = member(&sub, &client, &peer, &[&tls[..], &["--peer-client-cert-auth", flag, value]].concat());
        let ca_path = Path::new(&ca.ca);
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = dial_peer(port, ca_path, Some((&nc, &nk))) {
            assert!(Instant::now() < deadline, "{flag} {value}: the named member was refused: {e}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let refused = dial_peer(port, ca_path, Some((&oc, &ok)));
        assert!(refused.is_err(), "{flag} {value}: a member without the name was answered");
        drop(m);
    }
}

/// What a client offering `versions` and `suites`, presenting `client` (cert, key), gets from the member at `port`:
/// a TLS handshake, then an HTTP/1.1 request for /health, whose first answer bytes must arrive.
fn exchange(
    port: u16,
    ca: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: Option<Vec<rustls::SupportedCipherSuite>>,
    client: Option<(&str, &str)>,
) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use std::io::{Read, Write};
    let mut provider = (*server::consensus::tls::provider()).clone();
    if let Some(suites) = suites {
        provider.cipher_suites = suites;
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut first = [0u8; 4];
    tls.read_exact(&mut first).map_err(|e| e.to_string())?;
    Ok(())
}

/// Waits until `f` succeeds (the member is up), for at most 10 s.
fn eventually(what: &str, f: impl Fn() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = f() {
        assert!(Instant::now() < deadline, "{what}: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cipher_suites_and_versions_refuse_a_client_that_offers_none_of_them() {
    use rustls::crypto::ring::cipher_suite as s;
    let dir = tempfile::tempdir().unwrap();
    let mut ca = Authority::new(dir.path());
    let server = ca.issue("server", "server", &["localhost", "127.0.0.1"]);
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let flags = ["--cert-file", &server.cert, "--key-file", &server.key];
    let limits = ["--cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_AES_128_CBC_SHA"];
    let _m = member(dir.path(), &url, &peer, &[&flags[..], &limits, &["--tls-max-version", "TLS1.2"]].concat());
    let tls12 = [&rustls::version::TLS12];
    let offer = |suite| Some(vec![suite]);
    eventually("the allowed suite", || {
        exchange(port, &ca.ca, &tls12, offer(s::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), None)
    });
    let e = exchange(port, &ca.ca, &tls12, offer(s::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384), None).unwrap_err();
    assert!(e.contains("HandshakeFailure"), "a suite not listed: {e}");
    let tls13 = [&rustls::version::TLS13];
    let e = exchange(port, &ca.ca, &tls13, None, None).unwrap_err();
    assert!(e.contains("ProtocolVersion"), "TLS 1.3 above the max: {e}");

    // An unknown name stops the start, with etcd's words.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrokv"))
        .args(["--data-dir", dir.path().join("bad").to_str().unwrap(), "--listen-client-urls", &url])
        .args(["--advertise-client-urls", &url, "--cert-file", &server.cert, "--key-file", &server.key])
        .args(["--cipher-suites", "TLS_NO_SUCH_SUITE"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("unexpected TLS cipher suite"), "{text}");
}
