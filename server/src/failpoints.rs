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
//! A `return` does nothing at these places, as in etcd.

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

const OWN: [&Failpoint; 10] = [
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
];

/// Registers every failpoint of the binary (gofail's `GET /` lists them all).
pub fn register_all() {
    failpoint::register(&OWN);
    failpoint::register(&wal::failpoints::ALL);
    failpoint::register(&mvcc::failpoints::ALL);
}
