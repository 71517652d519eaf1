//! The linearizability search: is there one order of the operations, each placed between its call and its return,
//! in which every response is what [`crate::model`] says etcd gives?
//!
//! The algorithm is Wing and Gong's, with Lowe's memo (as porcupine runs it): the calls and returns, sorted by time,
//! form a linked list. The search takes the first call in the list whose step the model accepts, lifts it and its
//! return out of the list and starts again from the head; meeting a return means the operation it belongs to was
//! not placed in time, so the search backtracks (the last lifted call goes back, and the next call after it is
//! tried). A (placed set, state fingerprint) pair already explored is not explored again;
//! both are 64-bit hashes, so a collision (odds about n²/2⁶⁴ for n explored states) could only make the search
//! skip a state, never accept a history wrongly: a witness is a real order the model accepted step by step.
//!
//! An operation with an unknown outcome returns at the end of time. It either took effect, placed like any other,
//! or never did: then it changes nothing wherever it is placed, so it can be placed last, and the search succeeds
//! as soon as every operation left is one of unknown outcome. And one that took effect cannot have taken a revision
//! that a put (or a transaction that put, or a delete that deleted) of definite outcome was told is its own: the
//! search places an unknown write only where the revision it would take is free.
//!
//! Reads with an unknown outcome tell nothing and are left out.

use std::collections::HashSet;

use crate::history::{History, OpResult, Operation, Outcome, Request, Response, TxnOp};
use crate::model::{Event, State};

/// The verdict on a history.
#[derive(Debug)]
pub enum Verdict {
    /// A witness: the operations (indexes into the history) in a linearization, and the events each made.
    Linearizable(Vec<(usize, Vec<Event>)>),
    /// No order fits. `placed` is the longest prefix the search found, `stuck` the operations that could not be
    /// placed after it (each with why the model refused it).
    NotLinearizable { placed: Vec<usize>, stuck: Vec<(usize, String)>, revision: i64 },
    /// The search gave up after `steps` steps.
    GaveUp { steps: u64 },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable(_))
    }
}

const NIL: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    op: usize,
    call: bool,
    /// For a call, its return's node.
    other: usize,
    prev: usize,
    next: usize,
}

/// The calls and returns as a doubly linked list with a head sentinel at 0.
struct List {
    nodes: Vec<Node>,
}

impl List {
    fn new(ops: &[&Operation]) -> Self {
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call, true, i));
            events.push((op.ret.unwrap_or(u64::MAX), false, i));
        }
        // At equal times a call sorts before a return, so the two count as concurrent (the permissive reading).
        events.sort_by_key(|&(t, call, i)| (t, !call, i));
        let mut nodes = vec![Node { op: NIL, call: false, other: NIL, prev: NIL, next: NIL }];
        let mut ret_of = vec![NIL; ops.len()];
        let mut call_of = vec![NIL; ops.len()];
        for (k, &(_, call, op)) in events.iter().enumerate() {
            let idx = k + 1;
            nodes.push(Node { op, call, other: NIL, prev: idx - 1, next: NIL });
            nodes[idx - 1].next = idx;
            if call { call_of[op] = idx } else { ret_of[op] = idx }
        }
        for op in 0..ops.len() {
            nodes[call_of[op]].other = ret_of[op];
        }
        List { nodes }
    }

    fn first(&self) -> usize {
        self.nodes[0].next
    }

    fn unlink(&mut self, n: usize) {
        let Node { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, n: usize) {
        let Node { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = n;
        if next != NIL {
            self.nodes[next].prev = n;
        }
    }

    /// Takes a call and its return out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.nodes[call].other);
    }

    /// Puts back the last lifted call (lifts are undone in reverse order).
    fn unlift(&mut self, call: usize) {
        self.relink(self.nodes[call].other);
        self.relink(call);
    }
}

struct Frame {
    node: usize,
    before: State,
    events: Vec<Event>,
}

/// Decides whether `history` is linearizable, exploring at most `budget` steps. Puts of unknown outcome that a
/// read saw are resolved first ([`History::resolve_observed_puts`]).
pub fn check(history: &History, budget: u64) -> Verdict {
    let mut resolved = history.clone();
    resolved.resolve_observed_puts();
    let history = &resolved;
    let kept: Vec<(usize, &Operation)> = history
        .operations
        .iter()
        .enumerate()
        .filter(|(_, op)| op.request.writes() || op.outcome != Outcome::Unknown)
        .collect();
    let ops: Vec<&Operation> = kept.iter().map(|(_, o)| *o).collect();
    let mut list = List::new(&ops);
    // The placed set as a Zobrist hash: the XOR of a random word per placed operation (a 64-bit hash of the set,
    // updated in O(1); a memo of whole bit sets would take n/8 bytes per explored state).
    let keys: Vec<u64> = (0..ops.len() as u64).map(splitmix).collect();
    let mut placed = 0u64;
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut state = State::new(history.start_revision, &history.start);
    let mut deepest: (Vec<usize>, i64) = (Vec::new(), state.revision);
    // `deepest.0[..same]` is the stack's prefix: a new deepest copies only what differs, so keeping it costs one
    // copy per placement at most, not the whole stack per placement (quadratic on a long history).
    let mut same = 0;
    let mut node = list.first();
    let mut steps = 0u64;
    let claimed: HashSet<i64> = ops.iter().filter_map(|o| claims(o)).collect();
    // Operations of definite outcome not yet placed.
    let mut left = ops.iter().filter(|o| o.outcome != Outcome::Unknown).count();
    let definite = |op: usize| ops[op].outcome != Outcome::Unknown;
    loop {
        steps += 1;
        if steps > budget {
            return Verdict::GaveUp { steps };
        }
        if node == NIL || left == 0 {
            let witness = stack.into_iter().map(|f| (kept[list.nodes[f.node].op].0, f.events)).collect();
            return Verdict::Linearizable(witness);
        }
        let n = list.nodes[node];
        if n.call {
            let op = ops[n.op];
            // An unknown write may only take a revision no definite write was told is its own.
            let next = state.step(&op.request, &op.outcome).filter(|(s, _)| {
                op.outcome != Outcome::Unknown || s.revision == state.revision || !claimed.contains(&s.revision)
            });
            match next {
                Some((next, events)) if seen.insert((placed ^ keys[n.op], next.fingerprint())) => {
                    placed ^= keys[n.op];
                    left -= usize::from(definite(n.op));
                    let before = std::mem::replace(&mut state, next);
                    stack.push(Frame { node, before, events });
                    list.lift(node);
                    if stack.len() > deepest.0.len() {
                        deepest.0.truncate(same);
                        deepest.0.extend(stack[same..].iter().map(|f| list.nodes[f.node].op));
                        deepest.1 = state.revision;
                        same = stack.len();
                    }
                    node = list.first();
                }
                _ => node = n.next,
            }
            continue;
        }
        // A return: its operation was not placed in time. Undo the last placement and try the next call after it.
        let Some(f) = stack.pop() else {
            return not_linearizable(&ops, &kept, deepest, history);
        };
        same = same.min(stack.len());
        let op = list.nodes[f.node].op;
        list.unlift(f.node);
        placed ^= keys[op];
        left += usize::from(definite(op));
        state = f.before;
        node = list.nodes[f.node].next;
    }
}

/// The revision a write of definite outcome was told it made, where that write surely made one.
pub(crate) fn claims(op: &Operation) -> Option<i64> {
    let Outcome::Ok(r) = &op.outcome else { return None };
    match (&op.request, r) {
        (Request::Put { .. }, Response::Put { revision }) => Some(*revision),
        (Request::Delete { .. }, Response::Delete { revision, deleted }) if *deleted > 0 => Some(*revision),
        (Request::Txn { success, failure, .. }, Response::Txn { revision, succeeded, results }) => {
            let ops = if *succeeded { success } else { failure };
            let deleted = results.iter().any(|r| matches!(r, OpResult::Delete { deleted } if *deleted > 0));
            (deleted || ops.iter().any(|o| matches!(o, TxnOp::Put { .. }))).then_some(*revision)
        }
        _ => None,
    }
}

/// splitmix64: a well-mixed word per operation for the Zobrist hash.
fn splitmix(i: u64) -> u64 {
    let mut z = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The report of a failed search: replays the deepest prefix and says why each operation callable after it fails.
fn not_linearizable(
    ops: &[&Operation],
    kept: &[(usize, &Operation)],
    deepest: (Vec<usize>, i64),
    history: &History,
) -> Verdict {
    let (prefix, revision) = deepest;
    let mut state = State::new(history.start_revision, &history.start);
    for &op in &prefix {
        if let Some((s, _)) = state.step(&ops[op].request, &ops[op].outcome) {
            state = s;
        }
    }
    let done: HashSet<usize> = prefix.iter().copied().collect();
    // The operations whose calls come before the earliest return among those not placed.
    let mut stuck = Vec::new();
    let first_ret = (0..ops.len()).filter(|i| !done.contains(i)).filter_map(|i| ops[i].ret).min().unwrap_or(u64::MAX);
    for i in (0..ops.len()).filter(|i| !done.contains(i)) {
        if ops[i].call <= first_ret {
            let why = match state.attempt(&ops[i].request) {
                Ok((_, r, _)) => format!("etcd would answer {r:?}, the client was told {:?}", ops[i].outcome),
                Err(r) => format!("etcd would refuse it ({r:?}), the client was told {:?}", ops[i].outcome),
            };
            stuck.push((kept[i].0, why));
        }
    }
    Verdict::NotLinearizable { placed: prefix.iter().map(|&i| kept[i].0).collect(), stuck, revision }
}
