//! Start-up: who this member is, who the other members are, and the Raft configuration to start from.
//!
//! Three cases, told apart by what the data directory holds (see `identity` and `apply::membership` for the formats):
//! 1. **Restart** (an identity is stored): the flags' `--initial-cluster` is ignored, as etcd does; the members are
//!    the registry's at the store's applied index, and so is Raft's configuration.
//! 2. **New cluster** (`--initial-cluster-state new`, empty data dir): the ids come from the cluster token and the
//!    peer URLs, the identity is stored, then the log's first entries are written: one committed `AddNode` per
//!    initial member, in id order, at term 1, identical on every member of the bootstrap.
//! 3. **Joining** (`--initial-cluster-state existing`, empty data dir): the member asks the peers named in
//!    `--initial-cluster` for the cluster (`identity::join`), takes the id `member add` gave its peer URLs, and
//!    starts with an empty configuration; the leader's log (or snapshot) brings the configuration.
//!
//! **Crash safety**: the identity is durable before the bootstrap entries are written, and the entries (with the
//! hard state committing them) go in one durable WAL append, so a crash in between leaves an identity and an
//! empty WAL, which the next start completes. A WAL with entries but no identity is refused.

use std::collections::HashMap;

use mvcc::Store;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType};

use crate::apply::membership::{ChangeKind, MemberChange, Registry, cluster_id, member_id};
use crate::config::Config;
use crate::consensus::identity::{Identity, join};
use crate::error::Error;
use crate::proto::etcdserverpb as pb;

/// What the Raft node and the transport start from.
#[derive(Debug)]
pub struct Boot {
    pub identity: Identity,
    /// The registry as stored (empty until the first configuration entries are applied).
    pub registry: Registry,
    /// The members known now: the registry's, or the bootstrap's, or those a joining member was told of.
    pub members: Vec<pb::Member>,
    /// Raft's configuration at `conf_floor`.
    pub conf: ConfState,
    pub conf_floor: u64,
}

impl Boot {
    /// Every other member's peer address.
    pub fn peers(&self, me: u64) -> HashMap<u64, crate::consensus::conn::PeerAddr> {
        self.members
            .iter()
            .filter(|m| m.id != me)
            .filter_map(|m| {
                let url = m.peer_ur_ls.first()?;
                let url = crate::config::parse_url("peer-urls", url).ok()?;
                Some((m.id, crate::consensus::conn::PeerAddr::of(&url)))
            })
            .collect()
    }
}

/// The initial members as the flags (or discovery) name them, their ids derived with `token`.
pub fn initial_members(
    cluster: &std::collections::BTreeMap<String, Vec<crate::config::Url>>,
    token: &str,
) -> Vec<pb::Member> {
    let mut members: Vec<pb::Member> = cluster
        .iter()
        .map(|(name, urls)| {
            let peer_ur_ls: Vec<String> = urls.iter().map(|u| u.text.clone()).collect();
            pb::Member {
                id: member_id(token.as_bytes(), &peer_ur_ls),
                name: name.clone(),
                peer_ur_ls,
                client_ur_ls: Vec::new(),
                is_learner: false,
            }
        })
        .collect();
    members.sort_by_key(|m| m.id);
    members
}

/// Works out the start (see the module header), storing the identity and the bootstrap entries on a first start.
pub fn prepare(
    config: &Config,
    member_dir: &std::path::Path,
    store: &Store,
    wal: &wal::Wal,
    dialer: &crate::consensus::transport::Dialer,
) -> Result<Boot, Error> {
    let registry = Registry::load(store)?;
    let my_urls: Vec<String> = config.initial_advertise_peer_urls.iter().map(|u| u.text.clone()).collect();
    let peer_addrs: Vec<crate::consensus::conn::PeerAddr> = config
        .initial_cluster
        .iter()
        .filter(|(name, _)| **name != config.name)
        .flat_map(|(_, urls)| urls.iter().map(crate::consensus::conn::PeerAddr::of))
        .collect();
    let stored = Identity::load(member_dir)?;
    if stored.is_none() && wal.last_index().is_some() {
        return Err(Error::Refused(
            "the data directory has a WAL but no member identity (written by an older ferrokv?)".into(),
        ));
    }
    if let Some(me) = stored
        && registry.is_removed(me.member)
    {
        // As etcd: a removed member does not come back under its old id.
        return Err(Error::Refused("the member has been permanently removed from the cluster".into()));
    }
    let applied = store.applied().0;
    if config.force_new_cluster
        && let Some(me) = stored
    {
        crate::consensus::force::force_new_cluster(me.member, me.cluster, &registry, applied, wal)?;
    }
    let floor_conf = |registry: &Registry, members: Vec<pb::Member>, identity| Boot {
        identity,
        conf: registry.conf_state(),
        conf_floor: applied,
        members: if registry.is_empty() { members } else { registry.members() },
        registry: registry.clone(),
    };
    if config.initial_cluster_existing {
        let (identity, members) = match stored {
            Some(identity) if !registry.is_empty() => (identity, Vec::new()),
            // A joining member that has not yet heard from the leader asks again who the members are.
            _ => {
                let (identity, members) = join(dialer, &peer_addrs, &my_urls)?;
                if stored.is_some_and(|s| s != identity) {
                    return Err(Error::Refused("the cluster no longer knows this member by its stored id".into()));
                }
                (identity, members)
            }
        };
        if stored.is_none() {
            identity.save(member_dir)?;
        }
        return Ok(floor_conf(&registry, members, identity));
    }
    // A first start of a new cluster may find its members by discovery (`--discovery`, `--discovery-srv`).
    let discovered = match stored {
        None => crate::consensus::discovery::initial_cluster(config, |token| member_id(token.as_bytes(), &my_urls))?,
        Some(_) => None,
    };
    let members = match &discovered {
        Some((cluster, token)) => initial_members(cluster, token),
        None => initial_members(&config.initial_cluster, &config.initial_cluster_token),
    };
    let identity = match stored {
        Some(identity) => identity,
        None => {
            let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
            let me = members.iter().find(|m| m.name == config.name).map(|m| m.id).ok_or_else(|| {
                Error::Refused(format!("--initial-cluster does not name this member ({})", config.name))
            })?;
            let identity = Identity { member: me, cluster: cluster_id(&ids) };
            identity.save(member_dir)?;
            identity
        }
    };
    if wal.last_index().is_some() || applied > 0 {
        return Ok(floor_conf(&registry, members, identity));
    }
    first_entries(wal, &members)?;
    let n = members.len() as u64;
    Ok(Boot {
        identity,
        registry,
        conf: ConfState::from((members.iter().map(|m| m.id).collect::<Vec<_>>(), vec![])),
        conf_floor: n,
        members,
    })
}

/// Writes a new cluster's first entries: every initial member's `AddNode`, in id order, at term 1, with the hard
/// state committing them, in one durable append (a first start's, and a restored snapshot's).
pub fn first_entries(wal: &wal::Wal, members: &[pb::Member]) -> Result<(), Error> {
    let mut entries = Vec::with_capacity(members.len());
    for (i, m) in members.iter().enumerate() {
        let change = MemberChange { request: 0, kind: ChangeKind::Add as i32, member: Some(m.clone()) };
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChange);
        e.index = i as u64 + 1;
        e.term = 1;
        let encoding = |what: &str| {
            let what = what.to_string();
            move |source| Error::Encoding { what, source }
        };
        e.data = change.conf_change().write_to_bytes().map_err(encoding("encode a bootstrap member"))?.into();
        entries.push((e.index, e.write_to_bytes().map_err(encoding("encode a bootstrap entry"))?));
    }
    let mut records: Vec<wal::Record<'_>> = entries
        .iter()
        .map(|(i, d)| wal::Record::Entry { index: wal::RaftIndex(*i), term: wal::Term(1), data: d })
        .collect();
    let n = members.len() as u64;
    records.push(wal::Record::HardState(wal::HardState { term: wal::Term(1), vote: 0, commit: wal::RaftIndex(n) }));
    wal.append(&records).and_then(|c| c.wait())?;
    Ok(())
}
