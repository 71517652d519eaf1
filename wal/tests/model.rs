//! Property test: random sequences of append / overwrite / truncate / snapshot / hard state / metadata / release /
//! reopen, run against the WAL with each engine and against a plain in-memory model, compared after every step
//! that can be observed (reopen and replay).

mod common;

use common::small;
use proptest::prelude::*;
use wal::{EngineKind, Entry, HardState, RaftIndex, Record, SnapshotMarker, Term, Wal};

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` entries with payloads of the given sizes.
    Append(Vec<u16>),
    /// Overwrite from `back` entries before the end (a new leader's conflicting entries).
    Overwrite {
        back: u8,
        sizes: Vec<u16>,
    },
    Truncate {
        back: u8,
    },
    /// Snapshot at `back` before the end, or `ahead` past it when `back == 0`.
    Snapshot {
        back: u8,
        ahead: u8,
    },
    HardState(u64),
    Metadata(Vec<u8>),
    Release,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let sizes = prop::collection::vec(0u16..3000, 1..12);
    prop_oneof![
        5 => sizes.clone().prop_map(Op::Append),
        1 => (1u8..10, sizes).prop_map(|(back, sizes)| Op::Overwrite { back, sizes }),
        1 => (0u8..10).prop_map(|back| Op::Truncate { back }),
        1 => (0u8..10, 0u8..20).prop_map(|(back, ahead)| Op::Snapshot { back, ahead }),
        1 => any::<u64>().prop_map(Op::HardState),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Op::Metadata),
        1 => Just(Op::Release),
        1 => Just(Op::Reopen),
    ]
}

/// The model: what replay must return.
#[derive(Debug, Default)]
struct Model {
    entries: Vec<Entry>,
    next: u64,
    snapshot: Option<SnapshotMarker>,
    hard_state: Option<HardState>,
    metadata: Option<Vec<u8>>,
    term: u64,
    /// Whether any entry or snapshot marker was appended: before that the log has no position to truncate at.
    started: bool,
}

impl Model {
    fn floor(&self) -> u64 {
        self.snapshot.map_or(0, |s| s.index.0)
    }
}

fn data(index: u64, term: u64, size: u16) -> Vec<u8> {
    (0..size as u64).map(|b| (b * 31 + index * 7 + term) as u8).collect()
}

fn check(wal: &Wal, m: &Model) {
    let from = RaftIndex(m.floor() + 1);
    let r = wal.replay(from).unwrap();
    let want: Vec<&Entry> = m.entries.iter().filter(|e| e.index >= from).collect();
    assert_eq!(r.entries.iter().collect::<Vec<_>>(), want);
    assert_eq!(r.snapshot, m.snapshot);
    assert_eq!(r.hard_state, m.hard_state);
    assert_eq!(r.metadata, m.metadata);
}

fn run(engine: EngineKind, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), small(engine)).unwrap();
    let mut m = Model { next: 1, term: 1, ..Model::default() };
    let append = |wal: &Wal, m: &mut Model, start: u64, sizes: &[u16]| {
        let payloads: Vec<Vec<u8>> =
            sizes.iter().enumerate().map(|(k, &s)| data(start + k as u64, m.term, s)).collect();
        let records: Vec<Record<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(k, d)| Record::Entry { index: RaftIndex(start + k as u64), term: Term(m.term), data: d })
            .collect();
        wal.append(&records).unwrap().wait().unwrap();
        m.entries.retain(|e| e.index.0 < start);
        for (k, d) in payloads.into_iter().enumerate() {
            m.entries.push(Entry { index: RaftIndex(start + k as u64), term: Term(m.term), data: d });
        }
        m.next = start + sizes.len() as u64;
        m.started = true;
    };
    for op in ops {
        match op {
            Op::Append(sizes) => {
                let start = m.next;
                append(&wal, &mut m, start, &sizes);
            }
            Op::Overwrite { back, sizes } => {
                let start = m.next.saturating_sub(u64::from(back)).max(m.floor() + 1);
                m.term += 1;
                append(&wal, &mut m, start, &sizes);
            }
            Op::Truncate { back } => {
                let from = m.next.saturating_sub(u64::from(back));
                if from > m.floor() && m.started {
                    wal.truncate(RaftIndex(from)).unwrap().wait().unwrap();
                    m.entries.retain(|e| e.index.0 < from);
                    m.next = from;
                } else {
                    assert!(wal.truncate(RaftIndex(from)).is_err(), "truncating into the snapshot is refused");
                }
            }
            Op::Snapshot { back, ahead } => {
                let last = m.next - 1;
                let index = if back == 0 { last + u64::from(ahead) } else { last.saturating_sub(u64::from(back)) };
                let index = index.max(m.floor());
                let s = SnapshotMarker { index: RaftIndex(index), term: Term(m.term) };
                wal.append(&[Record::Snapshot(s)]).unwrap().wait().unwrap();
                if index + 1 >= m.next {
                    m.entries.clear();
                    m.next = index + 1;
                }
                m.snapshot = Some(s);
                m.started = true;
            }
            Op::HardState(v) => {
                let h = HardState { term: Term(m.term), vote: v, commit: RaftIndex(m.next - 1) };
                wal.append(&[Record::HardState(h)]).unwrap().wait().unwrap();
                m.hard_state = Some(h);
            }
            Op::Metadata(b) => {
                wal.append(&[Record::Metadata(&b)]).unwrap().wait().unwrap();
                m.metadata = Some(b);
            }
            Op::Release => {
                wal.release_to(RaftIndex(m.floor() + 1)).unwrap();
                check(&wal, &m);
            }
            Op::Reopen => {
                drop(wal);
                wal = Wal::open(dir.path(), small(engine)).unwrap();
                assert_eq!(wal.last_index().map_or(m.next - 1, |i| i.0), m.next - 1);
                check(&wal, &m);
            }
        }
    }
    drop(wal);
    let wal = Wal::open(dir.path(), small(engine)).unwrap();
    check(&wal, &m);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn sync_engine_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(EngineKind::Sync, ops);
    }

    #[test]
    fn uring_engine_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(EngineKind::Uring, ops);
    }
}
