//! The checkers on hand-made histories: ones etcd could have produced pass, and each kind of anomaly the issue
//! names fails (a stale read, a lost write, a revision going back, a duplicate revision, a wrong transaction, a
//! wrong historical read, a lease revoke that kept its keys, a value from nowhere; watch gaps, duplicates,
//! phantoms, wrong prev_kv, split transactions, early progress notifications).

use checker::history::{
    Compare, History, KeyValue, OpResult, Outcome, Refusal, Relation, Request, Response, Target, TxnOp,
};
use checker::linearize::{Verdict, check};
use checker::model::{Event, EventKind};
use checker::watch::{self, Anomaly, WatchResponse, WatchStream};

const BUDGET: u64 = 1_000_000;

fn put(key: &str, value: &str) -> Request {
    Request::Put { key: key.into(), value: value.into(), lease: 0 }
}

fn get(key: &str) -> Request {
    Request::Get { key: key.into(), revision: 0 }
}

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        create_revision: create,
        mod_revision: modified,
        version,
        lease: 0,
    }
}

fn ok(r: Response) -> Outcome {
    Outcome::Ok(r)
}

fn put_ok(revision: i64) -> Outcome {
    ok(Response::Put { revision })
}

fn got(revision: i64, kv: Option<KeyValue>) -> Outcome {
    ok(Response::Get { revision, kv })
}

/// A history of (client, call, return, request, outcome).
fn history(ops: Vec<(usize, u64, u64, Request, Outcome)>) -> History {
    let mut h = History::new();
    for (c, call, ret, req, out) in ops {
        h.push(c, call, ret, req, out);
    }
    h
}

fn linearizable(h: &History) -> bool {
    match check(h, BUDGET) {
        Verdict::Linearizable(_) => true,
        Verdict::NotLinearizable { .. } => false,
        Verdict::GaveUp { steps } => panic!("gave up after {steps} steps"),
    }
}

#[test]
fn sequential_and_concurrent_puts_and_reads_pass() {
    let h = history(vec![
        (0, 0, 10, put("a", "1"), put_ok(2)),
        (0, 11, 20, get("a"), got(2, Some(kv("a", "1", 2, 2, 1)))),
        // Two concurrent puts: either order fits, and the revisions say which.
        (0, 21, 40, put("a", "2"), put_ok(4)),
        (1, 22, 39, put("a", "3"), put_ok(3)),
        (1, 41, 50, get("a"), got(4, Some(kv("a", "2", 2, 4, 3)))),
        // A read concurrent with a put may see either side of it.
        (0, 51, 70, put("b", "x"), put_ok(5)),
        (1, 52, 60, get("b"), got(4, None)),
    ]);
    assert!(linearizable(&h));
}

#[test]
fn a_stale_read_fails() {
    // The put returned before the read began, and the read did not see it: a follower serving without ReadIndex.
    let h = history(vec![(0, 0, 10, put("a", "1"), put_ok(2)), (1, 11, 20, get("a"), got(1, None))]);
    assert!(!linearizable(&h));
}

#[test]
fn a_lost_write_fails() {
    let h = history(vec![
        (0, 0, 10, put("a", "1"), put_ok(2)),
        (0, 11, 20, put("b", "1"), put_ok(3)),
        (1, 21, 30, get("a"), got(3, None)),
    ]);
    assert!(!linearizable(&h));
}

#[test]
fn a_revision_going_back_fails() {
    let h = history(vec![
        (0, 0, 10, put("a", "1"), put_ok(2)),
        (0, 11, 20, put("a", "2"), put_ok(3)),
        (1, 21, 30, get("b"), got(3, None)),
        (1, 31, 40, get("b"), got(2, None)),
    ]);
    assert!(!linearizable(&h));
}

#[test]
fn two_writes_at_one_revision_fail() {
    let h = history(vec![(0, 0, 10, put("a", "1"), put_ok(2)), (1, 0, 10, put("b", "1"), put_ok(2))]);
    assert!(!linearizable(&h));
}

#[test]
fn a_wrong_version_or_create_revision_fails() {
    let base = vec![
        (0, 0, 10, put("a", "1"), put_ok(2)),
        (0, 11, 20, Request::Delete { key: "a".into() }, ok(Response::Delete { revision: 3, deleted: 1 })),
        (0, 21, 30, put("a", "2"), put_ok(4)),
    ];
    let mut good = base.clone();
    good.push((1, 31, 40, get("a"), got(4, Some(kv("a", "2", 4, 4, 1)))));
    assert!(linearizable(&history(good)));
    // After a delete the key is created anew: version 1, create revision 4.
    let mut bad = base.clone();
    bad.push((1, 31, 40, get("a"), got(4, Some(kv("a", "2", 2, 4, 2)))));
    assert!(!linearizable(&history(bad)));
    // A delete of a missing key changes nothing: no new revision.
    let mut noop = base;
    noop.push((1, 31, 40, Request::Delete { key: "zz".into() }, ok(Response::Delete { revision: 5, deleted: 0 })));
    assert!(!linearizable(&history(noop)));
}

#[test]
fn reads_at_past_revisions_and_compaction() {
    let base = vec![
        (0, 0, 10, put("a", "1"), put_ok(2)),
        (0, 11, 20, put("a", "2"), put_ok(3)),
        (0, 21, 30, put("b", "1"), put_ok(4)),
    ];
    let at = |rev| Request::Get { key: "a".into(), revision: rev };
    let mut good = base.clone();
    good.push((1, 31, 40, at(2), got(4, Some(kv("a", "1", 2, 2, 1)))));
    good.push((1, 41, 50, Request::Compact { revision: 3 }, ok(Response::Compact { revision: 4 })));
    good.push((1, 51, 60, at(2), Outcome::Failed(Refusal::Compacted)));
    good.push((1, 61, 70, at(3), got(4, Some(kv("a", "2", 2, 3, 2)))));
    good.push((1, 71, 80, at(9), Outcome::Failed(Refusal::FutureRevision)));
    good.push((1, 81, 90, Request::Compact { revision: 3 }, Outcome::Failed(Refusal::Compacted)));
    assert!(linearizable(&history(good)));
    let mut wrong_past = base.clone();
    wrong_past.push((1, 31, 40, at(2), got(4, Some(kv("a", "2", 2, 3, 2)))));
    assert!(!linearizable(&history(wrong_past)));
    let mut read_below = base.clone();
    read_below.push((1, 41, 50, Request::Compact { revision: 3 }, ok(Response::Compact { revision: 4 })));
    read_below.push((1, 51, 60, at(2), got(4, Some(kv("a", "1", 2, 2, 1)))));
    assert!(!linearizable(&history(read_below)));
    let mut future = base;
    future.push((1, 41, 50, Request::Compact { revision: 7 }, ok(Response::Compact { revision: 4 })));
    assert!(!linearizable(&history(future)));
}

fn cas(key: &str, expect: &str, new: &str) -> Request {
    Request::Txn {
        compares: vec![Compare { key: key.into(), relation: Relation::Equal, target: Target::Value(expect.into()) }],
        success: vec![TxnOp::Put { key: key.into(), value: new.into(), lease: 0 }],
        failure: vec![TxnOp::Get { key: key.into() }],
    }
}

#[test]
fn transactions_follow_their_compares() {
    let base = vec![(0, 0, 10, put("a", "1"), put_ok(2))];
    let mut good = base.clone();
    good.push((
        0,
        11,
        20,
        cas("a", "1", "2"),
        ok(Response::Txn { revision: 3, succeeded: true, results: vec![OpResult::Put] }),
    ));
    let failed = OpResult::Get(Some(kv("a", "2", 2, 3, 2)));
    good.push((
        1,
        21,
        30,
        cas("a", "1", "3"),
        ok(Response::Txn { revision: 3, succeeded: false, results: vec![failed] }),
    ));
    assert!(linearizable(&history(good)));
    // Two compare-and-swaps from the same value cannot both succeed.
    let mut both = base;
    both.push((
        0,
        11,
        20,
        cas("a", "1", "2"),
        ok(Response::Txn { revision: 3, succeeded: true, results: vec![OpResult::Put] }),
    ));
    both.push((
        1,
        11,
        20,
        cas("a", "1", "3"),
        ok(Response::Txn { revision: 4, succeeded: true, results: vec![OpResult::Put] }),
    ));
    assert!(!linearizable(&history(both)));
}

#[test]
fn a_lease_revoke_deletes_its_keys_in_one_revision() {
    let leased = |k: &str| Request::Put { key: k.into(), value: "v".into(), lease: 7 };
    let base = vec![
        (0, 0, 10, Request::LeaseGrant { id: 7 }, ok(Response::LeaseGrant { revision: 1 })),
        (0, 11, 20, leased("a"), put_ok(2)),
        (0, 21, 30, leased("b"), put_ok(3)),
        (0, 31, 40, Request::LeaseRevoke { id: 7 }, ok(Response::LeaseRevoke { revision: 4 })),
    ];
    let mut good = base.clone();
    good.push((1, 41, 50, get("a"), got(4, None)));
    good.push((1, 51, 60, leased("c"), Outcome::Failed(Refusal::LeaseNotFound)));
    assert!(linearizable(&history(good)));
    let mut kept = base;
    kept.push((1, 41, 50, get("a"), got(4, Some(KeyValue { lease: 7, ..kv("a", "v", 2, 2, 1) }))));
    assert!(!linearizable(&history(kept)));
}

#[test]
fn unknown_writes_may_or_may_not_have_happened_but_nothing_comes_from_nowhere() {
    let happened = history(vec![
        (0, 0, 10, put("a", "1"), Outcome::Unknown),
        (1, 20, 30, get("a"), got(2, Some(kv("a", "1", 2, 2, 1)))),
    ]);
    assert!(linearizable(&happened));
    let never = history(vec![(0, 0, 10, put("a", "1"), Outcome::Unknown), (1, 20, 30, get("a"), got(1, None))]);
    assert!(linearizable(&never));
    let nowhere = history(vec![
        (0, 0, 10, put("a", "1"), Outcome::Unknown),
        (1, 20, 30, get("a"), got(2, Some(kv("a", "2", 2, 2, 1)))),
    ]);
    assert!(!linearizable(&nowhere));
    // An unknown put cannot take effect before its call.
    let early = history(vec![
        (1, 0, 10, get("a"), got(2, Some(kv("a", "1", 2, 2, 1)))),
        (0, 20, 30, put("a", "1"), Outcome::Unknown),
    ]);
    assert!(!linearizable(&early));
}

#[test]
fn a_failed_search_names_what_it_could_not_place() {
    let h = history(vec![(0, 0, 10, put("a", "1"), put_ok(2)), (1, 11, 20, get("a"), got(1, None))]);
    match check(&h, BUDGET) {
        Verdict::NotLinearizable { placed, stuck, .. } => {
            assert_eq!(placed, vec![0]);
            assert_eq!(stuck.len(), 1, "{stuck:?}");
            assert_eq!(stuck[0].0, 1);
            assert!(stuck[0].1.contains("etcd would answer"), "{stuck:?}");
        }
        v => panic!("{v:?}"),
    }
}

/// A run of three writes (a put, a txn of two puts, a delete) and its witness's events.
fn watched() -> (History, Vec<Event>) {
    let two = Request::Txn {
        compares: vec![],
        success: vec![
            TxnOp::Put { key: "a".into(), value: "2".into(), lease: 0 },
            TxnOp::Put { key: "b".into(), value: "1".into(), lease: 0 },
        ],
        failure: vec![],
    };
    let h = history(vec![
        (0, 0, 10, put("a", "1"), put_ok(2)),
        (
            0,
            11,
            20,
            two,
            ok(Response::Txn { revision: 3, succeeded: true, results: vec![OpResult::Put, OpResult::Put] }),
        ),
        (0, 21, 30, Request::Delete { key: "a".into() }, ok(Response::Delete { revision: 4, deleted: 1 })),
    ]);
    let Verdict::Linearizable(w) = check(&h, BUDGET) else { panic!("the run is linearizable") };
    (h, watch::events_of(&w))
}

fn stream(responses: Vec<WatchResponse>) -> WatchStream {
    WatchStream { key: vec![0], range_end: vec![0], start_revision: 2, prev_kv: true, responses }
}

fn resp(revision: i64, events: Vec<Event>) -> WatchResponse {
    WatchResponse { revision, events, ..Default::default() }
}

#[test]
fn watch_streams_are_checked_against_the_witness() {
    let (_, ev) = watched();
    assert_eq!(ev.len(), 4);
    assert_eq!(ev[3].kind, EventKind::Delete);
    let progress = |r| resp(r, vec![]);
    let good = stream(vec![
        resp(2, vec![ev[0].clone()]),
        resp(3, vec![ev[1].clone(), ev[2].clone()]),
        progress(3),
        resp(4, vec![ev[3].clone()]),
    ]);
    assert_eq!(watch::check(&[good], &ev), vec![]);

    let gap = stream(vec![resp(2, vec![ev[0].clone()]), resp(4, vec![ev[3].clone()])]);
    assert!(matches!(watch::check(&[gap], &ev)[..], [Anomaly::Gap { .. }]));
    let dup = stream(vec![resp(2, vec![ev[0].clone()]), resp(2, vec![ev[0].clone()])]);
    assert!(matches!(watch::check(&[dup], &ev)[..], [Anomaly::Duplicate { .. }]));
    let split = stream(vec![resp(2, vec![ev[0].clone()]), resp(3, vec![ev[1].clone()]), resp(3, vec![ev[2].clone()])]);
    assert!(matches!(watch::check(&[split], &ev)[..], [Anomaly::Split { revision: 3, .. }]));
    let early = stream(vec![resp(2, vec![ev[0].clone()]), progress(3)]);
    assert!(matches!(watch::check(&[early], &ev)[..], [Anomaly::EarlyProgress { revision: 3, due: 3, .. }]));
    let mut wrong_prev = ev[1].clone();
    wrong_prev.prev = None;
    let wrong = stream(vec![resp(2, vec![ev[0].clone()]), resp(3, vec![wrong_prev, ev[2].clone()])]);
    assert!(matches!(watch::check(std::slice::from_ref(&wrong), &ev)[..], [Anomaly::Wrong { .. }]));
    // Once revision 3 is compacted, the state before it is gone: etcd leaves prev_kv out, and that is accepted;
    // a compaction below it excuses nothing.
    assert_eq!(watch::check_compacted(std::slice::from_ref(&wrong), &ev, 3), vec![]);
    assert!(matches!(watch::check_compacted(&[wrong], &ev, 2)[..], [Anomaly::Wrong { .. }]));
    let mut made_up = ev[0].clone();
    made_up.kv.key = b"zz".to_vec();
    let phantom = stream(vec![resp(2, vec![made_up])]);
    assert!(matches!(watch::check(&[phantom], &ev)[..], [Anomaly::Phantom { .. }]));
    let behind = stream(vec![resp(1, vec![ev[0].clone()])]);
    assert!(matches!(watch::check(&[behind], &ev)[..], [Anomaly::HeaderBehind { .. }]));
    // A watch from revision 3 on key "b" only, without prev_kv: only its own event, and no prev_kv.
    let mut b = ev[2].clone();
    b.prev = None;
    let one_key = WatchStream {
        key: b"b".to_vec(),
        range_end: vec![],
        start_revision: 3,
        prev_kv: false,
        responses: vec![resp(4, vec![b])],
    };
    assert_eq!(watch::check(&[one_key], &ev), vec![]);
}

#[test]
fn a_watch_event_resolves_an_unknown_put() {
    let (_, ev) = watched();
    let mut h =
        history(vec![(0, 0, 10, put("a", "1"), Outcome::Unknown), (0, 11, 20, put("b", "9"), Outcome::Unknown)]);
    let s = stream(vec![resp(2, vec![ev[0].clone()])]);
    let mut partial = h.clone();
    assert_eq!(watch::resolve_unknown(&mut partial, std::slice::from_ref(&s), None), (1, 0));
    assert_eq!(partial.operations[0].outcome, put_ok(2));
    assert_eq!(partial.operations[1].outcome, Outcome::Unknown);
    // A watch of every key up to revision 2 that never saw b=9: that put never happened.
    assert_eq!(watch::resolve_unknown(&mut h, &[s], Some(2)), (1, 1));
    assert_eq!(h.operations.len(), 1);
}

#[test]
fn unknown_deletes_take_the_unaccounted_delete_events_in_call_order() {
    // Two unknown deletes of "a", listed with the later call first (operations come grouped by client); the one
    // delete event belongs to the earlier call, since the later one was called after the event's revision was
    // read back.
    let put = |v: &str| put("a", v);
    let mut h = history(vec![
        (0, 0, 10, put("1"), put_ok(2)),
        (1, 40, 60, Request::Delete { key: "a".into() }, Outcome::Unknown),
        (2, 11, 20, Request::Delete { key: "a".into() }, Outcome::Unknown),
        (0, 21, 30, get("a"), got(3, None)),
        (0, 31, 39, put("2"), put_ok(4)),
    ]);
    let kv1 = kv("a", "1", 2, 2, 1);
    let deleted = Event {
        kind: EventKind::Delete,
        kv: KeyValue { key: b"a".to_vec(), mod_revision: 3, ..Default::default() },
        prev: Some(kv1.clone()),
    };
    let all = stream(vec![resp(3, vec![deleted])]);
    assert_eq!(watch::resolve_unknown(&mut h, &[all], Some(4)), (1, 1));
    assert_eq!(h.operations.len(), 4, "the later delete found nothing to delete and is dropped");
    assert_eq!(h.operations[1].call, 11, "the earlier call took revision 3");
    assert!(linearizable(&h));
}

/// A long history is checked within an ordinary thread's stack: the model's chain of past revisions (one a write)
/// is released a link at a time, not recursively (the 240-second nemesis run overflowed the stack before).
#[test]
fn a_long_history_fits_an_ordinary_stack() {
    let n = 100_000u64;
    let ops = (0..n).map(|i| (0, 2 * i, 2 * i + 1, put("k", &i.to_string()), put_ok(i as i64 + 2))).collect();
    let h = history(ops);
    let verdict =
        std::thread::Builder::new().stack_size(512 << 10).spawn(move || linearizable(&h)).unwrap().join().unwrap();
    assert!(verdict);
}

/// etcd 3.4's lost deletion at the compaction point (etcd #18089) is recognised exactly: a gap of a deletion at
/// the stream's own start revision, which a compaction asked for. The same gap with no compaction at that
/// revision is not it, nor a gap that also misses an earlier event.
#[test]
fn etcd_18089_is_recognised_and_nothing_else_is() {
    let h = history(vec![
        (0, 0, 10, put("a", "1"), put_ok(2)),
        (0, 11, 20, Request::Delete { key: "a".into() }, ok(Response::Delete { revision: 3, deleted: 1 })),
        (0, 21, 30, Request::Compact { revision: 3 }, ok(Response::Compact { revision: 3 })),
        (0, 31, 40, put("a", "2"), put_ok(4)),
    ]);
    let Verdict::Linearizable(w) = check(&h, BUDGET) else { panic!("the run is linearizable") };
    let ev = watch::events_of(&w);
    let mut last = ev[2].clone();
    last.prev = None;
    let from = |start: i64| WatchStream {
        key: b"a".to_vec(),
        range_end: vec![],
        start_revision: start,
        prev_kv: false,
        responses: vec![resp(4, vec![last.clone()])],
    };
    let compactions = watch::compactions(&h);
    assert_eq!(compactions.iter().copied().collect::<Vec<_>>(), vec![3]);
    let at_compaction = [from(3)];
    let found = watch::check(&at_compaction, &ev);
    assert!(matches!(&found[..], [Anomaly::Gap { missing, .. }] if missing == &vec![(3, b"a".to_vec())]));
    assert!(watch::is_etcd_18089(&found[0], &at_compaction, &ev, &compactions));
    // The same gap with no compaction at 3 is a plain gap.
    assert!(!watch::is_etcd_18089(&found[0], &at_compaction, &ev, &[2].into()));
    // From revision 2 the put at 2 and the deletion at 3 are both missing: not the defect.
    let earlier = [from(2)];
    let found = watch::check(&earlier, &ev);
    assert!(matches!(&found[..], [Anomaly::Gap { missing, .. }] if missing.len() == 2));
    assert!(!watch::is_etcd_18089(&found[0], &earlier, &ev, &[2, 3].into()));
}
