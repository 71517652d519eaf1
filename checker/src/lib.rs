//! ferrokv's history checkers (issue 20): is what concurrent clients saw explainable by one order of their
//! requests under etcd's semantics, and did every watch stream deliver what it must?
//!
//! - [`history`]: operations with call and return times and their outcomes, definite or unknown;
//! - [`model`]: etcd's revision semantics as a state machine;
//! - [`linearize`]: the search for a linearization (Wing–Gong with Lowe's memo), with a witness or a report;
//! - [`watch`]: the watch streams checked against the witness's events.
//!
//! The crate knows nothing of how a history was recorded; `record` (the server's tests) drives a cluster with the
//! etcd-client crate and fills a [`history::History`].

pub mod history;
pub mod linearize;
pub mod model;
pub mod record;
pub mod watch;
