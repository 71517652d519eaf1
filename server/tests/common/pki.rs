//! Certificates for the TLS tests: a CA made in the test, and one certificate it signed for 127.0.0.1 and
//! `localhost`, usable as server and as client certificate, written as PEM files.

use std::path::Path;

/// The PEM files' paths.
pub struct Pki {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// Makes the CA and the certificate in `dir`.
pub fn pki(dir: &Path) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "test ca");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "member");
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let path = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    Pki {
        ca: path("ca.pem", ca.pem()),
        cert: path("member.pem", cert.pem()),
        key: path("member-key.pem", key.serialize_pem()),
    }
}
