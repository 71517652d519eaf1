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
            Error::Storage(_) => Code::Internal,
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
    }
}
