//! etcd's initial corruption check (`--experimental-initial-corrupt-check`, 3.6's `InitialCorruptCheck` gate): before
//! a member serves clients it hashes its store (HashKV at its current revision) and asks every other member for
//! the hash at the same revision, through the other member's client URL. A different hash at the same compaction
//! revision means one of the two stores differs from the log they share: the member refuses to start
//! ("found data inconsistency with peers", etcd's words, which tooling greps for). A peer that cannot answer (not
//! up yet, behind, or already compacted past the revision) is logged and skipped, as etcd does: the check never
//! stalls a cluster that is starting.
//!
//! **When**: once, at start, after the store is opened and before the Raft and apply threads start or any listener
//! opens: the hash is of the store as it was on disk, before this member applies anything more, and nobody is
//! served from a store that fails the check.

use std::time::Duration;

use crate::apply::membership::Shared;
use crate::apply::store::StoreSlot;
use crate::error::Error;
use crate::logging::log;
use crate::proto::etcdserverpb::{HashKvRequest, maintenance_client::MaintenanceClient};

/// How long one peer may take to answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// What one peer said.
#[derive(Debug)]
enum Answer {
    Hash { hash: u32, compact: i64 },
    Failed { why: String },
}

/// Compares this member's hash with every peer's; `Err` when a peer at the same compaction revision disagrees.
pub async fn check_initial(
    stores: &StoreSlot,
    me: u64,
    registry: &Shared,
    dialer: &crate::api::client_tls::Dialer,
) -> Result<(), Error> {
    log("info", "starting initial corruption check", &[("local-member-id", format!("{me:x}"))]);
    let store = stores.get();
    let (hash, rev, compact) = tokio::task::block_in_place(|| store.hash_kv(0))?;
    let peers: Vec<(u64, Vec<String>)> =
        registry.read().members().into_iter().filter(|m| m.id != me).map(|m| (m.id, m.client_ur_ls)).collect();
    let mut mismatches = 0;
    for (member, urls) in peers {
        let fields = |extra: &[(&'static str, String)]| {
            let mut f = vec![("local-member-id", format!("{me:x}")), ("remote-peer-id", format!("{member:x}"))];
            f.extend_from_slice(extra);
            f
        };
        match ask(dialer, &urls, rev).await {
            Answer::Hash { hash: theirs, compact: their_compact } if theirs != hash => {
                let detail = [
                    ("local-member-revision", rev.to_string()),
                    ("local-member-compact-revision", compact.to_string()),
                    ("local-member-hash", hash.to_string()),
                    ("remote-peer-compact-revision", their_compact.to_string()),
                    ("remote-peer-hash", theirs.to_string()),
                ];
                if their_compact == compact {
                    log("warn", "found different hash values from remote peer", &fields(&detail));
                    mismatches += 1;
                } else {
                    log("warn", "found different compact revision values from remote peer", &fields(&detail));
                }
            }
            Answer::Hash { .. } => {}
            Answer::Failed { why } => {
                log("warn", "cannot fetch hash from remote peer", &fields(&[("error", why)]));
            }
        }
    }
    if mismatches > 0 {
        return Err(Error::Corrupt(format!("{me:x} found data inconsistency with peers")));
    }
    log("info", "initial corruption checking passed; no corruption", &[("local-member-id", format!("{me:x}"))]);
    Ok(())
}

/// Asks a member (at the first of its client URLs that answers) for its hash at `rev`.
async fn ask(dialer: &crate::api::client_tls::Dialer, urls: &[String], rev: i64) -> Answer {
    let mut why = "the member has published no client URL".to_string();
    for url in urls {
        let attempt = async {
            let mut client = MaintenanceClient::new(dialer.channel(url).await?);
            let r = client.hash_kv(HashKvRequest { revision: rev }).await.map_err(|e| e.message().to_string())?;
            Ok::<_, String>(r.into_inner())
        };
        match tokio::time::timeout(PEER_TIMEOUT, attempt).await {
            Ok(Ok(r)) => return Answer::Hash { hash: r.hash, compact: r.compact_revision },
            Ok(Err(e)) => why = format!("{url}: {e}"),
            Err(_) => why = format!("{url}: no answer within {PEER_TIMEOUT:?}"),
        }
    }
    Answer::Failed { why }
}
