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
//! What it writes is what a first start of a new cluster writes, with the snapshot's history in the store: the
//! store (`backup::import`), the member identity, and a WAL whose first entries add every member of
//! `--initial-cluster`, committed at term 1. The members and ids are the new cluster's (from the token and peer
//! URLs), never the snapshot's, as etcd's restore does.
//!
//! **Crash safety**: everything is built in `<data-dir>/member.restoring` and renamed to `<data-dir>/member` once
//! durable, then the directory is synced; an interrupted restore leaves only `member.restoring`, which the next
//! restore into the same directory removes and starts over. A separate `--wal-dir` must not exist, as with etcd.

use std::path::{Path, PathBuf};

use crate::apply::membership::cluster_id;
use crate::backup::import::{self, Imported, Options};
use crate::config::{Config, Parsed};
use crate::consensus::identity::Identity;
use crate::error::Error;
use crate::logging::log;

/// Where an interrupted restore's work is, inside the data directory.
const RESTORING: &str = "member.restoring";

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
                    .parse::<u32>()
                    .map(i64::from)
                    .or_else(|_| v.parse::<i64>())
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

/// Whether `dir` is absent or holds nothing but an interrupted restore.
fn fresh(dir: &Path) -> Result<bool, Error> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let e = e.map_err(Error::io(dir.display()))?;
                if e.file_name() != RESTORING {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io(dir.display())(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io(format!("sync {}", dir.display())))
}

/// Restores (see the module header); returns what was imported.
pub fn restore(r: &Restore) -> Result<Imported, Error> {
    let c = &r.config;
    if !fresh(&c.data_dir)? {
        return Err(Error::Refused(format!("data-dir {:?} not empty or could not be read", c.data_dir.display())));
    }
    if let Some(w) = &c.wal_dir
        && w.exists()
    {
        return Err(Error::Refused(format!("wal-dir {:?} exists", w.display())));
    }
    let work = c.data_dir.join(RESTORING);
    let member = c.data_dir.join("member");
    let wal_dir = c.wal_dir.clone().unwrap_or_else(|| member.join("wal"));
    let fields = [
        ("path", r.file.display().to_string()),
        ("wal-dir", wal_dir.display().to_string()),
        ("data-dir", c.data_dir.display().to_string()),
        ("snap-dir", member.join("snap").display().to_string()),
    ];
    log("info", "restoring snapshot", &fields);
    import::check_hash(&r.file, r.options.skip_hash_check)?;
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(Error::io(format!("remove {}", work.display())))?;
    }
    std::fs::create_dir_all(work.join("snap")).map_err(Error::io(work.display()))?;
    let (store, imported) =
        import::import(&r.file, &work.join("snap").join("db"), mvcc::StoreConfig::default(), r.options)?;
    store.db().sync()?;
    drop(store);
    let members = crate::consensus::bootstrap::initial_members(&c.initial_cluster, &c.initial_cluster_token);
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let me = members.iter().find(|m| m.name == c.name).map(|m| m.id).ok_or_else(|| {
        Error::Refused(format!("couldn't find local name {:?} in the initial cluster configuration", c.name))
    })?;
    Identity { member: me, cluster: cluster_id(&ids) }.save(&work)?;
    let work_wal = c.wal_dir.clone().unwrap_or_else(|| work.join("wal"));
    let wal = wal::Wal::create(&work_wal, wal::Config::default())?;
    crate::consensus::bootstrap::first_entries(&wal, &members)?;
    drop(wal);
    sync_dir(&work)?;
    std::fs::rename(&work, &member).map_err(Error::io(format!("rename {} to {}", work.display(), member.display())))?;
    sync_dir(&c.data_dir)?;
    log(
        "info",
        "restored snapshot",
        &[
            &fields[..],
            &[
                ("revision", imported.revision.to_string()),
                ("compact-revision", imported.compacted.to_string()),
                ("revisions", imported.revisions.to_string()),
                ("leases", imported.leases.to_string()),
                ("member-id", format!("{me:x}")),
                ("cluster-id", format!("{:x}", cluster_id(&ids))),
            ],
        ]
        .concat(),
    );
    Ok(imported)
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
    match restore(&r) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}
