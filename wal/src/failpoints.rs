//! The WAL's failpoints, named as etcd's (see the `failpoint` crate): around the fdatasync of every batch, on
//! whichever thread writes it, for both engines. With io_uring a batch's writes and its fdatasync are submitted
//! linked, so "before" is before the submission and "after" is when the fdatasync's completion is reaped. A
//! `return` does nothing here, as in etcd.

use failpoint::Failpoint;

/// Before a batch's fdatasync (etcd: before `fileutil.Fdatasync` in the WAL's sync).
pub static WAL_BEFORE_FDATASYNC: Failpoint = Failpoint::new("walBeforeFdatasync");
/// After a batch's fdatasync, before its appenders are told.
pub static WAL_AFTER_FDATASYNC: Failpoint = Failpoint::new("walAfterFdatasync");

/// ferrokv's own, a deliberately broken build for the power-loss tests: `return` makes a batch skip its
/// fdatasync (it is still acknowledged), which crashfs's power-loss replay must catch.
pub static WAL_SKIP_FDATASYNC: Failpoint = Failpoint::new("walSkipFdatasync");

/// Every failpoint of this crate, for the binary to register.
pub static ALL: [&Failpoint; 3] = [&WAL_BEFORE_FDATASYNC, &WAL_AFTER_FDATASYNC, &WAL_SKIP_FDATASYNC];
