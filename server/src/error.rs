//! The server's one error type, and (in `api::status`) its one mapping to gRPC statuses with etcd's messages.

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: request timed out")]
    Timeout,
    /// The Raft thread's queue is full, or applying lags committing by too much: etcd's back-pressure answer.
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: given member URLs are invalid")]
    BadMemberUrls,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// The write would grow the store past `--quota-backend-bytes`, or the NOSPACE alarm is raised.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The CORRUPT alarm is raised: no write is applied until it is disarmed.
    #[error("etcdserver: corrupt cluster")]
    CorruptCluster,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// The write-ahead log failed (a failed write or fsync poisons it: the node stops).
    #[error("wal: {0}")]
    Wal(#[from] wal::Error),
    /// The mvcc store failed (I/O, corruption, a full disk), other than the request errors mapped above.
    #[error("store: {0}")]
    Store(#[source] mvcc::Error),
    /// Raft refused a step of ours.
    #[error("raft: {what}: {source}")]
    Raft {
        what: String,
        #[source]
        source: raft::Error,
    },
    /// A file or socket operation of the server's own (identity file, snapshot staging, listeners, threads).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A Raft entry or message that does not encode or decode.
    #[error("{what}: {source}")]
    Encoding {
        what: String,
        #[source]
        source: protobuf::ProtobufError,
    },
    /// Data on disk or on the wire that breaks the server's own format (a damaged identity file, an undecodable
    /// configuration change, a snapshot stream that ends early).
    #[error("{0}")]
    Corrupt(String),
    /// The member cannot start or run as configured (removed from the cluster, unknown to it, not named by
    /// --initial-cluster, ...): etcd's messages where etcd has one.
    #[error("{0}")]
    Refused(String),
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.to_string();
        move |source| Error::Io { what, source }
    }

    /// A Raft error with what was being done.
    pub fn raft(what: impl std::fmt::Display) -> impl FnOnce(raft::Error) -> Error {
        let what = what.to_string();
        move |source| Error::Raft { what, source }
    }
}

impl From<mvcc::Error> for Error {
    fn from(e: mvcc::Error) -> Self {
        match e {
            mvcc::Error::Compacted => Error::Compacted,
            mvcc::Error::FutureRev => Error::FutureRev,
            mvcc::Error::KeyNotFound => Error::KeyNotFound,
            other => Error::Store(other),
        }
    }
}
