//! Certificates for the TLS tests: a CA made in the test, and certificates it signs (by default one for 127.0.0.1
//! and `localhost`, usable as server and as client certificate), written as PEM files; and revocation lists.

use std::path::Path;
use std::time::Duration;

/// The PEM files' paths.
pub struct Pki {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// A CA that issues certificates and revocation lists into a directory.
pub struct Authority {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    dir: std::path::PathBuf,
    pub ca: String,
    next_serial: u64,
}

/// An issued certificate: its files and serial number.
pub struct Issued {
    pub cert: String,
    pub key: String,
    pub serial: u64,
}

fn write(dir: &Path, name: &str, text: String) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

impl Authority {
    pub fn new(dir: &Path) -> Authority {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "test ca");
        let cert = params.self_signed(&key).unwrap();
        let ca = write(dir, "ca.pem", cert.pem());
        Authority { cert, key, dir: dir.to_path_buf(), ca, next_serial: 1 }
    }

    /// A certificate with Common Name `cn` for `sans` (DNS names or IPs), for servers and clients, in
    /// `<stem>.pem` and `<stem>-key.pem`.
    pub fn issue(&mut self, stem: &str, cn: &str, sans: &[&str]) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let serial = self.next_serial;
        self.next_serial += 1;
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert: write(&self.dir, &format!("{stem}.pem"), cert.pem()),
            key: write(&self.dir, &format!("{stem}-key.pem"), key.serialize_pem()),
            serial,
        }
    }

    /// A revocation list naming `serials`, in `<stem>.pem`.
    pub fn revoke(&self, stem: &str, serials: &[u64]) -> String {
        let revoked_certs = serials
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(*s),
                revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect();
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2124, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        write(&self.dir, &format!("{stem}.pem"), params.signed_by(&self.cert, &self.key).unwrap().pem().unwrap())
    }
}

/// Makes the CA and the certificate in `dir`.
pub fn pki(dir: &Path) -> Pki {
    let mut ca = Authority::new(dir);
    let member = ca.issue("member", "member", &["localhost", "127.0.0.1"]);
    Pki { ca: ca.ca, cert: member.cert, key: member.key }
}

/// Dials `port` over TLS trusting `ca`, with or without `client` (cert, key); whether the handshake and a first
/// exchange succeed.
pub fn dial_peer(port: u16, ca: &Path, client: Option<(&Path, &Path)>) -> Result<(), String> {
    use std::io::{Read, Write};
    let config = server::consensus::tls::client_config(
        client,
        &server::config::TlsFiles { trusted_ca_file: Some(ca.to_path_buf()), ..Default::default() },
    )
    .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    // The join question: the preamble, then an empty kind-4 frame; the listener answers with the members.
    tls.write_all(b"FKVP\x01\x01\x00\x00\x00\x04").map_err(|e| e.to_string())?;
    tls.flush().map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    tls.read_exact(&mut len).map_err(|e| e.to_string())?;
    Ok(())
}
