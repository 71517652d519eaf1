//! The checker on histories made by simulated concurrent clients against the model itself: every one is
//! linearizable by construction (each operation takes effect at one instant between its call and its return), so
//! each must pass, within a step budget that a recorded run of the same size fits in; and the same histories with
//! one write's revision changed to another write's must fail.

use checker::history::{Compare, History, Outcome, Relation, Request, Response, Target, TxnOp};
use checker::linearize::{Verdict, check};
use checker::model::State;
use checker::watch::{self, WatchResponse, WatchStream};

/// xorshift64*: a small deterministic generator, so a failing seed reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn request(rng: &mut Rng, state: &State, serial: &mut u64) -> Request {
    let key = |rng: &mut Rng| format!("k{}", rng.below(4)).into_bytes();
    *serial += 1;
    let value = format!("v{serial}").into_bytes();
    match rng.below(20) {
        0..=5 => {
            Request::Put { key: key(rng), value, lease: if rng.below(4) == 0 { 1 + rng.below(2) as i64 } else { 0 } }
        }
        6..=9 => Request::Get { key: key(rng), revision: 0 },
        10..=11 => {
            let back = rng.below(5) as i64;
            Request::Get { key: key(rng), revision: (state.revision - back).max(1) }
        }
        12..=13 => Request::Delete { key: key(rng) },
        14..=16 => {
            let k = key(rng);
            let version = state.get(&k).map_or(0, |kv| kv.version);
            Request::Txn {
                compares: vec![Compare { key: k.clone(), relation: Relation::Equal, target: Target::Version(version) }],
                success: vec![TxnOp::Put { key: k.clone(), value, lease: 0 }, TxnOp::Get { key: key(rng) }],
                failure: vec![TxnOp::Get { key: k }],
            }
        }
        17 => Request::LeaseGrant { id: 1 + rng.below(2) as i64 },
        18 => Request::LeaseRevoke { id: 1 + rng.below(2) as i64 },
        _ => Request::Compact { revision: (state.revision - rng.below(6) as i64).max(1) },
    }
}

struct InFlight {
    call: u64,
    request: Request,
    outcome: Option<Outcome>,
}

/// `n` operations of `clients` clients; about one write in `unknown_rate` ends unknown (half of those never take
/// effect); with the events of every write, as a watch of every key from the start delivers them.
fn simulate(seed: u64, clients: usize, n: usize, unknown_rate: u64) -> (History, WatchStream) {
    let mut rng = Rng(seed);
    let mut state = State::new(1, &[]);
    let mut h = History::new();
    let mut all = WatchStream { key: vec![0], range_end: vec![0], start_revision: 2, prev_kv: true, responses: vec![] };
    let mut observe = |s: &State, events: Vec<checker::model::Event>| {
        if !events.is_empty() {
            all.responses.push(WatchResponse { revision: s.revision, events, ..Default::default() });
        }
    };
    let mut flight: Vec<Option<InFlight>> = (0..clients).map(|_| None).collect();
    let mut serial = 0;
    let mut t = 0;
    while h.operations.len() < n {
        t += 1;
        let c = rng.below(clients as u64) as usize;
        match &mut flight[c] {
            slot @ None => {
                *slot = Some(InFlight { call: t, request: request(&mut rng, &state, &mut serial), outcome: None });
            }
            Some(f)
                if f.outcome.is_none() && unknown_rate > 0 && rng.below(unknown_rate) == 0 && f.request.writes() =>
            {
                // Lost in transit: returns unknown, and takes effect (now) or never.
                if rng.below(2) == 0 {
                    if let Ok((s, _, events)) = state.attempt(&f.request) {
                        observe(&s, events);
                        state = s;
                    }
                }
                let f = flight[c].take().unwrap();
                h.push(c, f.call, t, f.request, Outcome::Unknown);
            }
            Some(f) if f.outcome.is_none() => {
                f.outcome = Some(match state.attempt(&f.request) {
                    Ok((s, r, events)) => {
                        observe(&s, events);
                        state = s;
                        Outcome::Ok(r)
                    }
                    Err(refusal) => Outcome::Failed(refusal),
                });
            }
            Some(_) => {
                let f = flight[c].take().unwrap();
                h.push(c, f.call, t, f.request, f.outcome.unwrap());
            }
        }
    }
    // Requests still in flight: those that took effect return now; the others are never sent.
    for (c, f) in flight.into_iter().enumerate() {
        if let Some(InFlight { call, request, outcome: Some(outcome) }) = f {
            h.push(c, call, t + 1, request, outcome);
        }
    }
    (h, all)
}

#[test]
fn simulated_histories_are_linearizable() {
    for seed in 1..=20u64 {
        // One write in 30 of unknown outcome, resolved by the watch of every key as a recorded run resolves them.
        let (mut h, all) = simulate(seed * 7919, 8, 2_000, 30);
        let (resolved, dropped) = watch::resolve_unknown(&mut h, std::slice::from_ref(&all), Some(i64::MAX));
        assert!(resolved + dropped > 0, "seed {seed}: no unknown write to resolve");
        match check(&h, 5_000_000) {
            Verdict::Linearizable(w) => {
                let anomalies = watch::check(std::slice::from_ref(&all), &watch::events_of(&w));
                assert_eq!(anomalies, vec![], "seed {seed}");
            }
            v => panic!("seed {seed}: {v:?}"),
        }
        // Unresolved unknown writes, fewer: the search guesses where each took effect, if it did.
        let (h, _) = simulate(seed * 7919, 8, 1_000, 300);
        assert!(check(&h, 5_000_000).is_linearizable(), "seed {seed}, without the watch");
    }
}

#[test]
fn a_duplicated_revision_in_a_simulated_history_fails() {
    for seed in 1..=20u64 {
        let (mut h, _) = simulate(seed * 104_729, 8, 500, 0);
        let puts: Vec<(usize, i64)> = h
            .operations
            .iter()
            .enumerate()
            .filter_map(|(i, op)| match op.outcome {
                Outcome::Ok(Response::Put { revision }) => Some((i, revision)),
                _ => None,
            })
            .collect();
        let ((a, _), (_, rb)) = (puts[puts.len() / 3], puts[2 * puts.len() / 3]);
        h.operations[a].outcome = Outcome::Ok(Response::Put { revision: rb });
        let v = check(&h, 5_000_000);
        assert!(matches!(v, Verdict::NotLinearizable { .. }), "seed {seed}: {v:?}");
    }
}
