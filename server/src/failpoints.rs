//! The server's failpoints, named as etcd's (see the `failpoint` crate), and the list of every failpoint the
//! binary has (the WAL's and the store's too), registered at start.
//!
//! Where they fire (the Raft thread's Ready handling, `consensus::node`, in etcd's order):
//! - `raftBeforeLeaderSend`: a leader, before it sends a Ready's messages (its appends go out before they are
//!   written locally);
//! - `raftBeforeSave` / `raftAfterSave`: around writing a Ready's entries and hard state to the WAL;
//! - `raftBeforeApplySnap` / `raftAfterApplySnap`: around the state machine taking a snapshot from the leader;
//!   `raftBeforeSaveSnap` / `raftAfterSaveSnap`: around recording it in the WAL and the Raft log;
//! - `raftBeforeFollowerSend`: not a leader, before it sends what it promised once durable (votes, append
//!   responses);
//! - `beforeApplyOneConfChange`: before each committed configuration change is applied;
//! - `beforeSendWatchResponse`: before a watch stream sends a response (a `sleep` waits without holding a
//!   thread).
//!
//! A `return` does nothing at these places, as in etcd. ferrokv's own, which etcd does not have:
//! - `skipReadIndex`: `return` makes a linearizable read skip its ReadIndex round and read this member's store as
//!   it is, as a serializable read does: the deliberately broken build that issue 20's checker must catch (a
//!   follower answers reads that miss writes already acknowledged);
//! - `watchDropEvent`: `return` drops the first event of a watch response that has events (`1*return`: one event
//!   in all), the broken watch the checker must catch.

use failpoint::Failpoint;

pub static RAFT_BEFORE_LEADER_SEND: Failpoint = Failpoint::new("raftBeforeLeaderSend");
pub static RAFT_BEFORE_SAVE: Failpoint = Failpoint::new("raftBeforeSave");
pub static RAFT_AFTER_SAVE: Failpoint = Failpoint::new("raftAfterSave");
pub static RAFT_BEFORE_APPLY_SNAP: Failpoint = Failpoint::new("raftBeforeApplySnap");
pub static RAFT_AFTER_APPLY_SNAP: Failpoint = Failpoint::new("raftAfterApplySnap");
pub static RAFT_BEFORE_SAVE_SNAP: Failpoint = Failpoint::new("raftBeforeSaveSnap");
pub static RAFT_AFTER_SAVE_SNAP: Failpoint = Failpoint::new("raftAfterSaveSnap");
pub static RAFT_BEFORE_FOLLOWER_SEND: Failpoint = Failpoint::new("raftBeforeFollowerSend");
pub static BEFORE_APPLY_ONE_CONF_CHANGE: Failpoint = Failpoint::new("beforeApplyOneConfChange");
pub static BEFORE_SEND_WATCH_RESPONSE: Failpoint = Failpoint::new("beforeSendWatchResponse");
pub static SKIP_READ_INDEX: Failpoint = Failpoint::new("skipReadIndex");
pub static WATCH_DROP_EVENT: Failpoint = Failpoint::new("watchDropEvent");

const OWN: [&Failpoint; 12] = [
    &RAFT_BEFORE_LEADER_SEND,
    &RAFT_BEFORE_SAVE,
    &RAFT_AFTER_SAVE,
    &RAFT_BEFORE_APPLY_SNAP,
    &RAFT_AFTER_APPLY_SNAP,
    &RAFT_BEFORE_SAVE_SNAP,
    &RAFT_AFTER_SAVE_SNAP,
    &RAFT_BEFORE_FOLLOWER_SEND,
    &BEFORE_APPLY_ONE_CONF_CHANGE,
    &BEFORE_SEND_WATCH_RESPONSE,
    &SKIP_READ_INDEX,
    &WATCH_DROP_EVENT,
];

/// Registers every failpoint of the binary (gofail's `GET /` lists them all).
pub fn register_all() {
    failpoint::register(&OWN);
    failpoint::register(&wal::failpoints::ALL);
    failpoint::register(&mvcc::failpoints::ALL);
}
