//! A restore of an etcd snapshot into a new data directory (`ferrokv snapshot restore`, whose command line is
//! `tools::restore`). What it writes is what a first start of a new cluster writes, with the snapshot's history in
//! the store: the store (`backup::import`), the member identity, and a WAL whose first entries add every member of
//! `--initial-cluster`, committed at term 1. The members and ids are the new cluster's (from the token and peer
//! URLs), never the snapshot's, as etcd's restore does.
//!
//! **Crash safety**: everything is built in `<data-dir>/member.restoring` and renamed to `<data-dir>/member` once
//! durable, then the directory is synced; an interrupted restore leaves only `member.restoring`, which the next
//! restore into the same directory removes and starts over. A separate `--wal-dir` must not exist, as with etcd.

use std::path::Path;

use crate::apply::membership::cluster_id;
use crate::backup::import::{self, Imported, Options};
use crate::backup::{rename_durably, sync_dir};
use crate::config::Config;
use crate::consensus::identity::Identity;
use crate::error::Error;
use crate::logging::log;

/// Where an interrupted restore's work is, inside the data directory.
const RESTORING: &str = "member.restoring";

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

/// Restores the snapshot `file` into the data directory `c` names (see the module header); returns what was
/// imported.
pub fn restore(file: &Path, c: &Config, options: Options) -> Result<Imported, Error> {
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
        ("path", file.display().to_string()),
        ("wal-dir", wal_dir.display().to_string()),
        ("data-dir", c.data_dir.display().to_string()),
        ("snap-dir", member.join("snap").display().to_string()),
    ];
    log("info", "restoring snapshot", &fields);
    import::check_hash(file, options.skip_hash_check)?;
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(Error::io(format!("remove {}", work.display())))?;
    }
    wal::create_dir_durable(&work.join("snap"))?;
    let (store, imported) = import::import(file, &work.join("snap").join("db"), mvcc::StoreConfig::default(), options)?;
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
    rename_durably(&work, &member)?;
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
