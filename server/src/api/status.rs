//! The only conversion from the server's errors to gRPC statuses: codes and messages are etcd's, which clients
//! (etcdctl, client libraries) match on.

use tonic::{Code, Status};

use crate::error::Error;

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let code = match &e {
            Error::RequestTooLarge
            | Error::EmptyKey
            | Error::DuplicateKey
            | Error::TooManyOps
            | Error::ValueProvided
            | Error::LeaseProvided => Code::InvalidArgument,
            Error::Compacted | Error::FutureRev => Code::OutOfRange,
            Error::KeyNotFound => Code::InvalidArgument,
            Error::Timeout | Error::Stopped | Error::NoLeader => Code::Unavailable,
            Error::TooManyRequests | Error::NoSpace => Code::ResourceExhausted,
            Error::CorruptCluster => Code::DataLoss,
            Error::LeaseNotFound => Code::NotFound,
            Error::LeaseExists
            | Error::NotLeader
            | Error::BadLeaderTransferee
            | Error::PeerUrlExists
            | Error::NotEnoughStartedMembers
            | Error::MemberNotLearner
            | Error::LearnerNotReady
            | Error::TooManyLearners => Code::FailedPrecondition,
            Error::BadMemberUrls => Code::InvalidArgument,
            Error::MemberNotFound => Code::NotFound,
            Error::Unhealthy => Code::Unavailable,
            Error::LeaderTransferTimeout => Code::Unavailable,
            Error::LeaseTtlTooLarge => Code::OutOfRange,
            Error::RootUserNotExist
            | Error::RootRoleNotExist
            | Error::UserAlreadyExist
            | Error::UserNotFound
            | Error::RoleAlreadyExist
            | Error::RoleNotFound
            | Error::RoleNotGranted
            | Error::PermissionNotGranted
            | Error::AuthNotEnabled => Code::FailedPrecondition,
            Error::UserEmpty
            | Error::RoleEmpty
            | Error::AuthFailed
            | Error::InvalidAuthMgmt
            | Error::AuthOldRevision => Code::InvalidArgument,
            Error::PermissionDenied => Code::PermissionDenied,
            Error::InvalidAuthToken => Code::Unauthenticated,
            Error::Wal(_)
            | Error::Store(_)
            | Error::Raft { .. }
            | Error::Io { .. }
            | Error::Encoding { .. }
            | Error::Corrupt(_)
            | Error::Refused(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_codes_and_messages() {
        let s: Status = Error::Compacted.into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted")
        );
        let s: Status = Error::FutureRev.into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision")
        );
        let s: Status = Error::RequestTooLarge.into();
        assert_eq!((s.code(), s.message()), (Code::InvalidArgument, "etcdserver: request is too large"));
        let s: Status = Error::LeaseNotFound.into();
        assert_eq!((s.code(), s.message()), (Code::NotFound, "etcdserver: requested lease not found"));
        let s: Status = Error::BadLeaderTransferee.into();
        assert_eq!((s.code(), s.message()), (Code::FailedPrecondition, "etcdserver: bad leader transferee"));
        let s: Status = Error::NotLeader.into();
        assert_eq!((s.code(), s.message()), (Code::FailedPrecondition, "etcdserver: not leader"));
        let s: Status = Error::NotEnoughStartedMembers.into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members")
        );
        let s: Status = Error::Unhealthy.into();
        assert_eq!((s.code(), s.message()), (Code::Unavailable, "etcdserver: unhealthy cluster"));
        let s: Status = Error::MemberNotFound.into();
        assert_eq!((s.code(), s.message()), (Code::NotFound, "etcdserver: member not found"));
        let s: Status = Error::EmptyKey.into();
        assert_eq!((s.code(), s.message()), (Code::InvalidArgument, "etcdserver: key is not provided"));
        let s: Status = Error::UserNotFound.into();
        assert_eq!((s.code(), s.message()), (Code::FailedPrecondition, "etcdserver: user name not found"));
        let s: Status = Error::RoleEmpty.into();
        assert_eq!((s.code(), s.message()), (Code::InvalidArgument, "etcdserver: role name is empty"));
        let s: Status = Error::PermissionDenied.into();
        assert_eq!((s.code(), s.message()), (Code::PermissionDenied, "etcdserver: permission denied"));
        let s: Status = Error::InvalidAuthToken.into();
        assert_eq!((s.code(), s.message()), (Code::Unauthenticated, "etcdserver: invalid auth token"));
    }

    /// Storage failures keep their typed cause: a poisoned WAL, a corrupt page and a full disk stay apart for the
    /// code that maps them, and all are Internal to clients.
    #[test]
    fn storage_errors_keep_their_cause() {
        use std::error::Error as _;
        let wal: Error = wal::Error::Poisoned("fdatasync failed".into()).into();
        assert!(matches!(&wal, Error::Wal(wal::Error::Poisoned(_))));
        let page: Error =
            mvcc::Error::Corrupted { page: mvcc::PageId(7), what: "checksum".into(), path: "db".into() }.into();
        assert!(matches!(&page, Error::Store(mvcc::Error::Corrupted { .. })));
        let full = Error::io("stage snapshot")(std::io::Error::from_raw_os_error(libc::ENOSPC));
        let io = full.source().and_then(|s| s.downcast_ref::<std::io::Error>()).and_then(|e| e.raw_os_error());
        assert_eq!(io, Some(libc::ENOSPC));
        for e in [wal, page, full] {
            assert!(e.source().is_some(), "{e}");
            assert_eq!(Status::from(e).code(), Code::Internal);
        }
        let s = Status::from(Error::TooManyRequests);
        assert_eq!((s.code(), s.message()), (Code::ResourceExhausted, "etcdserver: too many requests"));
        let compacted: Error = mvcc::Error::Compacted.into();
        assert_eq!(Status::from(compacted).code(), Code::OutOfRange, "request errors still map to etcd's codes");
    }
}
