//! TLS between members (rustls): `--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file`,
//! `--peer-client-cert-auth`, and `--peer-auto-tls`, with etcd's meanings.
//!
//! - A member dials with its peer certificate as the client certificate (etcd's rafthttp does the same), and checks
//!   the listening member's certificate against the trusted CA for the URL's host; without a trusted CA (auto TLS),
//!   it does not check it, as etcd's self-signed mode does not.
//! - The listener asks for a client certificate; with `--peer-client-cert-auth` it requires one the trusted CA
//!   signed.
//! - `--peer-auto-tls` without certificate files: a self-signed certificate for the hosts of
//!   `--listen-peer-urls` (ECDSA P-256, valid `--self-signed-cert-validity` years), kept in `<data-dir>/fixtures/peer`
//!   (etcd's place) and reused at the next start.
//!
//! The listener sends no TLS 1.3 session tickets: peer connections carry one direction of traffic only, and the
//! dialler treats anything readable as the end of the connection (see `transport::open`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::TlsFiles;
use crate::error::Error;

/// The TLS configurations of a member's peer side.
#[derive(Debug, Clone)]
pub struct PeerTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

/// ring's primitives: they build with nothing but a C compiler (aws-lc needs more). rustls marks ring's provider
/// deprecated for lacking post-quantum key exchange, which etcd (Go's TLS 1.3 before 1.24) does not offer either.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(what: impl std::fmt::Display) -> impl FnOnce(rustls::Error) -> Error {
    move |e| Error::Refused(format!("{what}: {e}"))
}

/// Certificates and key from PEM files.
pub fn load_pair(cert: &Path, key: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect())
        .map_err(|e| Error::Refused(format!("cannot read certificate {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Refused(format!("no certificate in {}", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Refused(format!("cannot read private key {}: {e}", key.display())))?;
    Ok((certs, key))
}

/// The CA certificates of a PEM file.
pub fn load_roots(ca: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Refused(format!("cannot read trusted CA {}: {e}", ca.display())))?;
    for c in certs {
        roots.add(c).map_err(tls_err(format!("trusted CA {}", ca.display())))?;
    }
    Ok(roots)
}

/// A self-signed certificate for `hosts` in `dir` (made once, then reused), as etcd's auto TLS makes them.
pub fn self_signed(dir: &Path, hosts: &[String], years: u32) -> Result<(PathBuf, PathBuf), Error> {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(dir).map_err(Error::io(dir.display()))?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec())
        .map_err(|e| Error::Refused(format!("self-signed certificate for {hosts:?}: {e}")))?;
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "etcd");
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + std::time::Duration::from_secs(365 * 24 * 3600 * u64::from(years.max(1)))).into();
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Refused(format!("self-signed key: {e}")))?;
    let cert = params.self_signed(&key).map_err(|e| Error::Refused(format!("self-signed certificate: {e}")))?;
    let write = |path: &Path, text: String| -> Result<(), Error> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(Error::io(path.display()))?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(Error::io(path.display()))
    };
    write(&key_path, key.serialize_pem())?;
    write(&cert_path, cert.pem())?;
    crate::logging::log("info", "generated self-signed certificate", &[("path", cert_path.display().to_string())]);
    Ok((cert_path, key_path))
}

/// The server side of `files` (certificates already resolved, auto TLS included), with the versions, suites, CRL
/// and allowed names the flags set (`tls_policy`).
pub fn server_config(cert: &Path, key: &Path, files: &TlsFiles) -> Result<ServerConfig, Error> {
    use crate::consensus::tls_policy as policy;
    let (certs, key) = load_pair(cert, key)?;
    let provider = policy::provider(files)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&policy::versions(files)?)
        .map_err(tls_err("TLS versions"))?;
    let builder = match files.trusted_ca_file.as_deref() {
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider);
            let crls = policy::load_crls(files)?;
            if !crls.is_empty() {
                // etcd checks the client's own certificate against the list; a CA the list does not cover passes.
                verifier =
                    verifier.with_crls(crls).only_check_end_entity_revocation().allow_unknown_revocation_status();
            }
            let verifier = if files.client_cert_auth { verifier } else { verifier.allow_unauthenticated() };
            let verifier = verifier.build().map_err(|e| Error::Refused(format!("client verifier: {e}")))?;
            let roots = CertificateDer::pem_file_iter(ca)
                .and_then(|i| i.map(|c| c.map(|c| c.as_ref().to_vec())).collect::<Result<Vec<_>, _>>())
                .map_err(|e| Error::Refused(format!("cannot read trusted CA {}: {e}", ca.display())))?;
            let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> =
                Arc::new(policy::TrustedRootClient { inner: verifier, roots });
            builder.with_client_cert_verifier(policy::client_verifier(verifier, policy::AllowedNames::from(files)))
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_single_cert(certs, key).map_err(tls_err(format!("certificate {}", cert.display())))?;
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The client side: presents `cert`/`key` when given; checks the server against `files`' trusted CA (and allowed
/// names), or not at all without one.
pub fn client_config(cert_key: Option<(&Path, &Path)>, files: &TlsFiles) -> Result<ClientConfig, Error> {
    use crate::consensus::tls_policy as policy;
    let provider = policy::provider(files)?;
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&policy::versions(files)?)
        .map_err(tls_err("TLS versions"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match files.trusted_ca_file.as_deref() {
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| Error::Refused(format!("server verifier: {e}")))?;
            policy::server_verifier(verifier, policy::AllowedNames::from(files))
        }
        None => Arc::new(NoServerCheck(provider)),
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    match cert_key {
        Some((cert, key)) => {
            let (certs, key) = load_pair(cert, key)?;
            builder.with_client_auth_cert(certs, key).map_err(tls_err(format!("certificate {}", cert.display())))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The certificate and key a side presents: the files given, or auto TLS's self-signed pair in `dir` for `hosts`;
/// `None` when the side's TLS is off.
pub fn cert_pair(files: &TlsFiles, dir: &Path, hosts: &[String]) -> Result<Option<(PathBuf, PathBuf)>, Error> {
    if !files.enabled() {
        return Ok(None);
    }
    match (&files.cert_file, &files.key_file) {
        (Some(c), Some(k)) => Ok(Some((c.clone(), k.clone()))),
        _ => self_signed(dir, hosts, files.self_signed_years).map(Some),
    }
}

/// The peer side's configurations; `None` when peer TLS is off. `dir` is where auto TLS keeps its certificate,
/// `hosts` the names it is made for.
pub fn peer_tls(files: &TlsFiles, dir: &Path, hosts: &[String]) -> Result<Option<PeerTls>, Error> {
    let Some((cert, key)) = cert_pair(files, dir, hosts)? else { return Ok(None) };
    let server = server_config(&cert, &key, files)?;
    let client = client_config(Some(files.dial_pair(&cert, &key)), files)?;
    Ok(Some(PeerTls { server: Arc::new(server), client: Arc::new(client) }))
}

/// The name a dialled member's certificate must carry: its URL's host.
pub fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
    ServerName::try_from(host.to_string()).map_err(|e| Error::Refused(format!("peer host {host}: {e}")))
}

/// etcd's self-signed mode: the listening member's certificate is not checked (there is no CA to check it with);
/// the handshake's signatures still are.
#[derive(Debug)]
struct NoServerCheck(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoServerCheck {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
