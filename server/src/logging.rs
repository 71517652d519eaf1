//! The server's log: one JSON object per line on stderr (or the `--log-outputs`: `stderr`, `stdout`, `default`
//! (stderr), or file paths, appended to), shaped as etcd's zap logger writes them
//! (`{"level":"info","ts":"2026-11-23T09:05:54.123Z","msg":"...",<fields>}`), filtered by `--log-level`.
//! etcd's test harnesses wait for messages such as "ready to serve client requests", so messages that tools watch
//! for are etcd's words.
//!
//! raft-rs logs through `slog`; [`raft_logger`] forwards its records here (elections, leader changes, transfers,
//! refused votes), each with its key-value pairs as fields. The `wal` and `mvcc` crates report through `tracing`
//! (a torn tail erased, io_uring unavailable); [`forward_tracing`] installs the subscriber that writes those events
//! here too, with their fields and the reporting module as `caller`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// etcd's log levels, least severe first.
const LEVELS: [&str; 6] = ["debug", "info", "warn", "error", "panic", "fatal"];

/// The least severe level logged (`--log-level`), set once at start-up.
static MIN_LEVEL: AtomicUsize = AtomicUsize::new(1);

fn severity(level: &str) -> usize {
    LEVELS.iter().position(|l| *l == level).unwrap_or(LEVELS.len() - 1)
}

/// Sets the least severe level logged (one of etcd's levels; validated by `config`).
pub fn set_log_level(level: &str) {
    MIN_LEVEL.store(severity(level), Ordering::Relaxed);
}

/// Whether a record at `level` would be written.
pub fn enabled(level: &str) -> bool {
    severity(level) >= MIN_LEVEL.load(Ordering::Relaxed)
}

/// Where log lines go (`--log-outputs`); stderr until set.
static OUTPUTS: std::sync::OnceLock<Vec<Output>> = std::sync::OnceLock::new();

#[derive(Debug)]
enum Output {
    Stderr,
    Stdout,
    File(std::sync::Mutex<std::fs::File>),
}

/// Sends the log to `outputs` (etcd's `--log-outputs`: `stderr`, `stdout`, `default`, or file paths), once at
/// start-up. A file that cannot be opened for appending is an error naming it.
pub fn set_outputs(outputs: &[String]) -> std::io::Result<()> {
    let mut opened = Vec::new();
    for o in outputs {
        opened.push(match o.as_str() {
            "stderr" | "default" => Output::Stderr,
            "stdout" => Output::Stdout,
            path => {
                let f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("--log-outputs: cannot open {path} for appending: {e}"))
                })?;
                Output::File(std::sync::Mutex::new(f))
            }
        });
    }
    if opened.is_empty() {
        opened.push(Output::Stderr);
    }
    let _ = OUTPUTS.set(opened);
    Ok(())
}

fn write_line(line: &str) {
    use std::io::Write as _;
    let Some(outputs) = OUTPUTS.get() else {
        eprintln!("{line}");
        return;
    };
    for o in outputs {
        match o {
            Output::Stderr => eprintln!("{line}"),
            Output::Stdout => println!("{line}"),
            Output::File(f) => {
                let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
                let _ = writeln!(f, "{line}");
            }
        }
    }
}

/// Writes one log line to the outputs if `level` is at or above `--log-level`.
pub fn log(level: &str, msg: &str, fields: &[(&str, String)]) {
    if !enabled(level) {
        return;
    }
    let mut line = format!("{{\"level\":\"{level}\",\"ts\":\"{}\",\"msg\":", timestamp(SystemTime::now()));
    json_string(&mut line, msg);
    for (k, v) in fields {
        line.push(',');
        json_string(&mut line, k);
        line.push(':');
        json_string(&mut line, v);
    }
    line.push('}');
    write_line(&line);
}

/// Writes the `tracing` events of every crate in the process (the wal's and mvcc's among them) to this log. Call
/// once at start-up; a second call (or another subscriber already installed) changes nothing.
pub fn forward_tracing() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(TracingToLog));
}

/// The `tracing` layer behind [`forward_tracing`].
#[derive(Debug)]
struct TracingToLog;

/// etcd's name for a `tracing` level (trace is debug).
fn level_name(level: tracing::Level) -> &'static str {
    match level {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warn",
        tracing::Level::INFO => "info",
        _ => "debug",
    }
}

/// Whether this layer wants what `meta` describes: events at `--log-level` or above, and no spans (the log has no
/// use for them). Saying so up front matters: without it the registry takes every callsite as wanted, and h2's and
/// tonic's trace-level spans, opened and closed per frame and per request, cost a quarter of the server's CPU under
/// load (measured with perf under etcd's benchmark, issue 17).
fn wanted(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_event() && enabled(level_name(*meta.level()))
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TracingToLog {
    fn register_callsite(&self, meta: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        // `--log-level` is set before this layer is installed and never changes, so the answer can be cached.
        if wanted(meta) { tracing::subscriber::Interest::always() } else { tracing::subscriber::Interest::never() }
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>, _: tracing_subscriber::layer::Context<'_, S>) -> bool {
        wanted(meta)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        use tracing::level_filters::LevelFilter;
        let most_verbose = [LevelFilter::TRACE, LevelFilter::INFO, LevelFilter::WARN, LevelFilter::ERROR];
        most_verbose
            .into_iter()
            .find(|f| f.into_level().is_some_and(|l| enabled(level_name(l))))
            .or(Some(LevelFilter::OFF))
    }

    /// Only events [`wanted`] reach here (`enabled` above).
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let level = level_name(*event.metadata().level());
        let mut fields = EventFields::default();
        event.record(&mut fields);
        fields.pairs.push(("caller", event.metadata().target().to_string()));
        log(level, &fields.message, &fields.pairs);
    }
}

/// An event's message and its other fields, as text.
#[derive(Debug, Default)]
struct EventFields {
    message: String,
    pairs: Vec<(&'static str, String)>,
}

impl tracing::field::Visit for EventFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs.push((field.name(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.pairs.push((field.name(), format!("{value:?}")));
        }
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `t` as ISO 8601 in UTC with milliseconds, as zap writes it.
fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian; eras of 400 years).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// A `slog` logger for raft-rs whose records go to [`log`].
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(RaftDrain, slog::o!())
}

struct RaftDrain;

/// raft-rs's fields that hold a member id.
const ID_KEYS: [&str; 7] = ["raft_id", "id", "from", "to", "lead_transferee", "last_lead_transferee", "vote"];

impl slog::Drain for RaftDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let level = match record.level() {
            slog::Level::Critical | slog::Level::Error => "error",
            slog::Level::Warning => "warn",
            slog::Level::Info => "info",
            slog::Level::Debug | slog::Level::Trace => "debug",
        };
        if !enabled(level) {
            return Ok(());
        }
        let mut fields = Fields(Vec::new());
        let _ = slog::KV::serialize(&record.kv(), record, &mut fields);
        let _ = slog::KV::serialize(values, record, &mut fields);
        // Member ids in hex, as etcd writes them.
        let fields: Vec<(&str, String)> = fields
            .0
            .iter()
            .map(|(k, v)| match (ID_KEYS.contains(&k.as_str()), v.parse::<u64>()) {
                (true, Ok(id)) => (k.as_str(), format!("{id:x}")),
                _ => (k.as_str(), v.clone()),
            })
            .collect();
        log(level, &format!("raft: {}", record.msg()), &fields);
        Ok(())
    }
}

struct Fields(Vec<(String, String)>);

impl slog::Serializer for Fields {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        self.0.push((key.to_string(), val.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_iso_8601_utc() {
        let at = |s: u64, ms: u64| timestamp(UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z", "a leap day of a century leap year");
        assert_eq!(at(1_795_424_754, 123), "2026-11-23T09:05:54.123Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z", "2100 is not a leap year");
    }

    #[test]
    fn json_escapes() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\nd");
        assert_eq!(s, r#""a\"b\\c\u000ad""#);
    }
}
