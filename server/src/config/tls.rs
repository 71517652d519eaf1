//! The TLS flags of each side (clients, peers) as [`TlsFiles`], with etcd's rules: https URLs need a certificate or
//! auto TLS; a certificate needs its key; peer URLs are all http or all https; files given for http URLs are
//! ignored, as etcd ignores them. The TLS itself is `consensus::tls` and `api::client_tls`.

use std::path::{Path, PathBuf};

use super::{ConfigError, Url, Values, err};

/// The TLS settings of one side (client or peer), as the flags give them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub auto_tls: bool,
    /// Years a self-signed certificate is valid (`--self-signed-cert-validity`).
    pub self_signed_years: u32,
    /// `--client-crl-file` / `--peer-crl-file`: client certificates it revokes are refused by the listener.
    pub crl_file: Option<PathBuf>,
    /// `--peer-cert-allowed-cn`: the Common Name the other member's certificate must have.
    pub allowed_cn: Option<String>,
    /// `--peer-cert-allowed-hostname` / `--client-cert-allowed-hostname`: a name the certificate must be valid for.
    pub allowed_hostname: Option<String>,
    /// `--cipher-suites` (Go's names; both sides).
    pub cipher_suites: Vec<String>,
    /// `--tls-min-version` / `--tls-max-version` (`TLS1.2`, `TLS1.3`; both sides).
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// `--client-cert-file`/`--client-key-file` (`--peer-client-*`): what the member presents when it dials, if not
    /// its server certificate.
    pub dial_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// What this side presents when it dials: `--[peer-]client-cert-file`/`-key-file` if given, else its own
    /// certificate `cert`/`key` (as etcd does).
    pub fn dial_pair<'a>(&'a self, cert: &'a Path, key: &'a Path) -> (&'a Path, &'a Path) {
        self.dial_cert.as_ref().map_or((cert, key), |(c, k)| (c.as_path(), k.as_path()))
    }

    /// Whether TLS is on at all.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.auto_tls
    }
}

impl Values {
    /// One side's TLS flags, `prefix` being `peer-` for the peer side and empty for the client side.
    fn tls_files(&self, prefix: &str) -> Result<TlsFiles, ConfigError> {
        let path =
            |flag: &str| Some(self.text(&format!("{prefix}{flag}"))).filter(|p| !p.is_empty()).map(PathBuf::from);
        let side = if prefix.is_empty() { "client-" } else { prefix };
        let text = |flag: &str| Some(self.text(flag)).filter(|t| !t.is_empty()).map(String::from);
        let files = TlsFiles {
            crl_file: text(&format!("{side}crl-file")).map(PathBuf::from),
            allowed_cn: if prefix.is_empty() { None } else { text("peer-cert-allowed-cn") },
            allowed_hostname: text(&format!("{side}cert-allowed-hostname")),
            cipher_suites: self
                .text("cipher-suites")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            min_version: text("tls-min-version"),
            max_version: text("tls-max-version"),
            dial_cert: path("client-cert-file").zip(path("client-key-file")),
            cert_file: path("cert-file"),
            key_file: path("key-file"),
            trusted_ca_file: path("trusted-ca-file"),
            client_cert_auth: self.bool(&format!("{prefix}client-cert-auth"))?,
            auto_tls: self.bool(&format!("{prefix}auto-tls"))?,
            self_signed_years: u32::try_from(self.uint("self-signed-cert-validity")?).unwrap_or(u32::MAX),
        };
        if path("client-cert-file").is_some() != path("client-key-file").is_some() {
            return err(format!("--{prefix}client-cert-file and --{prefix}client-key-file must be given together"));
        }
        if files.cert_file.is_some() != files.key_file.is_some() {
            return err(format!("--{prefix}cert-file and --{prefix}key-file must be given together"));
        }
        Ok(files)
    }

    /// The peer TLS settings: on when the peer URLs are https, which then needs a certificate or auto TLS (etcd's
    /// rule); files given for http URLs are ignored, as etcd ignores them.
    pub(super) fn peer_tls(&self, listen: &[Url], advertise: &[Url]) -> Result<TlsFiles, ConfigError> {
        let files = self.tls_files("peer-")?;
        let https = listen.iter().chain(advertise).filter(|u| u.tls).count();
        if https == 0 {
            return Ok(TlsFiles::default());
        }
        if https != listen.len() + advertise.len() {
            return err("peer URLs must be all http or all https");
        }
        if !files.enabled() {
            return err(
                "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for https peer URLs (or --peer-auto-tls)",
            );
        }
        if files.client_cert_auth && files.trusted_ca_file.is_none() {
            return err("--peer-client-cert-auth needs --peer-trusted-ca-file");
        }
        Ok(files)
    }

    /// The client TLS settings: needed (a certificate, or auto TLS) when a client or metrics URL is https.
    pub(super) fn client_tls(&self, listen: &[Url], metrics: &[Url]) -> Result<TlsFiles, ConfigError> {
        let files = self.tls_files("")?;
        if files.client_cert_auth && files.trusted_ca_file.is_none() && files.cert_file.is_some() {
            return err("--client-cert-auth needs --trusted-ca-file");
        }
        let https = listen.iter().chain(metrics).any(|u| u.tls);
        if https && !files.enabled() {
            return err(
                "TLS key/cert (--cert-file, --key-file) must be provided for https client URLs (or --auto-tls)",
            );
        }
        Ok(if https { files } else { TlsFiles::default() })
    }
}
