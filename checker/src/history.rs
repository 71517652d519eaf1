//! What clients asked and what they were told: one [`Operation`] per request, with the times of its call and its
//! return on one monotonic clock shared by every client of the run.
//!
//! **Outcomes.** A response is either definite ([`Outcome::Ok`], or [`Outcome::Failed`] with an error etcd
//! returns before changing anything: a compacted or future revision, a missing or existing lease) or
//! [`Outcome::Unknown`]: the request timed out or its connection broke, so it may have taken effect at any time
//! after its call, or never. An unknown operation has no return time.
//!
//! Keys are small byte strings; a workload keeps values unique per write (client and sequence number), which is
//! what lets [`crate::watch`] tie a watch event to the write that made it.

/// A key's state as a range returns it (etcd's `mvccpb.KeyValue`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// What a compare of a transaction looks at, with the operand.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Value(Vec<u8>),
    Version(i64),
    Create(i64),
    Mod(i64),
}

/// A compare's relation (etcd's `Compare.CompareResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    Equal,
    NotEqual,
    Less,
    Greater,
}

/// One compare of a transaction's guard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Compare {
    pub key: Vec<u8>,
    pub relation: Relation,
    pub target: Target,
}

/// One operation of a transaction's branch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxnOp {
    Put { key: Vec<u8>, value: Vec<u8>, lease: i64 },
    Get { key: Vec<u8> },
    Delete { key: Vec<u8> },
}

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    /// `lease` 0: none.
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    /// One key, at `revision` (0: the latest).
    Get {
        key: Vec<u8>,
        revision: i64,
    },
    Delete {
        key: Vec<u8>,
    },
    Txn {
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    },
    /// A grant with the id the client chose.
    LeaseGrant {
        id: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    Compact {
        revision: i64,
    },
}

impl Request {
    /// Whether the request can change the store (a read's unknown outcome tells nothing and is dropped).
    pub fn writes(&self) -> bool {
        !matches!(self, Request::Get { .. })
    }
}

/// The result of one operation of a transaction's branch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OpResult {
    Put,
    Get(Option<KeyValue>),
    Delete { deleted: i64 },
}

/// What a client was told, with the response header's revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Response {
    Put { revision: i64 },
    Get { revision: i64, kv: Option<KeyValue> },
    Delete { revision: i64, deleted: i64 },
    Txn { revision: i64, succeeded: bool, results: Vec<OpResult> },
    LeaseGrant { revision: i64 },
    LeaseRevoke { revision: i64 },
    Compact { revision: i64 },
}

/// A definite refusal: etcd checks these before it changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// "mvcc: required revision has been compacted"
    Compacted,
    /// "mvcc: required revision is a future revision"
    FutureRevision,
    /// "etcdserver: requested lease not found"
    LeaseNotFound,
    /// "etcdserver: lease already exists"
    LeaseExists,
}

impl Refusal {
    /// The refusal an etcd error message names, if it names one.
    pub fn from_message(message: &str) -> Option<Refusal> {
        [
            ("required revision has been compacted", Refusal::Compacted),
            ("required revision is a future revision", Refusal::FutureRevision),
            ("requested lease not found", Refusal::LeaseNotFound),
            ("lease already exists", Refusal::LeaseExists),
        ]
        .into_iter()
        .find(|(m, _)| message.contains(m))
        .map(|(_, r)| r)
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok(Response),
    Failed(Refusal),
    /// A timeout or a broken connection: it may have taken effect, once, at any time after its call.
    Unknown,
}

/// One request of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub client: usize,
    /// When the request was sent, in nanoseconds of the run's clock.
    pub call: u64,
    /// When its response came; `None` for an [`Outcome::Unknown`].
    pub ret: Option<u64>,
    pub request: Request,
    pub outcome: Outcome,
}

/// Every operation of a run, and the store's state when it began.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The revision of the store before the first operation (1 for a new cluster).
    pub start_revision: i64,
    /// The keys the store held then.
    pub start: Vec<KeyValue>,
    pub operations: Vec<Operation>,
}

impl History {
    /// An empty history of a new cluster (revision 1, no keys).
    pub fn new() -> Self {
        History { start_revision: 1, start: Vec::new(), operations: Vec::new() }
    }

    /// Adds an operation that returned at `ret`.
    pub fn push(&mut self, client: usize, call: u64, ret: u64, request: Request, outcome: Outcome) {
        let ret = (!matches!(outcome, Outcome::Unknown)).then_some(ret);
        self.operations.push(Operation { client, call, ret, request, outcome });
    }
}

impl History {
    /// Resolves puts of unknown outcome whose value a read of definite outcome returned: values are unique per
    /// write, so that put happened, at the key's `mod_revision` in the read, and before the earliest such read
    /// returned. Returns how many were resolved. (The search would find the same; this only spares it the
    /// guessing.)
    pub fn resolve_observed_puts(&mut self) -> usize {
        use std::collections::HashMap;
        let mut seen: HashMap<(Vec<u8>, Vec<u8>), (i64, u64)> = HashMap::new();
        let mut note = |kv: &KeyValue, ret: u64| {
            let e = seen.entry((kv.key.clone(), kv.value.clone())).or_insert((kv.mod_revision, ret));
            e.1 = e.1.min(ret);
        };
        for op in &self.operations {
            let (Outcome::Ok(r), Some(ret)) = (&op.outcome, op.ret) else { continue };
            match r {
                Response::Get { kv: Some(kv), .. } => note(kv, ret),
                Response::Txn { results, .. } => {
                    for res in results {
                        if let OpResult::Get(Some(kv)) = res {
                            note(kv, ret);
                        }
                    }
                }
                _ => {}
            }
        }
        let mut n = 0;
        for op in &mut self.operations {
            if let (Request::Put { key, value, .. }, Outcome::Unknown) = (&op.request, &op.outcome) {
                if let Some(&(revision, ret)) = seen.get(&(key.clone(), value.clone())) {
                    op.outcome = Outcome::Ok(Response::Put { revision });
                    op.ret = Some(ret.max(op.call));
                    n += 1;
                }
            }
        }
        n
    }
}
