//! The configuration: etcd's flags (every one of them is known, see `flags`), read from the command line, the
//! `ETCD_*` variables or etcd's YAML config file (`parse`, `file`), then checked and turned into [`Config`] here.
//!
//! Differences from etcd, both deliberate: the default data directory is `<name>.ferrokv` (not `<name>.etcd`, so
//! the two never share one), and the default client and peer URLs are on 127.0.0.1 rather than `localhost`.
//!
//! **Invariants** (established by [`Config::validate`], before anything touches the disk):
//! 1. Every URL parses as `http://host:port` (https is not implemented: refused, not ignored).
//! 2. The election timeout is at least five heartbeats and at most 50 s (etcd's rules).
//! 3. `--initial-cluster` names this member, with exactly its `--initial-advertise-peer-urls`, and names no member
//!    twice; member names and URLs are unique.
//! 4. Sizes and counts are positive; `--initial-cluster-state` is `new` or `existing`; `--log-level` is one of
//!    etcd's levels.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

pub mod file;
pub mod flags;
pub mod parse;
pub mod tls;

pub use parse::{Note, Parsed, Values};
pub use tls::TlsFiles;

/// A configuration error: one line naming the flag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// A client or peer URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Url {
    /// As given (normalised without a trailing slash).
    pub text: String,
    pub addr: SocketAddr,
    /// `https://`.
    pub tls: bool,
    /// A `unix://` URL's socket path (etcd's: the URL's host part, `unix://etcd.sock:1` → `etcd.sock:1`); `addr`
    /// is then unused.
    pub unix: Option<PathBuf>,
}

/// etcd's refusal of two ways to bootstrap.
const CONFLICTING_BOOTSTRAP: &str = "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\"";

/// The default quota when `--quota-backend-bytes` is 0 (etcd's).
pub const DEFAULT_QUOTA: i64 = 2 << 30;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<Url>,
    pub advertise_client_urls: Vec<Url>,
    pub listen_peer_urls: Vec<Url>,
    pub initial_advertise_peer_urls: Vec<Url>,
    /// name → peer URLs of every initial member.
    pub initial_cluster: BTreeMap<String, Vec<Url>>,
    pub initial_cluster_existing: bool,
    pub initial_cluster_token: String,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    pub snapshot_count: u64,
    pub quota_backend_bytes: i64,
    pub max_request_bytes: u64,
    pub listen_metrics_urls: Vec<Url>,
    pub log_level: String,
    pub watch_progress_notify_interval: std::time::Duration,
    /// `--metrics=extensive`: also the gRPC handling-time histograms (`grpc_server_handling_seconds`).
    pub metrics_extensive: bool,
    /// `--enable-grpc-gateway`: the JSON gateway on the client URLs.
    pub enable_grpc_gateway: bool,
    /// `--wal-dir`: where the WAL lives, if not `<data-dir>/member/wal`.
    pub wal_dir: Option<PathBuf>,
    /// `--listen-client-http-urls`: URLs that serve HTTP only (/metrics, /health, /version), no gRPC.
    pub listen_client_http_urls: Vec<Url>,
    /// `--backend-batch-interval` and `--backend-batch-limit`: how long and how many commits the store may go
    /// without an fsync (the WAL holds them meanwhile); `None` is ferrokv's default (100 ms, 10,000).
    pub backend_batch_interval: Option<std::time::Duration>,
    pub backend_batch_limit: Option<u64>,
    pub max_txn_ops: usize,
    /// `--bcrypt-cost`: the cost of the bcrypt hashes of user passwords.
    pub bcrypt_cost: u32,
    /// `--auth-token-ttl`: seconds a simple token lasts after its last use.
    pub auth_token_ttl: u64,
    /// `--auth-token`: `simple`, or `jwt,` and its options (checked at start, `apply::jwt`).
    pub auth_token: String,
    pub max_concurrent_streams: u32,
    /// `--grpc-keepalive-interval` and `--grpc-keepalive-timeout` (zero disables).
    pub grpc_keepalive_interval: std::time::Duration,
    pub grpc_keepalive_timeout: std::time::Duration,
    /// `--strict-reconfig-check`: refuse membership changes that could lose quorum.
    pub strict_reconfig_check: bool,
    pub max_learners: usize,
    /// `--log-outputs`: `stderr`, `stdout`, or file paths (`default` is stderr).
    pub log_outputs: Vec<String>,
    /// Peer TLS (`--peer-*` TLS flags), on when the peer URLs are https.
    pub peer_tls: TlsFiles,
    /// Client TLS (`--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`, `--auto-tls`), for the
    /// https client and metrics URLs.
    pub client_tls: TlsFiles,
    /// `--experimental-initial-corrupt-check`: compare hashes with the peers before serving.
    pub initial_corrupt_check: bool,
    /// How the initial members are found when not named by `--initial-cluster` (see `consensus::discovery`).
    pub discovery: Discovery,
    /// `--force-new-cluster`: restart as the only member of the cluster (see `consensus::force`).
    pub force_new_cluster: bool,
    /// `--auto-compaction-mode` with `--auto-compaction-retention` (none: off).
    pub auto_compaction: Option<AutoCompaction>,
    /// `--experimental-corrupt-check-time`: how often the leader compares its hash with the followers' (none: off).
    pub corrupt_check_time: Option<std::time::Duration>,
    /// What reading the configuration has to say (unknown variables, flags without effect), logged at start.
    pub notes: Vec<Note>,
}

/// etcd's bootstrap discovery: the initial members from DNS SRV records or from a discovery service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Discovery {
    /// `--initial-cluster` names them.
    #[default]
    None,
    /// `--discovery-srv DOMAIN` (and `--discovery-srv-name`).
    Srv { domain: String, service_name: String },
    /// `--discovery URL` (etcd's v2 discovery protocol).
    Url(String),
}

/// etcd's automatic compaction (`--auto-compaction-mode`, `--auto-compaction-retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep the revisions of the last period (a bare number is hours).
    Periodic(std::time::Duration),
    /// Keep the last N revisions.
    Revision(i64),
}

/// etcd's parsing of the two flags: a bare non-negative integer is hours (periodic) or a count (revision); else a Go
/// duration. A zero retention turns compaction off.
pub fn auto_compaction(mode: &str, retention: &str) -> Result<Option<AutoCompaction>, ConfigError> {
    let number = retention.trim().parse::<i64>().ok().filter(|n| *n >= 0);
    let parsed = match (mode, number) {
        ("revision", Some(n)) => AutoCompaction::Revision(n),
        ("periodic", Some(h)) => AutoCompaction::Periodic(std::time::Duration::from_secs(h.unsigned_abs() * 3600)),
        ("periodic" | "revision", None) => match parse_go_duration(retention) {
            Some(d) if mode == "periodic" => AutoCompaction::Periodic(d),
            Some(d) => AutoCompaction::Revision(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            None => return err(format!("error parsing CompactionRetention: invalid duration {retention:?}")),
        },
        (other, _) => return err(format!("unknown auto-compaction-mode {other:?}")),
    };
    Ok(match parsed {
        AutoCompaction::Periodic(d) if d.is_zero() => None,
        AutoCompaction::Revision(0) => None,
        c => Some(c),
    })
}

/// Parses a Go `time.Duration` string such as `10m`, `1h30m`, `1.5s` or `250ms`.
pub fn parse_go_duration(text: &str) -> Option<std::time::Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let mut nanos = 0f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        nanos += number * scale;
    }
    Some(std::time::Duration::from_nanos(nanos as u64))
}

/// Parses one `http://host:port` URL (`flag` names where it came from in the error).
pub fn parse_url(flag: &str, text: &str) -> Result<Url, ConfigError> {
    let t = text.trim().trim_end_matches('/');
    if let Some(rest) = t.strip_prefix("unix://") {
        let host = rest.split('/').next().unwrap_or("");
        let path = if host.is_empty() { rest } else { host };
        if path.is_empty() {
            return err(format!("--{flag}: {t}: a unix URL needs a socket path"));
        }
        let addr = SocketAddr::from(([0, 0, 0, 0], 0));
        return Ok(Url { text: t.to_string(), addr, tls: false, unix: Some(PathBuf::from(path)) });
    }
    let (rest, tls) = match (t.strip_prefix("http://"), t.strip_prefix("https://")) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        (None, None) if t.starts_with("unixs://") => {
            return err(format!(
                "--{flag}: {t}: unixs:// (TLS over a unix socket) is not supported; use unix:// or https://"
            ));
        }
        _ => return err(format!("--{flag}: {t}: URL scheme must be http, https or unix")),
    };
    let host_port = rest.split('/').next().unwrap_or(rest);
    let addr = match host_port.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => match host_port.rsplit_once(':') {
            Some(("localhost", port)) => match port.parse::<u16>() {
                Ok(p) => SocketAddr::from(([127, 0, 0, 1], p)),
                Err(_) => return err(format!("--{flag}: {t}: invalid port")),
            },
            Some((host, port)) if !host.is_empty() => {
                let Ok(port) = port.parse::<u16>() else { return err(format!("--{flag}: {t}: invalid port")) };
                resolve(host, port).ok_or_else(|| ConfigError(format!("--{flag}: {t}: cannot resolve host {host}")))?
            }
            _ => return err(format!("--{flag}: {t}: expected http://host:port")),
        },
    };
    Ok(Url { text: t.to_string(), addr, tls, unix: None })
}

/// A host name's address (IPv4 first, as etcd's dialer prefers), resolved once, at start.
pub fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied()
}

fn parse_urls(flag: &str, text: &str) -> Result<Vec<Url>, ConfigError> {
    let urls: Vec<Url> =
        text.split(',').filter(|s| !s.trim().is_empty()).map(|u| parse_url(flag, u)).collect::<Result<_, _>>()?;
    Ok(urls)
}

fn parse_cluster(text: &str) -> Result<BTreeMap<String, Vec<Url>>, ConfigError> {
    let mut cluster: BTreeMap<String, Vec<Url>> = BTreeMap::new();
    for part in text.split(',').filter(|s| !s.trim().is_empty()) {
        let Some((name, url)) = part.split_once('=') else {
            return err(format!("--initial-cluster: {part:?} is not name=url"));
        };
        cluster.entry(name.trim().to_string()).or_default().push(parse_url("initial-cluster", url)?);
    }
    Ok(cluster)
}

/// A configuration from the command line and the environment (`--help` and `--version` are the caller's).
pub fn from_args(args: &[String], env: &[(String, String)]) -> Result<Parsed, ConfigError> {
    parse::parse(args, env)
}

impl Values {
    /// Checks the values and builds the configuration (module invariants); touches nothing on disk.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let name = self.text("name").to_string();
        if name.is_empty() {
            return err("--name must not be empty");
        }
        let urls = |flag: &str, default: &str| {
            let text = if self.is_set(flag) { self.text(flag) } else { default };
            parse_urls(flag, text)
        };
        let listen_client_urls = urls("listen-client-urls", DEFAULT_CLIENT_URL)?;
        let advertise_client_urls = urls("advertise-client-urls", DEFAULT_CLIENT_URL)?;
        let listen_peer_urls = urls("listen-peer-urls", DEFAULT_PEER_URL)?;
        let initial_advertise_peer_urls = urls("initial-advertise-peer-urls", DEFAULT_PEER_URL)?;
        let listen_metrics_urls = urls("listen-metrics-urls", "")?;
        let listen_client_http_urls = urls("listen-client-http-urls", "")?;
        for (flag, urls) in [
            ("listen-client-urls", &listen_client_urls),
            ("advertise-client-urls", &advertise_client_urls),
            ("listen-peer-urls", &listen_peer_urls),
            ("initial-advertise-peer-urls", &initial_advertise_peer_urls),
        ] {
            if urls.is_empty() {
                return err(format!("--{flag} must name at least one URL"));
            }
        }
        let heartbeat = self.uint("heartbeat-interval")?;
        let election = self.uint("election-timeout")?;
        if heartbeat == 0 {
            return err("--heartbeat-interval must be greater than 0");
        }
        if election < 5 * heartbeat {
            return err(format!(
                "--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat}ms]"
            ));
        }
        if election > 50_000 {
            return err(format!(
                "--election-timeout[{election}ms] is too long, and should be set less than 50 seconds"
            ));
        }
        let existing = match self.text("initial-cluster-state") {
            "new" => false,
            "existing" => true,
            other => return err(format!("--initial-cluster-state: {other:?} is neither \"new\" nor \"existing\"")),
        };
        let default_cluster =
            || initial_advertise_peer_urls.iter().map(|u| format!("{name}={}", u.text)).collect::<Vec<_>>().join(",");
        let discovery = match (self.text("discovery"), self.text("discovery-srv")) {
            ("", "") => Discovery::None,
            (url, "") => Discovery::Url(url.to_string()),
            ("", domain) => {
                Discovery::Srv { domain: domain.to_string(), service_name: self.text("discovery-srv-name").to_string() }
            }
            _ => return err(CONFLICTING_BOOTSTRAP),
        };
        if discovery != Discovery::None && self.is_set("initial-cluster") {
            return err(CONFLICTING_BOOTSTRAP);
        }
        let cluster_text =
            if self.is_set("initial-cluster") { self.text("initial-cluster").to_string() } else { default_cluster() };
        let initial_cluster = parse_cluster(&cluster_text)?;
        let Some(mine) = initial_cluster.get(&name) else {
            return err(format!(
                "--initial-cluster: couldn't find local name {name:?} in the initial cluster configuration"
            ));
        };
        let (mut a, mut b) = (mine.clone(), initial_advertise_peer_urls.clone());
        a.sort();
        b.sort();
        if a.iter().map(|u| &u.text).ne(b.iter().map(|u| &u.text)) {
            return err(format!(
                "--initial-cluster has {name}={} but --initial-advertise-peer-urls is {}",
                a.iter().map(|u| u.text.as_str()).collect::<Vec<_>>().join(","),
                b.iter().map(|u| u.text.as_str()).collect::<Vec<_>>().join(",")
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for u in initial_cluster.values().flatten() {
            if !seen.insert(u.text.clone()) {
                return err(format!("--initial-cluster: peer URL {} is given to two members", u.text));
            }
        }
        let snapshot_count = self.uint("snapshot-count")?;
        if snapshot_count == 0 {
            return err("--snapshot-count must be greater than 0");
        }
        let quota = self.uint("quota-backend-bytes")?;
        let quota_backend_bytes = match i64::try_from(quota) {
            Ok(0) => DEFAULT_QUOTA,
            Ok(q) => q,
            Err(_) => return err("--quota-backend-bytes is too large"),
        };
        let max_request_bytes = self.uint("max-request-bytes")?;
        if max_request_bytes == 0 {
            return err("--max-request-bytes must be greater than 0");
        }
        let mut log_level = self.text("log-level").to_string();
        if !["debug", "info", "warn", "error", "panic", "fatal"].contains(&log_level.as_str()) {
            return err(format!("--log-level: {log_level:?} is not one of debug, info, warn, error, panic, fatal"));
        }
        // etcd 3.4's --debug is --log-level=debug.
        if self.bool("debug")? {
            log_level = "debug".into();
        }
        if self.text("log-format") != "json" {
            return err(format!("--log-format={}: ferrokv logs json only", self.text("log-format")));
        }
        let progress = "experimental-watch-progress-notify-interval";
        let watch_progress_notify_interval = match self.duration(progress)? {
            Some(d) if !d.is_zero() => d,
            _ => return err(format!("--{progress} must be >0")),
        };
        let max_txn_ops = usize::try_from(self.uint("max-txn-ops")?).unwrap_or(usize::MAX);
        if max_txn_ops == 0 {
            return err("--max-txn-ops must be greater than 0");
        }
        let max_concurrent_streams = u32::try_from(self.uint("max-concurrent-streams")?).unwrap_or(u32::MAX);
        // As etcd: a cost outside bcrypt's range falls back to the default, with a warning.
        let bcrypt_cost = match self.uint("bcrypt-cost")? {
            c @ 4..=31 => c as u32,
            _ => 10,
        };
        let log_outputs: Vec<String> =
            self.text("log-outputs").split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        let data_dir = if self.is_set("data-dir") {
            PathBuf::from(self.text("data-dir"))
        } else {
            PathBuf::from(format!("{name}.ferrokv"))
        };
        let wal_dir = Some(self.text("wal-dir")).filter(|d| !d.is_empty()).map(PathBuf::from);
        let backend_batch_limit = Some(self.uint("backend-batch-limit")?).filter(|l| *l > 0);
        let peer_tls = self.peer_tls(&listen_peer_urls, &initial_advertise_peer_urls)?;
        let client_tls = self.client_tls(&listen_client_urls, &listen_metrics_urls)?;
        Ok(Config {
            data_dir,
            name,
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_existing: existing,
            initial_cluster_token: self.text("initial-cluster-token").to_string(),
            heartbeat_ms: heartbeat,
            election_ms: election,
            snapshot_count,
            quota_backend_bytes,
            max_request_bytes,
            listen_metrics_urls,
            log_level,
            watch_progress_notify_interval,
            metrics_extensive: self.text("metrics") == "extensive",
            enable_grpc_gateway: self.bool("enable-grpc-gateway")?,
            wal_dir,
            listen_client_http_urls,
            backend_batch_interval: self.duration("backend-batch-interval")?.filter(|d| !d.is_zero()),
            backend_batch_limit,
            max_txn_ops,
            bcrypt_cost,
            auth_token_ttl: self.uint("auth-token-ttl")?,
            auth_token: self.text("auth-token").to_string(),
            max_concurrent_streams,
            grpc_keepalive_interval: self.duration("grpc-keepalive-interval")?.unwrap_or_default(),
            grpc_keepalive_timeout: self.duration("grpc-keepalive-timeout")?.unwrap_or_default(),
            strict_reconfig_check: self.bool("strict-reconfig-check")?,
            max_learners: usize::try_from(self.uint("max-learners")?).unwrap_or(usize::MAX),
            log_outputs,
            initial_corrupt_check: self.bool("experimental-initial-corrupt-check")?,
            force_new_cluster: self.bool("force-new-cluster")?,
            discovery,
            auto_compaction: auto_compaction(
                self.text("auto-compaction-mode"),
                self.text("auto-compaction-retention"),
            )?,
            corrupt_check_time: self.duration("experimental-corrupt-check-time")?.filter(|d| !d.is_zero()),
            peer_tls,
            client_tls,
            notes: self.notes,
        })
    }
}

/// ferrokv's default client and peer URLs (etcd's are on `localhost`; see the module header).
const DEFAULT_CLIENT_URL: &str = "http://127.0.0.1:2379";
const DEFAULT_PEER_URL: &str = "http://127.0.0.1:2380";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_compaction_as_etcd_parses_it() {
        use std::time::Duration;
        assert_eq!(
            auto_compaction("periodic", "1").unwrap(),
            Some(AutoCompaction::Periodic(Duration::from_secs(3600)))
        );
        assert_eq!(
            auto_compaction("periodic", "30m").unwrap(),
            Some(AutoCompaction::Periodic(Duration::from_secs(1800)))
        );
        assert_eq!(auto_compaction("revision", "1000").unwrap(), Some(AutoCompaction::Revision(1000)));
        assert_eq!(auto_compaction("periodic", "0").unwrap(), None);
        assert!(
            auto_compaction("periodic", "soon").unwrap_err().to_string().contains("error parsing CompactionRetention")
        );
        assert!(auto_compaction("hourly", "1").unwrap_err().to_string().contains("unknown auto-compaction-mode"));
    }

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        match from_args(&args, &[])? {
            Parsed::Run(values) => values.validate(),
            other => Err(ConfigError(format!("{other:?}"))),
        }
    }

    #[test]
    fn no_flags_is_one_member_on_127_0_0_1() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.ferrokv"));
        assert_eq!(c.listen_client_urls[0].addr, "127.0.0.1:2379".parse().unwrap());
        assert_eq!(c.listen_peer_urls[0].addr, "127.0.0.1:2380".parse().unwrap());
        assert_eq!(c.initial_cluster.len(), 1);
        assert_eq!(c.initial_cluster["default"][0].text, "http://127.0.0.1:2380");
        assert_eq!((c.heartbeat_ms, c.election_ms, c.snapshot_count), (100, 1000, 100_000));
        assert_eq!((c.quota_backend_bytes, c.max_request_bytes), (2 << 30, 1_572_864));
        assert!(!c.initial_cluster_existing);
    }

    #[test]
    fn a_three_member_cluster() {
        let c = parse(&[
            "--name",
            "n2",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:12380",
            "--listen-peer-urls",
            "http://127.0.0.1:12380",
            "--initial-cluster",
            "n1=http://127.0.0.1:2380,n2=http://127.0.0.1:12380,n3=http://127.0.0.1:22380",
            "--data-dir",
            "/tmp/n2",
        ])
        .unwrap();
        assert_eq!(c.initial_cluster.keys().cloned().collect::<Vec<_>>(), vec!["n1", "n2", "n3"]);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/n2"));
    }

    #[test]
    fn go_durations() {
        use std::time::Duration;
        assert_eq!(parse_go_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "10", "5x", "ms", "1..2s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
        let c = parse(&[]).unwrap();
        assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(600));
    }

    #[test]
    fn contradictions_and_nonsense_are_one_line_errors() {
        let cases: &[(&[&str], &str)] = &[
            (&["--election-timeout", "400"], "at least as 5 times"),
            (&["--election-timeout", "60000"], "less than 50 seconds"),
            (&["--heartbeat-interval", "0"], "--heartbeat-interval"),
            (&["--initial-cluster", "other=http://127.0.0.1:2380"], "couldn't find local name \"default\""),
            (&["--initial-cluster", "default=http://127.0.0.1:9999"], "--initial-advertise-peer-urls is"),
            (&["--initial-cluster", "default=http://127.0.0.1:2380,b=http://127.0.0.1:2380"], "two members"),
            (&["--initial-cluster-state", "old"], "--initial-cluster-state"),
            (&["--listen-client-urls", "https://127.0.0.1:2379"], "--cert-file, --key-file"),
            (&["--listen-client-urls", "tcp://x"], "scheme must be http"),
            (&["--listen-peer-urls", "https://127.0.0.1:2380"], "must be all http or all https"),
            (&["--listen-client-urls", "http://no-such-host.invalid:2379"], "cannot resolve host"),
            (&["--log-level", "chatty"], "--log-level"),
            (&["--snapshot-count", "0"], "--snapshot-count"),
            (&["--no-such-flag"], "--no-such-flag"),
            (&["--experimental-watch-progress-notify-interval", "0"], "must be >0"),
            (&["--experimental-watch-progress-notify-interval", "10 minutes"], "invalid value"),
        ];
        for (args, needle) in cases {
            let e = parse(args).unwrap_err().0;
            assert!(e.contains(needle), "{args:?}: {e:?} should mention {needle:?}");
        }
    }

    #[test]
    fn localhost_is_127_0_0_1() {
        let c = parse(&["--listen-client-urls", "http://localhost:3379,http://127.0.0.1:4379/"]).unwrap();
        let addrs: Vec<SocketAddr> = c.listen_client_urls.iter().map(|u| u.addr).collect();
        assert_eq!(addrs, vec!["127.0.0.1:3379".parse().unwrap(), "127.0.0.1:4379".parse().unwrap()]);
        assert_eq!(c.listen_client_urls[1].text, "http://127.0.0.1:4379");
    }

    fn values(args: &[&str], env: &[(&str, &str)]) -> Result<Values, ConfigError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match from_args(&args, &env)? {
            Parsed::Run(v) => Ok(v),
            other => Err(ConfigError(format!("{other:?}"))),
        }
    }

    fn noted(v: &Values, needle: &str) -> bool {
        v.notes.iter().any(|(_, msg, fields)| msg.contains(needle) || fields.iter().any(|(_, f)| f.contains(needle)))
    }

    /// Go's flag syntax as etcd parses it: a single dash, `=value`, bools without a value, the last of a repeated
    /// flag.
    #[test]
    fn go_flag_syntax() {
        let v = values(
            &[
                "-name",
                "a",
                "--strict-reconfig-check=false",
                "--pre-vote",
                "--snapshot-count",
                "5",
                "--snapshot-count=7",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(v.text("name"), "a");
        assert!(!v.bool("strict-reconfig-check").unwrap());
        assert!(v.bool("pre-vote").unwrap());
        assert_eq!(v.uint("snapshot-count").unwrap(), 7);
        let c = v.validate().unwrap();
        assert!(!c.strict_reconfig_check);
        assert!(values(&["--strict-reconfig-check", "false"], &[]).is_err(), "a bool takes no separate value");
        assert!(values(&["--snapshot-count=many"], &[]).unwrap_err().0.contains("--snapshot-count"));
    }

    /// ETCD_* variables act like flags; one shadowed by a flag, and an unknown one, are only logged.
    #[test]
    fn environment_variables() {
        let env = [
            ("ETCD_NAME", "b"),
            ("ETCD_SNAPSHOT_COUNT", "9"),
            ("ETCD_NO_SUCH_THING", "1"),
            ("ETCD_UNSUPPORTED_ARCH", "amd64"),
        ];
        let v = values(&["--snapshot-count", "3", "--initial-cluster", "b=http://127.0.0.1:2380"], &env).unwrap();
        assert_eq!(v.text("name"), "b");
        assert_eq!(v.uint("snapshot-count").unwrap(), 3, "the flag wins");
        assert!(noted(&v, "ETCD_SNAPSHOT_COUNT") && noted(&v, "shadowed"));
        assert!(noted(&v, "ETCD_NO_SUCH_THING") && noted(&v, "unrecognized environment variable"));
        assert!(!noted(&v, "ETCD_UNSUPPORTED_ARCH"), "etcd reads it itself");
        assert_eq!(v.validate().unwrap().name, "b");
    }

    /// 3.6 spellings and feature gates land on the 3.4 flags; a contradiction is an error.
    #[test]
    fn aliases_and_feature_gates() {
        let v = values(&["--watch-progress-notify-interval=5s"], &[]).unwrap();
        assert_eq!(v.validate().unwrap().watch_progress_notify_interval, std::time::Duration::from_secs(5));
        let e =
            values(&["--experimental-watch-progress-notify-interval=5s", "--watch-progress-notify-interval=6s"], &[]);
        assert!(e.unwrap_err().0.contains("contradicts"));
        let v = values(&["--feature-gates=TxnModeWriteWithSharedBuffer=false,SetMemberLocalAddr=true"], &[]).unwrap();
        assert!(!v.bool("experimental-txn-mode-write-with-shared-buffer").unwrap());
        assert!(noted(&v, "--experimental-txn-mode-write-with-shared-buffer"), "set by the gate, without effect");
        let e = values(&["--feature-gates=NoSuchGate=true"], &[]).unwrap_err().0;
        assert!(e.contains("unrecognized feature gate: NoSuchGate"), "{e}");
        let e = values(
            &[
                "--feature-gates=TxnModeWriteWithSharedBuffer=true",
                "--experimental-txn-mode-write-with-shared-buffer=false",
            ],
            &[],
        );
        assert!(e.unwrap_err().0.contains("contradicts"));
    }

    /// A feature ferrokv does not serve is refused unless at etcd's default; a flag without effect is noted.
    #[test]
    fn refused_and_no_effect_flags() {
        let e = values(&["--enable-v2=true"], &[]).unwrap_err().0;
        assert!(e.contains("--enable-v2") && e.contains("v2"), "{e}");
        assert!(values(&["--enable-v2=false", "--proxy=off"], &[]).is_ok(), "etcd's defaults are accepted");
        let e = values(&["--unsafe-no-fsync"], &[]).unwrap_err().0;
        assert!(e.contains("fsync"), "{e}");
        let v = values(&["--max-wals=10", "--enable-pprof"], &[]).unwrap();
        assert!(noted(&v, "--max-wals") && noted(&v, "--enable-pprof"));
        assert!(!noted(&values(&[], &[]).unwrap(), "no effect"), "nothing set, nothing noted");
    }

    /// The flags ferrokv implements reach the configuration.
    #[test]
    fn implemented_flags_reach_the_configuration() {
        let c = values(
            &[
                "--wal-dir=/w",
                "--max-txn-ops=3",
                "--max-learners=2",
                "--debug",
                "--backend-batch-interval=10ms",
                "--backend-batch-limit=50",
                "--grpc-keepalive-interval=0",
                "--max-concurrent-streams=8",
                "--log-outputs=stdout,/tmp/x.log",
                "--listen-client-http-urls=http://127.0.0.1:9999",
            ],
            &[],
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(c.wal_dir, Some(PathBuf::from("/w")));
        assert_eq!((c.max_txn_ops, c.max_learners, c.max_concurrent_streams), (3, 2, 8));
        assert_eq!(c.log_level, "debug");
        assert_eq!(
            (c.backend_batch_interval, c.backend_batch_limit),
            (Some(std::time::Duration::from_millis(10)), Some(50))
        );
        assert!(c.grpc_keepalive_interval.is_zero());
        assert_eq!(c.log_outputs, ["stdout", "/tmp/x.log"]);
        assert_eq!(c.listen_client_http_urls[0].addr.port(), 9999);
    }
}
