//! The command line: etcd's flag names, meanings and defaults for everything ferrokv implements, each also read from
//! its `ETCD_*` environment variable (flag name upper-cased, dashes to underscores), as etcd does.
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

use clap::Parser;

/// A configuration error: one line naming the flag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// ferrokv's flags (etcd's names).
#[derive(Debug, Clone, Parser)]
#[command(name = "ferrokv", about = "An etcd-compatible key-value store", disable_version_flag = true)]
pub struct Flags {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory [default: <name>.ferrokv].
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic (comma-separated).
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS", default_value = "http://127.0.0.1:2379")]
    pub listen_client_urls: String,
    /// Client URLs of this member advertised to the cluster.
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS", default_value = "http://127.0.0.1:2379")]
    pub advertise_client_urls: String,
    /// URLs to listen on for peer traffic.
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS", default_value = "http://127.0.0.1:2380")]
    pub listen_peer_urls: String,
    /// Peer URLs of this member advertised to the cluster.
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS", default_value = "http://127.0.0.1:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping, `name=url,...` [default: <name>=<advertise peer URLs>].
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state: `new` or `existing`.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token for the cluster during bootstrap.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: i64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: u64,
    /// Additional URLs to listen on for /metrics and /health (comma-separated).
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS", default_value = "")]
    pub listen_metrics_urls: String,
    /// Log level: debug, info, warn, error, panic or fatal.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// How often watchers that asked for progress notifications get one (a Go duration: 10m, 30s, 500ms).
    #[arg(long, env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m")]
    pub experimental_watch_progress_notify_interval: String,
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
}

/// A client or peer URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Url {
    /// As given (normalised without a trailing slash).
    pub text: String,
    pub addr: SocketAddr,
}

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
    let Some(rest) = t.strip_prefix("http://") else {
        if t.starts_with("https://") || t.starts_with("unixs://") {
            return err(format!("--{flag}: {t}: TLS is not implemented yet; use http://"));
        }
        return err(format!("--{flag}: {t}: URL scheme must be http"));
    };
    let host_port = rest.split('/').next().unwrap_or(rest);
    let addr = match host_port.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => match host_port.rsplit_once(':') {
            Some(("localhost", port)) => match port.parse::<u16>() {
                Ok(p) => SocketAddr::from(([127, 0, 0, 1], p)),
                Err(_) => return err(format!("--{flag}: {t}: invalid port")),
            },
            _ => return err(format!("--{flag}: {t}: expected http://IP:port")),
        },
    };
    Ok(Url { text: t.to_string(), addr })
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

impl Flags {
    /// Checks the flags and builds the configuration (module invariants); touches nothing on disk.
    pub fn validate(self) -> Result<Config, ConfigError> {
        if self.name.is_empty() {
            return err("--name must not be empty");
        }
        let listen_client_urls = parse_urls("listen-client-urls", &self.listen_client_urls)?;
        let advertise_client_urls = parse_urls("advertise-client-urls", &self.advertise_client_urls)?;
        let listen_peer_urls = parse_urls("listen-peer-urls", &self.listen_peer_urls)?;
        let initial_advertise_peer_urls = parse_urls("initial-advertise-peer-urls", &self.initial_advertise_peer_urls)?;
        let listen_metrics_urls = parse_urls("listen-metrics-urls", &self.listen_metrics_urls)?;
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
        if self.heartbeat_interval == 0 {
            return err("--heartbeat-interval must be greater than 0");
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return err(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout, self.heartbeat_interval
            ));
        }
        if self.election_timeout > 50_000 {
            return err(format!(
                "--election-timeout[{}ms] is too long, and should be set less than 50 seconds",
                self.election_timeout
            ));
        }
        let existing = match self.initial_cluster_state.as_str() {
            "new" => false,
            "existing" => true,
            other => return err(format!("--initial-cluster-state: {other:?} is neither \"new\" nor \"existing\"")),
        };
        let default_cluster = || {
            initial_advertise_peer_urls
                .iter()
                .map(|u| format!("{}={}", self.name, u.text))
                .collect::<Vec<_>>()
                .join(",")
        };
        let cluster_text = self.initial_cluster.clone().unwrap_or_else(default_cluster);
        let initial_cluster = parse_cluster(&cluster_text)?;
        let Some(mine) = initial_cluster.get(&self.name) else {
            return err(format!(
                "--initial-cluster: couldn't find local name {:?} in the initial cluster configuration",
                self.name
            ));
        };
        let (mut a, mut b) = (mine.clone(), initial_advertise_peer_urls.clone());
        a.sort();
        b.sort();
        if a.iter().map(|u| &u.text).ne(b.iter().map(|u| &u.text)) {
            return err(format!(
                "--initial-cluster has {}={} but --initial-advertise-peer-urls is {}",
                self.name,
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
        if self.snapshot_count == 0 {
            return err("--snapshot-count must be greater than 0");
        }
        if self.quota_backend_bytes < 0 {
            return err("--quota-backend-bytes must not be negative");
        }
        if self.max_request_bytes == 0 {
            return err("--max-request-bytes must be greater than 0");
        }
        if !["debug", "info", "warn", "error", "panic", "fatal"].contains(&self.log_level.as_str()) {
            return err(format!(
                "--log-level: {:?} is not one of debug, info, warn, error, panic, fatal",
                self.log_level
            ));
        }
        let progress = self.experimental_watch_progress_notify_interval.as_str();
        let watch_progress_notify_interval = match parse_go_duration(progress) {
            None => {
                return err(format!("invalid value {progress:?} for --experimental-watch-progress-notify-interval"));
            }
            Some(d) if d.is_zero() => return err("--experimental-watch-progress-notify-interval must be >0"),
            Some(d) => d,
        };
        Ok(Config {
            data_dir: self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.ferrokv", self.name))),
            name: self.name,
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_existing: existing,
            initial_cluster_token: self.initial_cluster_token,
            heartbeat_ms: self.heartbeat_interval,
            election_ms: self.election_timeout,
            snapshot_count: self.snapshot_count,
            quota_backend_bytes: if self.quota_backend_bytes == 0 { DEFAULT_QUOTA } else { self.quota_backend_bytes },
            max_request_bytes: self.max_request_bytes,
            listen_metrics_urls,
            log_level: self.log_level,
            watch_progress_notify_interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let flags = Flags::try_parse_from(std::iter::once("ferrokv").chain(args.iter().copied()))
            .map_err(|e| ConfigError(e.to_string()))?;
        flags.validate()
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
            (&["--listen-client-urls", "https://127.0.0.1:2379"], "TLS is not implemented"),
            (&["--listen-client-urls", "tcp://x"], "scheme must be http"),
            (&["--listen-client-urls", "http://example.com:2379"], "expected http://IP:port"),
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
}
