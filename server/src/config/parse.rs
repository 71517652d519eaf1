//! Reading the configuration as etcd does: the command line (Go's flag syntax, parsed with clap), then for every
//! flag not given there its `ETCD_*` variable; or, when `--config-file` (or `ETCD_CONFIG_FILE`) names a file, that
//! YAML file alone, command line and environment ignored (etcd's rule). Every name goes through the flag table
//! (`flags`); aliases land on the flag they stand for, `--feature-gates` on the flags its gates stand for.
//!
//! Nothing here fails on what etcd only warns about: an unknown `ETCD_*` variable, a variable shadowed by a flag,
//! an unknown key in the config file. Those become [`Note`]s, logged once the logger runs.

use std::collections::BTreeMap;

use super::flags::{self, Effect, Kind, Spec};
use super::{ConfigError, err};

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    /// Set by a feature gate.
    Gate,
}

/// Something to log at start (level, message, fields), as etcd warns.
pub type Note = (&'static str, String, Vec<(&'static str, String)>);

/// The values given, by canonical flag name; anything not given has etcd's default.
#[derive(Debug, Clone, Default)]
pub struct Values {
    given: BTreeMap<&'static str, (String, Source)>,
    /// Warnings and no-effect flags, logged at start.
    pub notes: Vec<Note>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    Run(Values),
    /// `--help`: the text to print.
    Help(String),
    Version,
}

/// Variables with the `ETCD_` prefix that are not flags but that etcd reads anyway.
const OTHER_ENV: &[&str] = &["ETCD_UNSUPPORTED_ARCH"];

impl Values {
    /// The flag's value as text: given, or etcd's default.
    pub fn text(&self, name: &str) -> &str {
        match self.given.get(name) {
            Some((v, _)) => v,
            None => flags::find(name).map_or("", |s| s.default),
        }
    }

    /// Whether the flag was given (on the command line, in the environment, the config file or a gate).
    pub fn is_set(&self, name: &str) -> bool {
        self.given.contains_key(name)
    }

    pub fn bool(&self, name: &str) -> Result<bool, ConfigError> {
        parse_bool(self.text(name))
            .ok_or_else(|| ConfigError(format!("invalid boolean value {:?} for --{name}", self.text(name))))
    }

    pub fn uint(&self, name: &str) -> Result<u64, ConfigError> {
        parse_uint(self.text(name))
            .ok_or_else(|| ConfigError(format!("invalid value {:?} for --{name}", self.text(name))))
    }

    /// A Go duration; `None` when the flag is empty.
    pub fn duration(&self, name: &str) -> Result<Option<std::time::Duration>, ConfigError> {
        let text = self.text(name);
        if text.is_empty() {
            return Ok(None);
        }
        super::parse_go_duration(text)
            .map(Some)
            .ok_or_else(|| ConfigError(format!("invalid value {text:?} for --{name}: expected a duration such as 10s")))
    }

    /// Records `value` for the flag `name` (any spelling), from `source`.
    fn set(&mut self, name: &str, value: String, source: Source) -> Result<(), ConfigError> {
        let Some(spec) = flags::find(name) else { return err(format!("unknown flag: --{name}")) };
        let canonical = flags::canonical(name);
        let Some(target) = flags::find(canonical) else { return err(format!("unknown flag: --{canonical}")) };
        check_kind(spec, &value)?;
        if value.is_empty() && spec.kind != Kind::Bool {
            // An empty value is etcd's default (`--data-dir=`, an empty key in the config file).
            return Ok(());
        }
        if let Some((old, old_source)) = self.given.get(target.name)
            && *old_source == source
            && canonical != name
            && *old != value
        {
            return err(format!("--{name}={value} contradicts --{canonical}={old}"));
        }
        self.given.insert(target.name, (value, source));
        Ok(())
    }

    /// Checks each flag's effect: a refused feature set to anything but etcd's default stops the start; a flag
    /// without effect that was set is noted once.
    fn check_effects(&mut self) -> Result<(), ConfigError> {
        for (name, (value, _)) in &self.given {
            let Some(spec) = flags::find(name) else { continue };
            match spec.effect {
                Effect::Refused(why) if !same_value(spec, value, spec.default) => {
                    return err(format!("--{name}={value}: {why}"));
                }
                Effect::NoEffect(why) => self.notes.push((
                    "warn",
                    "flag has no effect in ferrokv".into(),
                    vec![("flag", format!("--{name}")), ("value", value.clone()), ("reason", why.into())],
                )),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether two texts are the same value of `spec`'s kind (`true` and `1` are the same bool).
fn same_value(spec: &Spec, a: &str, b: &str) -> bool {
    match spec.kind {
        Kind::Bool => parse_bool(a).unwrap_or(false) == parse_bool(b).unwrap_or(false),
        Kind::Uint => parse_uint(a) == parse_uint(b),
        Kind::Duration => super::parse_go_duration(a) == super::parse_go_duration(b),
        Kind::Text => a == b,
    }
}

fn check_kind(spec: &Spec, value: &str) -> Result<(), ConfigError> {
    let ok = match spec.kind {
        Kind::Bool => parse_bool(value).is_some(),
        Kind::Uint => parse_uint(value).is_some(),
        Kind::Duration => value.is_empty() || super::parse_go_duration(value).is_some(),
        Kind::Text => true,
    };
    if ok { Ok(()) } else { err(format!("invalid value {value:?} for flag --{}", spec.name)) }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(text, 0, 64)` for decimal and `0x` hexadecimal.
pub fn parse_uint(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The clap command: every flag of the table, bools taking an optional `=value`.
fn command() -> clap::Command {
    use clap::{Arg, ArgAction};
    let args = flags::FLAGS.iter().map(|s| {
        let arg = Arg::new(s.name).long(s.name).action(ArgAction::Set).help(help(s));
        match s.kind {
            Kind::Bool => arg.num_args(0..=1).require_equals(true).default_missing_value("true"),
            _ => arg.num_args(1).allow_hyphen_values(true),
        }
    });
    clap::Command::new("ferrokv")
        .about("An etcd-compatible key-value store (etcd's flags; see --help)")
        .disable_version_flag(true)
        .args_override_self(true)
        .args(args)
}

fn help(s: &Spec) -> String {
    let default = if s.default.is_empty() { String::new() } else { format!(" [etcd's default: {}]", s.default) };
    match s.effect {
        Effect::Used => format!("as etcd{default}"),
        Effect::NoEffect(why) => format!("accepted, no effect: {why}"),
        Effect::Refused(why) => format!("only etcd's default is accepted: {why}{default}"),
        Effect::Alias(of) => format!("same as --{of}"),
    }
}

/// Go's flag package takes `-name` as `--name`.
fn normalise(arg: &str) -> String {
    match arg.strip_prefix('-') {
        Some(rest) if !rest.starts_with('-') && rest.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) => {
            let name = rest.split('=').next().unwrap_or(rest);
            if flags::find(name).is_some() || name == "help" {
                return format!("-{arg}");
            }
            arg.to_string()
        }
        _ => arg.to_string(),
    }
}

/// Reads the command line (`args`, without the program name) and the environment (`env`).
pub fn parse(args: &[String], env: &[(String, String)]) -> Result<Parsed, ConfigError> {
    let argv = std::iter::once("ferrokv".to_string()).chain(args.iter().map(|a| normalise(a)));
    let matches = match command().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => return Ok(Parsed::Help(e.to_string())),
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            return err(first.to_string());
        }
    };
    let mut values = Values::default();
    for s in flags::FLAGS {
        if let Some(v) = matches.get_one::<String>(s.name) {
            values.set(s.name, v.clone(), Source::Flag)?;
        }
    }
    if values.is_set("version") && values.bool("version")? {
        return Ok(Parsed::Version);
    }
    let env_file = env.iter().find(|(k, _)| k == "ETCD_CONFIG_FILE").map(|(_, v)| v.clone());
    let file = if values.is_set("config-file") { Some(values.text("config-file").to_string()) } else { env_file };
    if let Some(path) = file.filter(|p| !p.is_empty()) {
        let mut from_file = super::file::read(&path)?;
        from_file.notes.push(("info", "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided".into(), vec![("path", path)]));
        apply_gates(&mut from_file)?;
        from_file.check_effects()?;
        return Ok(Parsed::Run(from_file));
    }
    for (key, value) in env {
        let Some(rest) = key.strip_prefix("ETCD_") else { continue };
        if OTHER_ENV.contains(&key.as_str()) {
            continue;
        }
        let name = rest.to_lowercase().replace('_', "-");
        match flags::find(&name) {
            None => values.notes.push((
                "warn",
                "unrecognized environment variable".into(),
                vec![("environment-variable", key.clone())],
            )),
            Some(_) if values.is_set(flags::canonical(&name)) => values.notes.push((
                "warn",
                "recognized environment variable, but unused: shadowed by corresponding flag".into(),
                vec![("environment-variable", key.clone())],
            )),
            Some(_) => {
                values.set(&name, value.clone(), Source::Env)?;
                values.notes.push((
                    "info",
                    "recognized and used environment variable".into(),
                    vec![("variable-name", key.clone()), ("variable-value", value.clone())],
                ));
            }
        }
    }
    apply_gates(&mut values)?;
    values.check_effects()?;
    Ok(Parsed::Run(values))
}

/// `--feature-gates=Name=bool,...`: each gate sets the flag it stands for, unless that flag was given itself
/// with another value (an error).
fn apply_gates(values: &mut Values) -> Result<(), ConfigError> {
    let gates = values.text("feature-gates").to_string();
    for pair in gates.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((gate, on)) = pair.split_once('=') else {
            return err(format!("--feature-gates: missing bool value for {pair}"));
        };
        let Some(on) = parse_bool(on.trim()) else {
            return err(format!("--feature-gates: invalid value of {gate}={on}, err: strconv.ParseBool"));
        };
        let Some((_, flag)) = flags::FEATURE_GATES.iter().find(|(g, _)| *g == gate.trim()) else {
            return err(format!("--feature-gates: unrecognized feature gate: {}", gate.trim()));
        };
        if flag.is_empty() {
            continue;
        }
        if values.is_set(flag) && values.bool(flag)? != on {
            return err(format!("--feature-gates={gate}={on} contradicts --{flag}={}", values.text(flag)));
        }
        values.set(flag, on.to_string(), Source::Gate)?;
    }
    Ok(())
}

impl Values {
    /// For the config file reader: records a key's value.
    pub(super) fn set_from_file(&mut self, name: &str, value: String) -> Result<(), ConfigError> {
        self.set(name, value, Source::File)
    }
}
