//! `ferrokv snapshot restore FILE`: etcd's `etcdctl snapshot restore` (etcdutl's in 3.5 and later) into a new
//! ferrokv data directory, from an etcd snapshot file (`etcdctl snapshot save`, ferrokv's or etcd's) or, with
//! `--skip-hash-check`, an etcd member's `member/snap/db`.
//!
//! Flags are etcdutl's: `--data-dir` (default: the server's, `<name>.ferrokv`), `--wal-dir`, `--name`,
//! `--initial-cluster`, `--initial-cluster-token`, `--initial-advertise-peer-urls` (read and checked by the server's
//! own flag parser, so a restored member and the member started on it agree), `--skip-hash-check`, 3.6's
//! `--bump-revision` and `--mark-compacted`, and `--initial-memory-map-size` (accepted; ferrokv's file needs no
//! map size).
//!
//! The restore itself is `backup::restore`; this is its command line.

use std::path::PathBuf;

use crate::backup::import::Options;
use crate::config::{Config, Parsed};
use crate::error::Error;

/// The parsed command line.
#[derive(Debug)]
pub struct Restore {
    pub file: PathBuf,
    pub config: Config,
    pub options: Options,
}

/// The server flags a restore reads.
const SERVER_FLAGS: [&str; 6] =
    ["data-dir", "wal-dir", "name", "initial-cluster", "initial-cluster-token", "initial-advertise-peer-urls"];

fn usage(what: impl Into<String>) -> Error {
    Error::Refused(what.into())
}

/// Parses `restore`'s arguments (after the word `restore`).
pub fn parse(args: &[String]) -> Result<Restore, Error> {
    let mut file = None;
    let mut server = Vec::new();
    let (mut skip, mut bump, mut mark) = (false, 0i64, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(flag) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            if file.replace(PathBuf::from(a)).is_some() {
                return Err(usage("snapshot restore requires exactly one argument"));
            }
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let boolean = |v: Option<String>| match v.as_deref() {
            None | Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(usage(format!("invalid argument {other:?} for \"--{name}\" flag"))),
        };
        let mut value = |v: Option<String>| {
            v.or_else(|| it.next().cloned()).ok_or_else(|| usage(format!("flag needs an argument: --{name}")))
        };
        match name {
            "skip-hash-check" => skip = boolean(inline)?,
            "mark-compacted" => mark = boolean(inline)?,
            "bump-revision" => {
                let v = value(inline)?;
                bump = v
                    .parse::<i64>()
                    .ok()
                    .filter(|b| *b >= 0)
                    .ok_or_else(|| usage(format!("invalid argument {v:?} for \"--bump-revision\" flag")))?;
            }
            "initial-memory-map-size" => {
                value(inline)?;
            }
            n if SERVER_FLAGS.contains(&n) => {
                server.push(format!("--{n}={}", value(inline)?));
            }
            _ => return Err(usage(format!("unknown flag: --{name}"))),
        }
    }
    let file = file.ok_or_else(|| usage("snapshot restore requires exactly one argument"))?;
    if bump > 0 && !mark {
        return Err(usage("--mark-compacted required if --revision-bump > 0"));
    }
    let config = match crate::config::from_args(&server, &[]).map_err(|e| usage(e.to_string()))? {
        Parsed::Run(values) => values.validate().map_err(|e| usage(e.to_string()))?,
        _ => return Err(usage("usage: ferrokv snapshot restore FILE [flags]")),
    };
    Ok(Restore { file, config, options: Options { skip_hash_check: skip, bump_revision: bump } })
}

/// The command (arguments after `restore`): returns the process's exit code, etcdctl's (2 for bad arguments).
pub fn main(args: &[String]) -> u8 {
    let r = match parse(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: {e}");
            return 2;
        }
    };
    match crate::backup::restore::restore(&r.file, &r.config, r.options) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}
