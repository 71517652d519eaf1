//! Every flag etcd 3.4 accepts, and the 3.5/3.6 spellings, with what ferrokv does with each. The table is the one
//! place that decides whether a flag is known: the command line, the `ETCD_*` variables and the config file are all
//! read through it (`config::parse`), and a test holds it against `etcd --help` (3.4) and the lists of 3.5 and 3.6.
//!
//! **What a flag does** ([`Effect`]):
//! - `Used`: implemented with etcd's meaning.
//! - `NoEffect`: tunes an etcd internal ferrokv does not have (bbolt's freelist, rafthttp's timeouts, Go's
//!   profiler): accepted, and logged once at start when set.
//! - `Refused`: a feature ferrokv does not serve (the v2 API, the v2 proxy) or does not serve yet: etcd's default
//!   is accepted, any other value stops the start with a one-line error naming the flag. Never silently ignored.
//! - `Alias`: another spelling of a flag (3.6 drops `experimental-`); giving both with different values is an error.
//!
//! **Syntax** (Go's `flag` package, as etcd parses): `--name value`, `--name=value`, and a single dash too; a bool is
//! `--name` or `--name=true|false` (never a separate word). A flag given twice takes the last value.

/// How a flag's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// Free text (paths, names, URL lists, enumerations checked where they are used).
    Text,
    /// A non-negative integer.
    Uint,
    /// A Go duration (`100ms`, `1h30m`).
    Duration,
}

/// What ferrokv does with a flag (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Used,
    /// Accepted, logged once when set; the text says why it changes nothing.
    NoEffect(&'static str),
    /// Only etcd's default is accepted; the text says what ferrokv does not serve.
    Refused(&'static str),
    /// Another spelling of the named flag.
    Alias(&'static str),
}

/// One flag.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub kind: Kind,
    /// etcd's default, as text ("" for none).
    pub default: &'static str,
    pub effect: Effect,
}

const fn spec(name: &'static str, kind: Kind, default: &'static str, effect: Effect) -> Spec {
    Spec { name, kind, default, effect }
}

use Effect::{Alias, NoEffect, Refused, Used};
use Kind::{Bool, Duration, Text, Uint};

const NO_V2: &str = "ferrokv serves only etcd's v3 API (no v2 API, no v2 proxy)";
const NO_TRACING: &str = "ferrokv does not export OpenTelemetry traces";
const NO_BBOLT: &str = "ferrokv's store is not bbolt";
const NO_RAFTHTTP: &str = "ferrokv's peer transport is not rafthttp";

/// The table, in `etcd --help`'s order, then the 3.5/3.6 additions.
pub const FLAGS: &[Spec] = &[
    // Member.
    spec("name", Text, "default", Used),
    spec("data-dir", Text, "", Used),
    spec("wal-dir", Text, "", Used),
    spec("snapshot-count", Uint, "100000", Used),
    spec("heartbeat-interval", Uint, "100", Used),
    spec("election-timeout", Uint, "1000", Used),
    spec(
        "initial-election-tick-advance",
        Bool,
        "true",
        NoEffect("a single member elects itself at once; others wait one election timeout"),
    ),
    spec("listen-peer-urls", Text, "http://localhost:2380", Used),
    spec("listen-client-urls", Text, "http://localhost:2379", Used),
    spec("listen-client-http-urls", Text, "", Used),
    spec("max-snapshots", Uint, "5", NoEffect("ferrokv keeps no snapshot files: the store is the snapshot")),
    spec("max-wals", Uint, "5", NoEffect("ferrokv releases WAL segments as soon as the log is compacted past them")),
    spec("quota-backend-bytes", Uint, "0", Used),
    spec("backend-bbolt-freelist-type", Text, "map", NoEffect(NO_BBOLT)),
    spec("backend-batch-interval", Duration, "", Used),
    spec("backend-batch-limit", Uint, "0", Used),
    spec("max-txn-ops", Uint, "128", Used),
    spec("max-request-bytes", Uint, "1572864", Used),
    spec("max-concurrent-streams", Uint, "4294967295", Used),
    spec(
        "grpc-keepalive-min-time",
        Duration,
        "5s",
        NoEffect("the HTTP/2 server does not police client ping intervals"),
    ),
    spec("grpc-keepalive-interval", Duration, "2h", Used),
    spec("grpc-keepalive-timeout", Duration, "20s", Used),
    spec("socket-reuse-port", Bool, "false", NoEffect("listeners are opened once, at start")),
    spec("socket-reuse-address", Bool, "false", NoEffect("listeners are opened once, at start")),
    spec("raft-read-timeout", Duration, "5s", NoEffect(NO_RAFTHTTP)),
    spec("raft-write-timeout", Duration, "5s", NoEffect(NO_RAFTHTTP)),
    spec("memory-mlock", Bool, "false", NoEffect("ferrokv does not lock its pages in RAM")),
    spec("experimental-memory-mlock", Bool, "false", Alias("memory-mlock")),
    // Clustering.
    spec("initial-advertise-peer-urls", Text, "http://localhost:2380", Used),
    spec("initial-cluster", Text, "", Used),
    spec("initial-cluster-state", Text, "new", Used),
    spec("initial-cluster-token", Text, "etcd-cluster", Used),
    spec("advertise-client-urls", Text, "http://localhost:2379", Used),
    spec("discovery", Text, "", Used),
    spec("discovery-fallback", Text, "proxy", NoEffect("ferrokv has no proxy mode: a full cluster stops the start")),
    spec("discovery-proxy", Text, "", NoEffect("only with --discovery")),
    spec("discovery-srv", Text, "", Used),
    spec("discovery-srv-name", Text, "", Used),
    spec("discovery-token", Text, "", Refused("v3 discovery is not implemented yet; use --initial-cluster")),
    spec("discovery-endpoints", Text, "", Refused("v3 discovery is not implemented yet; use --initial-cluster")),
    spec("discovery-dial-timeout", Duration, "2s", NoEffect("only with --discovery-endpoints")),
    spec("discovery-request-timeout", Duration, "5s", NoEffect("only with --discovery-endpoints")),
    spec("discovery-keepalive-time", Duration, "2s", NoEffect("only with --discovery-endpoints")),
    spec("discovery-keepalive-timeout", Duration, "6s", NoEffect("only with --discovery-endpoints")),
    spec("discovery-insecure-transport", Bool, "true", NoEffect("only with --discovery-endpoints")),
    spec("discovery-insecure-skip-tls-verify", Bool, "false", NoEffect("only with --discovery-endpoints")),
    spec("discovery-cert", Text, "", NoEffect("only with --discovery-endpoints")),
    spec("discovery-key", Text, "", NoEffect("only with --discovery-endpoints")),
    spec("discovery-cacert", Text, "", NoEffect("only with --discovery-endpoints")),
    spec("discovery-user", Text, "", NoEffect("only with --discovery-endpoints")),
    spec("discovery-password", Text, "", NoEffect("only with --discovery-endpoints")),
    spec("strict-reconfig-check", Bool, "true", Used),
    spec("pre-vote", Bool, "true", NoEffect("ferrokv always runs Raft's pre-vote")),
    spec("auto-compaction-retention", Text, "0", Used),
    spec("auto-compaction-mode", Text, "periodic", Used),
    spec("enable-v2", Bool, "false", Refused(NO_V2)),
    spec("v2-deprecation", Text, "not-yet", NoEffect(NO_V2)),
    spec("max-learners", Uint, "1", Used),
    // Security.
    spec("cert-file", Text, "", Used),
    spec("key-file", Text, "", Used),
    spec("client-cert-file", Text, "", Used),
    spec("client-key-file", Text, "", Used),
    spec("client-cert-auth", Bool, "false", Used),
    spec("client-crl-file", Text, "", Used),
    spec("client-cert-allowed-hostname", Text, "", Used),
    spec("trusted-ca-file", Text, "", Used),
    spec("auto-tls", Bool, "false", Used),
    spec("peer-cert-file", Text, "", Used),
    spec("peer-key-file", Text, "", Used),
    spec("peer-client-cert-file", Text, "", Used),
    spec("peer-client-key-file", Text, "", Used),
    spec("peer-client-cert-auth", Bool, "false", Used),
    spec("peer-trusted-ca-file", Text, "", Used),
    spec("peer-cert-allowed-cn", Text, "", Used),
    spec("peer-cert-allowed-hostname", Text, "", Used),
    spec("peer-auto-tls", Bool, "false", Used),
    spec("peer-crl-file", Text, "", Used),
    spec("self-signed-cert-validity", Uint, "1", Used),
    spec("cipher-suites", Text, "", Used),
    spec("tls-min-version", Text, "TLS1.2", Used),
    spec("tls-max-version", Text, "", Used),
    spec(
        "experimental-peer-skip-client-san-verification",
        Bool,
        "false",
        NoEffect("ferrokv does not check a member's client certificate against its address"),
    ),
    spec("peer-skip-client-san-verification", Bool, "false", Alias("experimental-peer-skip-client-san-verification")),
    spec("cors", Text, "*", NoEffect("the JSON gateway allows every origin, as etcd's default `*`")),
    spec("host-whitelist", Text, "*", NoEffect("no browser-facing HTTP API is served yet")),
    // Auth.
    spec("auth-token", Text, "simple", Used),
    spec("bcrypt-cost", Uint, "10", Used),
    spec("auth-token-ttl", Uint, "300", Used),
    // Profiling and monitoring.
    spec("enable-pprof", Bool, "false", NoEffect("there is no Go runtime to profile; use perf")),
    spec("metrics", Text, "basic", Used),
    spec("listen-metrics-urls", Text, "", Used),
    spec("enable-grpc-gateway", Bool, "true", Used),
    // Logging.
    spec("logger", Text, "capnslog", NoEffect("ferrokv always logs zap's JSON lines")),
    spec("log-outputs", Text, "default", Used),
    spec("log-level", Text, "info", Used),
    spec("log-format", Text, "json", Used),
    spec("enable-log-rotation", Bool, "false", Refused("log rotation is not implemented; use logrotate")),
    spec("log-rotation-config-json", Text, "", NoEffect("only with --enable-log-rotation")),
    spec("debug", Bool, "false", Used),
    spec("log-package-levels", Text, "", NoEffect("ferrokv has one log level")),
    spec("warning-unary-request-duration", Duration, "300ms", NoEffect("no slow-request warning is logged yet")),
    spec("experimental-warning-unary-request-duration", Duration, "300ms", Alias("warning-unary-request-duration")),
    // v2 proxy.
    spec("proxy", Text, "off", Refused(NO_V2)),
    spec("proxy-failure-wait", Uint, "5000", NoEffect(NO_V2)),
    spec("proxy-refresh-interval", Uint, "30000", NoEffect(NO_V2)),
    spec("proxy-dial-timeout", Uint, "1000", NoEffect(NO_V2)),
    spec("proxy-write-timeout", Uint, "5000", NoEffect(NO_V2)),
    spec("proxy-read-timeout", Uint, "0", NoEffect(NO_V2)),
    // Experimental (3.4), and the 3.5/3.6 spellings.
    spec("experimental-initial-corrupt-check", Bool, "false", Used),
    spec("experimental-corrupt-check-time", Duration, "0s", Used),
    spec("corrupt-check-time", Duration, "0s", Alias("experimental-corrupt-check-time")),
    spec(
        "experimental-compact-hash-check-enabled",
        Bool,
        "false",
        Refused("3.5's compaction hash check is not implemented yet; --experimental-corrupt-check-time is"),
    ),
    spec("experimental-compact-hash-check-time", Duration, "1m", NoEffect("only with the compact hash check")),
    spec("compact-hash-check-time", Duration, "1m", Alias("experimental-compact-hash-check-time")),
    spec("experimental-enable-v2v3", Text, "", Refused(NO_V2)),
    spec("experimental-backend-bbolt-freelist-type", Text, "array", Alias("backend-bbolt-freelist-type")),
    spec("experimental-enable-lease-checkpoint", Bool, "false", Refused("lease checkpoints are not implemented yet")),
    spec(
        "experimental-enable-lease-checkpoint-persist",
        Bool,
        "false",
        Refused("lease checkpoints are not implemented yet"),
    ),
    spec("experimental-compaction-batch-limit", Uint, "1000", NoEffect("a compaction is one B+tree commit")),
    spec("compaction-batch-limit", Uint, "1000", Alias("experimental-compaction-batch-limit")),
    spec("experimental-compaction-sleep-interval", Duration, "10ms", NoEffect("a compaction is one B+tree commit")),
    spec("compaction-sleep-interval", Duration, "10ms", Alias("experimental-compaction-sleep-interval")),
    spec("experimental-watch-progress-notify-interval", Duration, "10m", Used),
    spec("watch-progress-notify-interval", Duration, "10m", Alias("experimental-watch-progress-notify-interval")),
    spec("experimental-warning-apply-duration", Duration, "100ms", NoEffect("no slow-apply warning is logged yet")),
    spec("warning-apply-duration", Duration, "100ms", Alias("experimental-warning-apply-duration")),
    spec("experimental-txn-mode-write-with-shared-buffer", Bool, "true", NoEffect(NO_BBOLT)),
    spec("experimental-bootstrap-defrag-threshold-megabytes", Uint, "0", NoEffect("ferrokv defragments online")),
    spec("bootstrap-defrag-threshold-megabytes", Uint, "0", Alias("experimental-bootstrap-defrag-threshold-megabytes")),
    spec("experimental-downgrade-check-time", Duration, "5s", NoEffect("downgrades are not supported")),
    spec("downgrade-check-time", Duration, "5s", Alias("experimental-downgrade-check-time")),
    spec("experimental-snapshot-catchup-entries", Uint, "5000", NoEffect("the log is kept back to the applied index")),
    spec("snapshot-catchup-entries", Uint, "5000", Alias("experimental-snapshot-catchup-entries")),
    spec("experimental-stop-grpc-service-on-defrag", Bool, "false", NoEffect("ferrokv serves during defragmentation")),
    spec("experimental-enable-distributed-tracing", Bool, "false", Refused(NO_TRACING)),
    spec("enable-distributed-tracing", Bool, "false", Alias("experimental-enable-distributed-tracing")),
    spec("experimental-distributed-tracing-address", Text, "localhost:4317", NoEffect(NO_TRACING)),
    spec("distributed-tracing-address", Text, "localhost:4317", Alias("experimental-distributed-tracing-address")),
    spec("experimental-distributed-tracing-service-name", Text, "etcd", NoEffect(NO_TRACING)),
    spec("distributed-tracing-service-name", Text, "etcd", Alias("experimental-distributed-tracing-service-name")),
    spec("experimental-distributed-tracing-instance-id", Text, "", NoEffect(NO_TRACING)),
    spec("distributed-tracing-instance-id", Text, "", Alias("experimental-distributed-tracing-instance-id")),
    spec("experimental-distributed-tracing-sampling-rate", Uint, "0", NoEffect(NO_TRACING)),
    spec("distributed-tracing-sampling-rate", Uint, "0", Alias("experimental-distributed-tracing-sampling-rate")),
    spec("unsafe-no-fsync", Bool, "false", Refused("every acknowledged write is fsynced; ferrokv has no unsafe mode")),
    spec("force-new-cluster", Bool, "false", Used),
    spec("feature-gates", Text, "", Used),
    // The command itself.
    spec("config-file", Text, "", Used),
    spec("version", Bool, "false", Used),
];

/// 3.6's feature gates and the 3.4 flag each stands for (`--feature-gates=InitialCorruptCheck=true,...`).
pub const FEATURE_GATES: &[(&str, &str)] = &[
    ("InitialCorruptCheck", "experimental-initial-corrupt-check"),
    ("CompactHashCheck", "experimental-compact-hash-check-enabled"),
    ("LeaseCheckpoint", "experimental-enable-lease-checkpoint"),
    ("LeaseCheckpointPersist", "experimental-enable-lease-checkpoint-persist"),
    ("StopGRPCServiceOnDefrag", "experimental-stop-grpc-service-on-defrag"),
    ("TxnModeWriteWithSharedBuffer", "experimental-txn-mode-write-with-shared-buffer"),
    // Dialling peers from the advertised address: ferrokv dials from its --listen-peer-urls address already.
    ("SetMemberLocalAddr", ""),
];

/// The flag named `name`, if etcd has it.
pub fn find(name: &str) -> Option<&'static Spec> {
    FLAGS.iter().find(|s| s.name == name)
}

/// The flag a spelling stands for (itself unless it is an alias).
pub fn canonical(name: &str) -> &str {
    match find(name).map(|s| s.effect) {
        Some(Alias(of)) => of,
        _ => name,
    }
}

/// The `ETCD_*` variable of a flag: upper case, dashes to underscores.
pub fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_uppercase().replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_aliases_point_at_flags() {
        let mut seen = std::collections::BTreeSet::new();
        for s in FLAGS {
            assert!(seen.insert(s.name), "{} twice", s.name);
            if let Alias(of) = s.effect {
                let target = find(of).unwrap_or_else(|| panic!("{} aliases unknown {of}", s.name));
                assert!(!matches!(target.effect, Alias(_)), "{} aliases an alias", s.name);
                assert_eq!(target.kind, s.kind, "{} and {of} differ in kind", s.name);
            }
        }
        for (gate, flag) in FEATURE_GATES {
            assert!(flag.is_empty() || find(flag).is_some_and(|s| s.kind == Bool), "{gate} → {flag}");
        }
    }
}
