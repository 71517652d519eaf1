//! etcd's YAML configuration file (`--config-file`): the keys are the flag names, except the TLS settings, which sit
//! in two blocks, `client-transport-security` and `peer-transport-security`, and `log-outputs` (and `cipher-suites`),
//! which are lists. Durations are Go duration strings or, as etcd marshals them, integers of nanoseconds. An empty
//! value means etcd's default. A key etcd does not know is logged and skipped, as etcd skips it.

use super::ConfigError;
use super::flags::{self, Kind};
use super::parse::Values;

/// The TLS block keys and the flags they stand for: (block key, client flag, peer flag).
const TLS_KEYS: &[(&str, &str, &str)] = &[
    ("cert-file", "cert-file", "peer-cert-file"),
    ("key-file", "key-file", "peer-key-file"),
    ("client-cert-file", "client-cert-file", "peer-client-cert-file"),
    ("client-key-file", "client-key-file", "peer-client-key-file"),
    ("client-cert-auth", "client-cert-auth", "peer-client-cert-auth"),
    ("trusted-ca-file", "trusted-ca-file", "peer-trusted-ca-file"),
    ("auto-tls", "auto-tls", "peer-auto-tls"),
    ("crl-file", "client-crl-file", "peer-crl-file"),
    ("allowed-cn", "", "peer-cert-allowed-cn"),
    ("allowed-hostname", "client-cert-allowed-hostname", "peer-cert-allowed-hostname"),
    ("skip-client-san-verification", "", "experimental-peer-skip-client-san-verification"),
];

/// Reads the file at `path`.
pub fn read(path: &str) -> Result<Values, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("--config-file {path}: {e}")))?;
    from_yaml(&text).map_err(|e| ConfigError(format!("--config-file {path}: {}", e.0)))
}

/// The values of a configuration file's text.
pub fn from_yaml(text: &str) -> Result<Values, ConfigError> {
    use yaml_serde::Value;
    let doc: Value = yaml_serde::from_str(text).map_err(|e| ConfigError(format!("invalid YAML: {e}")))?;
    let mut values = Values::default();
    let Value::Mapping(top) = doc else {
        return if doc.is_null() {
            Ok(values)
        } else {
            Err(ConfigError("expected a mapping of keys to values".into()))
        };
    };
    for (key, value) in top {
        let Some(key) = key.as_str().map(str::to_string) else {
            return Err(ConfigError(format!("a key that is not text: {key:?}")));
        };
        match (key.as_str(), &value) {
            ("client-transport-security" | "peer-transport-security", Value::Mapping(block)) => {
                let peer = key.starts_with("peer");
                for (k, v) in block {
                    let k = k.as_str().unwrap_or_default();
                    let flag =
                        TLS_KEYS.iter().find(|(name, _, _)| *name == k).map(|(_, c, p)| if peer { *p } else { *c });
                    match flag {
                        Some(flag) if !flag.is_empty() => set(&mut values, flag, v)?,
                        _ => unknown(&mut values, &format!("{key}.{k}")),
                    }
                }
            }
            ("client-transport-security" | "peer-transport-security", Value::Null) => {}
            // etcd 3.4's older spelling of log-outputs.
            ("log-output", _) => set(&mut values, "log-outputs", &value)?,
            _ if flags::find(&key).is_some() && !matches!(key.as_str(), "config-file" | "version") => {
                set(&mut values, &key, &value)?
            }
            _ => unknown(&mut values, &key),
        }
    }
    Ok(values)
}

fn unknown(values: &mut Values, key: &str) {
    values.notes.push((
        "warn",
        "unknown key in the configuration file, skipped".into(),
        vec![("key", key.to_string())],
    ));
}

/// Records one key's value as the flag's text.
fn set(values: &mut Values, flag: &str, value: &yaml_serde::Value) -> Result<(), ConfigError> {
    use yaml_serde::Value;
    let kind = flags::find(flag).map_or(Kind::Text, |s| s.kind);
    let text = match value {
        Value::Null => return Ok(()),
        Value::Bool(b) => b.to_string(),
        // A duration marshalled by etcd is an integer of nanoseconds.
        Value::Number(n) if kind == Kind::Duration => match n.as_u64() {
            Some(ns) => format!("{ns}ns"),
            None => return Err(ConfigError(format!("{flag}: {n} is not a duration"))),
        },
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.is_empty() => return Ok(()),
        Value::String(s) => s.clone(),
        Value::Sequence(items) => {
            let parts: Option<Vec<String>> = items.iter().map(|i| i.as_str().map(str::to_string)).collect();
            parts.ok_or_else(|| ConfigError(format!("{flag}: expected a list of text")))?.join(",")
        }
        other => return Err(ConfigError(format!("{flag}: unexpected value {other:?}"))),
    };
    values.set_from_file(flag, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcds_keys_blocks_lists_and_durations() {
        let v = from_yaml(
            "name: 'n1'\ndata-dir:\nsnapshot-count: 10000\nlisten-client-urls: http://localhost:2379\n\
             client-transport-security:\n  cert-file: /c.crt\n  client-cert-auth: true\n\
             peer-transport-security:\n  auto-tls: true\n  allowed-cn: etcd\n\
             log-outputs: [stderr]\ngrpc-keepalive-interval: 7200000000000\n\
             experimental-watch-progress-notify-interval: 5s\nfuture-key: 1\n",
        )
        .unwrap();
        assert_eq!(v.text("name"), "n1");
        assert!(!v.is_set("data-dir"), "an empty value is etcd's default");
        assert_eq!(v.uint("snapshot-count").unwrap(), 10000);
        assert_eq!(v.text("cert-file"), "/c.crt");
        assert!(v.bool("client-cert-auth").unwrap());
        assert!(v.bool("peer-auto-tls").unwrap());
        assert_eq!(v.text("peer-cert-allowed-cn"), "etcd");
        assert_eq!(v.text("log-outputs"), "stderr");
        assert_eq!(v.duration("grpc-keepalive-interval").unwrap(), Some(std::time::Duration::from_secs(7200)));
        assert_eq!(
            v.duration("experimental-watch-progress-notify-interval").unwrap(),
            Some(std::time::Duration::from_secs(5))
        );
        assert!(v.notes.iter().any(|(_, _, f)| f.iter().any(|(_, k)| k == "future-key")), "an unknown key is noted");
    }

    #[test]
    fn a_wrong_value_names_its_key() {
        let e = from_yaml("snapshot-count: lots\n").unwrap_err().0;
        assert!(e.contains("snapshot-count"), "{e}");
        assert!(from_yaml("- a\n- b\n").is_err(), "not a mapping");
    }
}
