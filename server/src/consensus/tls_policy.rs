//! What etcd's TLS flags restrict beyond certificates, for both sides (clients and peers): `--cipher-suites` (Go's
//! names), `--tls-min-version`/`--tls-max-version`, the CRL a listener checks client certificates against
//! (`--client-crl-file`, `--peer-crl-file`), and the name a peer's certificate must carry
//! (`--peer-cert-allowed-cn`, `--peer-cert-allowed-hostname`, `--client-cert-allowed-hostname`); and Go's words for
//! a TLS alert, which etcd's tests and operators grep for ("remote error: tls: bad certificate").
//!
//! **Cipher suites**: rustls offers the six ECDHE AEAD suites of TLS 1.2 and the three of TLS 1.3. A list names TLS
//! 1.2 suites; TLS 1.3 stays on with its own suites (Go cannot restrict those either). Go names that rustls does not
//! implement (CBC, RC4, 3DES, static RSA key exchange) are left out with a warning; a list left empty by that, or
//! an unknown name, stops the start.
//!
//! **Allowed names** are checked after the chain verifies, on the listening side (the client's certificate) and on
//! the dialling side (the listener's certificate), as etcd checks both. A mismatch fails the handshake with the
//! `bad_certificate` alert Go sends, and is logged with etcd's reason ("CommonName authentication failed",
//! "client certificate authentication failed").

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme, SupportedCipherSuite};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};

use crate::config::TlsFiles;
use crate::error::Error;

/// Go's names of the TLS 1.2 suites rustls implements.
fn suite(name: &str) -> Option<SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as s;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => s::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => s::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            s::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => s::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => s::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            s::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// Go's names of the suites rustls does not implement (accepted in a list, left out).
const GO_ONLY: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// The crypto provider with the suites `--cipher-suites` allows (all of rustls's when none are named).
pub fn provider(files: &TlsFiles) -> Result<Arc<CryptoProvider>, Error> {
    let mut provider = (*crate::consensus::tls::provider()).clone();
    if files.cipher_suites.is_empty() {
        return Ok(Arc::new(provider));
    }
    if files.min_version.as_deref() == Some("TLS1.3") {
        return Err(Error::Refused("cipher suites cannot be configured when only TLS1.3 is enabled".into()));
    }
    let mut chosen: Vec<SupportedCipherSuite> =
        provider.cipher_suites.iter().copied().filter(|s| s.tls13().is_some()).collect();
    let mut tls12 = 0;
    for name in &files.cipher_suites {
        match suite(name) {
            Some(s) => {
                chosen.push(s);
                tls12 += 1;
            }
            None if GO_ONLY.contains(&name.as_str()) => crate::logging::log(
                "warn",
                "cipher suite not offered: ferrokv's TLS (rustls) implements only ECDHE with AES-GCM or ChaCha20",
                &[("cipher-suite", name.clone())],
            ),
            None => return Err(Error::Refused(format!("unexpected TLS cipher suite {name:?}"))),
        }
    }
    if tls12 == 0 {
        return Err(Error::Refused(format!(
            "none of --cipher-suites {:?} is implemented by ferrokv's TLS (rustls)",
            files.cipher_suites
        )));
    }
    provider.cipher_suites = chosen;
    Ok(Arc::new(provider))
}

/// The protocol versions `--tls-min-version`/`--tls-max-version` allow (etcd 3.5's values; TLS 1.0 and 1.1, which
/// rustls does not speak, are accepted as a minimum and mean TLS 1.2).
pub fn versions(files: &TlsFiles) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, Error> {
    let rank = |v: Option<&str>, default: u8| match v {
        None | Some("") => Ok(default),
        Some("TLS1.0" | "TLS1.1" | "TLS1.2") if default == 2 => Ok(2),
        Some("TLS1.2") => Ok(2),
        Some("TLS1.3") => Ok(3),
        Some(v @ ("TLS1.0" | "TLS1.1")) => {
            Err(Error::Refused(format!("--tls-max-version {v}: ferrokv's TLS (rustls) speaks only TLS1.2 and TLS1.3")))
        }
        Some(v) => Err(Error::Refused(format!("unexpected TLS version {v:?} (TLS1.2 or TLS1.3)"))),
    };
    let (min, max) = (rank(files.min_version.as_deref(), 2)?, rank(files.max_version.as_deref(), 3)?);
    if min > max {
        return Err(Error::Refused("--tls-min-version is greater than --tls-max-version".into()));
    }
    Ok([(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, p)| p)
        .collect())
}

/// The CRL of `--client-crl-file`/`--peer-crl-file` (PEM or DER).
pub fn load_crls(files: &TlsFiles) -> Result<Vec<CertificateRevocationListDer<'static>>, Error> {
    use rustls_pki_types::pem::PemObject;
    let Some(path) = &files.crl_file else { return Ok(Vec::new()) };
    let bytes = std::fs::read(path).map_err(Error::io(format!("read CRL {}", path.display())))?;
    let pem: Result<Vec<_>, _> = CertificateRevocationListDer::pem_slice_iter(&bytes).collect();
    match pem {
        Ok(crls) if !crls.is_empty() => Ok(crls),
        _ => Ok(vec![CertificateRevocationListDer::from(bytes)]),
    }
}

/// The names a peer's certificate must carry, if any.
#[derive(Debug, Clone, Default)]
pub struct AllowedNames {
    pub cn: Option<String>,
    pub hostname: Option<String>,
}

impl AllowedNames {
    pub fn from(files: &TlsFiles) -> Self {
        AllowedNames { cn: files.allowed_cn.clone(), hostname: files.allowed_hostname.clone() }
    }

    fn any(&self) -> bool {
        self.cn.is_some() || self.hostname.is_some()
    }

    /// etcd's checks of the end-entity certificate, with its reasons.
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let refuse = |why: &str| {
            crate::logging::log("warn", "rejected a TLS certificate", &[("error", why.to_string())]);
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        };
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
            return Err(rustls::Error::InvalidCertificate(CertificateError::BadEncoding));
        };
        if let Some(cn) = &self.cn {
            let found = parsed.subject().iter_common_name().filter_map(|a| a.as_str().ok()).next();
            if found != Some(cn.as_str()) {
                return Err(refuse("CommonName authentication failed"));
            }
        }
        if let Some(host) = &self.hostname
            && !valid_for_host(&parsed, host)
        {
            return Err(refuse("client certificate authentication failed"));
        }
        Ok(())
    }
}

/// Go's `VerifyHostname`: an IP against the IP SANs; a name against the DNS SANs, case-insensitively, a leading
/// `*.` matching one label.
fn valid_for_host(cert: &x509_parser::certificate::X509Certificate<'_>, host: &str) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else { return false };
    let ip: Option<std::net::IpAddr> = host.trim_matches(['[', ']']).parse().ok();
    san.value.general_names.iter().any(|n| match (n, ip) {
        (GeneralName::IPAddress(bytes), Some(ip)) => match ip {
            std::net::IpAddr::V4(v4) => *bytes == v4.octets(),
            std::net::IpAddr::V6(v6) => *bytes == v6.octets(),
        },
        (GeneralName::DNSName(name), None) => {
            let (name, host) = (name.to_ascii_lowercase(), host.trim_end_matches('.').to_ascii_lowercase());
            match name.strip_prefix("*.") {
                Some(suffix) => host.split_once('.').is_some_and(|(_, rest)| rest == suffix),
                None => name == host,
            }
        }
        _ => false,
    })
}

/// The handshake-signature checks of a verifier that wraps another: the wrapped one's.
macro_rules! signatures_from_inner {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// What a client-certificate verifier that wraps another tells the client: the wrapped one's.
macro_rules! client_hints_from_inner {
    () => {
        fn offer_client_auth(&self) -> bool {
            self.inner.offer_client_auth()
        }

        fn client_auth_mandatory(&self) -> bool {
            self.inner.client_auth_mandatory()
        }

        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            self.inner.root_hint_subjects()
        }
    };
}

/// A client-certificate verifier that also requires the allowed names.
#[derive(Debug)]
pub struct AllowedClient {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub names: AllowedNames,
}

impl ClientCertVerifier for AllowedClient {
    client_hints_from_inner!();

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        self.names.check(end_entity)?;
        Ok(verified)
    }

    signatures_from_inner!();
}

/// A client-certificate verifier that also takes, as Go's does, a client presenting one of the trusted CA
/// certificates itself (a self-signed CA used as the client's own certificate, which webpki refuses as
/// "CaUsedAsEndEntity"): accepted only if it is byte for byte a certificate of `--trusted-ca-file`, presented
/// alone, and within its validity period. The handshake signature is still checked with its key.
#[derive(Debug)]
pub struct TrustedRootClient {
    pub inner: Arc<dyn ClientCertVerifier>,
    /// The DER of every certificate of the trusted CA file.
    pub roots: Vec<Vec<u8>>,
}

impl ClientCertVerifier for TrustedRootClient {
    client_hints_from_inner!();

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let refused = match self.inner.verify_client_cert(end_entity, intermediates, now) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let a_root = intermediates.is_empty() && self.roots.iter().any(|r| r.as_slice() == end_entity.as_ref());
        let current = x509_parser::parse_x509_certificate(end_entity).is_ok_and(|(_, c)| {
            let t = now.as_secs() as i64;
            c.validity().not_before.timestamp() <= t && t <= c.validity().not_after.timestamp()
        });
        if a_root && current { Ok(ClientCertVerified::assertion()) } else { Err(refused) }
    }

    signatures_from_inner!();
}

/// A server-certificate verifier that also requires the allowed names.
#[derive(Debug)]
pub struct AllowedServer {
    pub inner: Arc<dyn ServerCertVerifier>,
    pub names: AllowedNames,
}

impl ServerCertVerifier for AllowedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        self.names.check(end_entity)?;
        Ok(verified)
    }

    signatures_from_inner!();
}

/// Wraps `inner` with the allowed-name check when names are configured.
pub fn client_verifier(inner: Arc<dyn ClientCertVerifier>, names: AllowedNames) -> Arc<dyn ClientCertVerifier> {
    if names.any() { Arc::new(AllowedClient { inner, names }) } else { inner }
}

/// Wraps `inner` with the allowed-name check when names are configured.
pub fn server_verifier(inner: Arc<dyn ServerCertVerifier>, names: AllowedNames) -> Arc<dyn ServerCertVerifier> {
    if names.any() { Arc::new(AllowedServer { inner, names }) } else { inner }
}

/// A TLS failure in Go's words where Go has them (an alert from the other side: "remote error: tls: bad
/// certificate"), else rustls's.
pub fn describe(e: &std::io::Error) -> String {
    use rustls::AlertDescription as A;
    let Some(rustls::Error::AlertReceived(alert)) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return e.to_string();
    };
    let go = match alert {
        A::BadCertificate => "bad certificate",
        A::UnsupportedCertificate => "unsupported certificate",
        A::CertificateRevoked => "revoked certificate",
        A::CertificateExpired => "expired certificate",
        A::CertificateUnknown => "unknown certificate",
        A::UnknownCA => "unknown certificate authority",
        A::AccessDenied => "access denied",
        A::HandshakeFailure => "handshake failure",
        A::ProtocolVersion => "protocol version not supported",
        A::InsufficientSecurity => "insufficient security level",
        A::DecryptError => "error decrypting message",
        A::CertificateRequired => "certificate required",
        A::IllegalParameter => "illegal parameter",
        A::InternalError => "internal error",
        other => return format!("remote error: tls: {other:?}"),
    };
    format!("remote error: tls: {go}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_ca_may_be_a_clients_own_certificate_and_no_other_ca_may() {
        let ca = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.distinguished_name.push(rcgen::DnType::CommonName, name);
            params.self_signed(&key).unwrap().der().clone()
        };
        let (trusted, stranger) = (ca("root"), ca("root"));
        let mut store = rustls::RootCertStore::empty();
        store.add(trusted.clone()).unwrap();
        let provider = crate::consensus::tls::provider();
        let inner =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider).build().unwrap();
        let v = TrustedRootClient { inner, roots: vec![trusted.as_ref().to_vec()] };
        let now = UnixTime::now();
        assert!(v.inner.verify_client_cert(&trusted, &[], now).is_err(), "webpki alone refuses a CA as a client");
        assert!(v.verify_client_cert(&trusted, &[], now).is_ok(), "the trusted CA itself, as Go accepts it");
        assert!(v.verify_client_cert(&stranger, &[], now).is_err(), "another CA with the same name");
        assert!(v.verify_client_cert(&trusted, std::slice::from_ref(&stranger), now).is_err(), "not alone");
    }

    #[test]
    fn go_suite_names() {
        let files = |names: &[&str]| TlsFiles {
            cipher_suites: names.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let p = provider(&files(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA"])).unwrap();
        assert_eq!(p.cipher_suites.iter().filter(|s| s.tls13().is_none()).count(), 1, "the CBC suite is left out");
        assert!(p.cipher_suites.iter().any(|s| s.tls13().is_some()), "TLS 1.3 stays on");
        let e = provider(&files(&["TLS_NO_SUCH_SUITE"])).unwrap_err().to_string();
        assert!(e.contains("unexpected TLS cipher suite"), "{e}");
        assert!(provider(&files(&["TLS_RSA_WITH_RC4_128_SHA"])).is_err(), "nothing rustls implements");
    }

    #[test]
    fn versions_as_etcd_names_them() {
        let v = |min: &str, max: &str| {
            let f = TlsFiles { min_version: Some(min.into()), max_version: Some(max.into()), ..Default::default() };
            versions(&f).map(|v| v.len())
        };
        assert_eq!(v("TLS1.2", "").unwrap(), 2);
        assert_eq!(v("TLS1.3", "").unwrap(), 1);
        assert_eq!(v("TLS1.0", "TLS1.2").unwrap(), 1);
        assert!(v("TLS1.3", "TLS1.2").is_err());
        assert!(v("TLS1.2", "TLS1.1").is_err());
        assert!(v("SSL3", "").is_err());
    }
}
