//! etcd's corruption checks.
//!
//! **Initial** (`--experimental-initial-corrupt-check`, 3.6's `InitialCorruptCheck` gate): before
//! a member serves clients it hashes its store (HashKV at its current revision) and asks every other member for
//! the hash at the same revision, over the peer transport (a `HASH_KV` frame, answered by `consensus::transport::hash_kv_answer`), as
//! etcd asks its peers' `/members/hashkv`: peer TLS guards it, and client authentication, which knows nothing
//! of members, does not stand in the way. A different hash at the same compaction
//! revision means one of the two stores differs from the log they share: the member refuses to start
//! ("found data inconsistency with peers", etcd's words, which tooling greps for). A peer that cannot answer (not
//! up yet, behind, or already compacted past the revision) is logged and skipped, as etcd does: the check never
//! stalls a cluster that is starting.
//!
//! **When**: once, at start, after the store is opened and before the Raft and apply threads start or any listener
//! opens: the hash is of the store as it was on disk, before this member applies anything more, and nobody is
//! served from a store that fails the check.
//!
//! **Periodic** (`--experimental-corrupt-check-time`): every interval the leader hashes its store, asks every
//! follower for its hash at the leader's revision, and hashes again. It raises the CORRUPT alarm (member id 0, as
//! etcd 3.4 does: which store is wrong is not known) through Raft when its own hash changed at an unchanged
//! revision, or a follower is ahead of it (revision or compaction revision), or a follower at the compaction
//! revision the leader had hashed at reports another hash. From then on every write is refused until an operator
//! disarms (see `apply::alarm`). A follower that cannot answer is skipped.

use std::sync::Arc;
use std::time::Duration;

use crate::apply::membership::Shared;
use crate::apply::store::StoreSlot;
use crate::consensus::transport::{Dialer, HASH_KV};
use crate::error::Error;
use crate::logging::log;
use crate::proto::etcdserverpb::HashKvResponse;

/// How long one peer may take to answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// What one peer said.
#[derive(Debug)]
enum Answer {
    Hash { hash: u32, compact: i64, revision: i64 },
    Failed { why: String },
}

/// Compares this member's hash with every peer's; `Err` when a peer at the same compaction revision disagrees.
pub async fn check_initial(stores: &StoreSlot, me: u64, registry: &Shared, dialer: &Dialer) -> Result<(), Error> {
    log("info", "starting initial corruption check", &[("local-member-id", format!("{me:x}"))]);
    let store = stores.get();
    let (hash, rev, compact) = tokio::task::block_in_place(|| crate::backup::export::hash_kv(&store, 0))?;
    let mut mismatches = 0;
    for (member, urls) in peers(registry, me) {
        let fields = |extra: &[(&'static str, String)]| {
            let mut f = vec![("local-member-id", format!("{me:x}")), ("remote-peer-id", format!("{member:x}"))];
            f.extend_from_slice(extra);
            f
        };
        match ask(dialer, &urls, rev).await {
            Answer::Hash { hash: theirs, compact: their_compact, .. } if theirs != hash => {
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

/// Every member but `me`, with its peer URLs.
fn peers(registry: &Shared, me: u64) -> Vec<(u64, Vec<String>)> {
    registry.read().members().into_iter().filter(|m| m.id != me).map(|m| (m.id, m.peer_ur_ls)).collect()
}

/// Asks one peer, at one of its peer URLs, over the peer transport (blocking).
fn ask_one(dialer: &Dialer, url: &str, rev: i64) -> Result<HashKvResponse, String> {
    use prost::Message as _;
    let url = crate::config::parse_url("peer-urls", url).map_err(|e| e.to_string())?;
    let frame = [&[HASH_KV][..], &rev.to_le_bytes()].concat();
    let addr = crate::consensus::conn::PeerAddr::of(&url);
    let buf = crate::consensus::transport::ask(dialer, &addr, &frame, PEER_TIMEOUT)?;
    match buf.split_first() {
        Some((0, r)) => HashKvResponse::decode(r).map_err(|e| e.to_string()),
        Some((_, why)) => Err(String::from_utf8_lossy(why).into_owned()),
        None => Err("an empty answer".into()),
    }
}

/// Asks a member (at the first of its peer URLs that answers) for its hash at `rev`.
async fn ask(dialer: &Dialer, urls: &[String], rev: i64) -> Answer {
    let mut why = "the member has no peer URL".to_string();
    for url in urls {
        let (d, u) = (dialer.clone(), url.clone());
        let attempt = tokio::task::spawn_blocking(move || ask_one(&d, &u, rev));
        match tokio::time::timeout(PEER_TIMEOUT, attempt).await {
            Ok(Ok(Ok(r))) => {
                let revision = r.header.map_or(0, |h| h.revision);
                return Answer::Hash { hash: r.hash, compact: r.compact_revision, revision };
            }
            Ok(Ok(Err(e))) => why = format!("{url}: {e}"),
            Ok(Err(e)) => why = format!("{url}: {e}"),
            Err(_) => why = format!("{url}: no answer within {PEER_TIMEOUT:?}"),
        }
    }
    Answer::Failed { why }
}

/// The periodic check's task: runs until the runtime stops (see the module header).
pub async fn monitor(
    interval: Duration,
    stores: Arc<StoreSlot>,
    cluster: crate::consensus::view::ClusterView,
    dialer: Dialer,
    proposer: crate::proposals::Proposer,
) {
    let me = format!("{:x}", cluster.member);
    log("info", "enabled corruption checking", &[("local-member-id", me), ("interval", format!("{interval:?}"))]);
    loop {
        tokio::time::sleep(interval).await;
        if !cluster.is_leader() {
            continue;
        }
        match check_peers(&stores, &cluster, &dialer).await {
            Ok(false) => {}
            Ok(true) => {
                let raise = crate::proto::etcdserverpb::AlarmRequest {
                    action: crate::proto::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
                    member_id: 0,
                    alarm: crate::proto::etcdserverpb::AlarmType::Corrupt as i32,
                };
                if let Err(e) =
                    proposer.propose(&crate::request::Caller::member(), &crate::request::Op::Alarm(raise)).await
                {
                    log("warn", "failed to raise the CORRUPT alarm", &[("error", e.to_string())]);
                }
            }
            Err(e) => log("warn", "failed to check hash KV", &[("error", e.to_string())]),
        }
    }
}

/// One round of the leader's check; `Ok(true)` when a store differs.
async fn check_peers(
    stores: &StoreSlot,
    cluster: &crate::consensus::view::ClusterView,
    dialer: &Dialer,
) -> Result<bool, Error> {
    let store = stores.get();
    let (h, rev, crev) = tokio::task::block_in_place(|| crate::backup::export::hash_kv(&store, 0))?;
    let mut answers = Vec::new();
    for (id, urls) in peers(&cluster.registry, cluster.member) {
        answers.push((id, ask(dialer, &urls, rev).await));
    }
    let (h2, rev2, crev2) = tokio::task::block_in_place(|| crate::backup::export::hash_kv(&store, 0))?;
    let mut corrupt = false;
    if h2 != h && rev2 == rev && crev2 == crev {
        let fields = [
            ("revision-1", rev.to_string()),
            ("compact-revision-1", crev.to_string()),
            ("hash-1", h.to_string()),
            ("revision-2", rev2.to_string()),
            ("compact-revision-2", crev2.to_string()),
            ("hash-2", h2.to_string()),
        ];
        log("warn", "found hash mismatch", &fields);
        corrupt = true;
    }
    let mut checked = 0;
    for (id, answer) in answers {
        let Answer::Hash { hash, compact, revision } = answer else { continue };
        checked += 1;
        let peer = ("follower-peer-id", format!("{id:x}"));
        if revision > rev2 {
            let fields =
                [("leader-revision", rev2.to_string()), ("follower-revision", revision.to_string()), peer.clone()];
            log("warn", "revision from follower must be less than or equal to leader's", &fields);
            corrupt = true;
        }
        if compact > crev2 {
            let fields = [
                ("leader-compact-revision", crev2.to_string()),
                ("follower-compact-revision", compact.to_string()),
                peer.clone(),
            ];
            log("warn", "compact revision from follower must be less than or equal to leader's", &fields);
            corrupt = true;
        }
        if compact == crev && hash != h {
            let fields = [
                ("leader-compact-revision", crev2.to_string()),
                ("leader-hash", h.to_string()),
                ("follower-compact-revision", compact.to_string()),
                ("follower-hash", hash.to_string()),
                peer,
            ];
            log("warn", "same compact revision then hashes must match", &fields);
            corrupt = true;
        }
    }
    log("info", "finished peer corruption check", &[("number-of-peers-checked", checked.to_string())]);
    Ok(corrupt)
}
