//! What a Raft entry carries: one client request, with the id its proposer waits on. Encoded with prost, reusing
//! etcd's request messages, so an entry is self-describing across versions of ferrokv.

use crate::proto::etcdserverpb::{
    self as pb, AlarmRequest, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, Member,
    PutRequest, TxnRequest,
};

/// A proposal's id: which waiter the apply loop answers. Unique per member (high bits: member, low: counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A request as it travels through the Raft log.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InternalRequest {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(oneof = "Op", tags = "2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub op: Option<Op>,
    /// Who made it (see [`Caller`]).
    #[prost(string, tag = "20")]
    pub user: String,
    #[prost(uint64, tag = "21")]
    pub auth_revision: u64,
    #[prost(bool, tag = "22")]
    pub internal: bool,
}

/// Who makes a request, as the log carries it and the permission checks read it (`apply::perms`): the user its
/// token speaks for and the auth revision the token was checked at (both empty for no token), or the member
/// itself (lease expiry, alarms, publishes, auto compaction), which may do anything, as etcd's requests made
/// with root's credentials may.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub revision: u64,
    pub internal: bool,
}

impl Caller {
    /// The member itself.
    pub fn member() -> Caller {
        Caller { internal: true, ..Caller::default() }
    }
}

impl InternalRequest {
    /// Who made the request.
    pub fn caller(&self) -> Caller {
        Caller { user: self.user.clone(), revision: self.auth_revision, internal: self.internal }
    }
}

/// The write operations that go through Raft.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Op {
    #[prost(message, tag = "2")]
    Put(PutRequest),
    #[prost(message, tag = "3")]
    DeleteRange(DeleteRangeRequest),
    #[prost(message, tag = "4")]
    Txn(TxnRequest),
    #[prost(message, tag = "5")]
    Compaction(CompactionRequest),
    /// The proposer has chosen the ID (so every member grants the same one).
    #[prost(message, tag = "6")]
    LeaseGrant(LeaseGrantRequest),
    #[prost(message, tag = "7")]
    LeaseRevoke(LeaseRevokeRequest),
    /// A member's name and client URLs, published by the member itself once it runs (see `membership`).
    #[prost(message, tag = "8")]
    Publish(Member),
    /// Lists, raises or clears an alarm (see `apply::alarm`).
    #[prost(message, tag = "9")]
    Alarm(AlarmRequest),
    /// A user or role change or query (see `apply::auth`).
    #[prost(message, tag = "10")]
    Auth(AuthRequest),
}

impl Op {
    /// The request's kind, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Put(_) => "put",
            Op::DeleteRange(_) => "delete range",
            Op::Txn(_) => "txn",
            Op::Compaction(_) => "compaction",
            Op::LeaseGrant(_) => "lease grant",
            Op::LeaseRevoke(_) => "lease revoke",
            Op::Publish(_) => "publish",
            Op::Alarm(_) => "alarm",
            Op::Auth(_) => "auth",
        }
    }
}

/// An Auth service request as it travels through the log: etcd's own request messages. A password never travels:
/// the proposer hashes it (bcrypt) into `hashedPassword` and clears `password`, so every member stores the same
/// hash and the WAL holds no password.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthRequest {
    #[prost(oneof = "AuthOp", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17")]
    pub op: Option<AuthOp>,
}

/// The Auth service's requests that go through Raft (in etcd 3.4 every one does, reads too, so they are
/// linearizable).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum AuthOp {
    #[prost(message, tag = "1")]
    Status(pb::AuthStatusRequest),
    #[prost(message, tag = "2")]
    UserAdd(pb::AuthUserAddRequest),
    #[prost(message, tag = "3")]
    UserGet(pb::AuthUserGetRequest),
    #[prost(message, tag = "4")]
    UserList(pb::AuthUserListRequest),
    #[prost(message, tag = "5")]
    UserDelete(pb::AuthUserDeleteRequest),
    #[prost(message, tag = "6")]
    UserChangePassword(pb::AuthUserChangePasswordRequest),
    #[prost(message, tag = "7")]
    UserGrantRole(pb::AuthUserGrantRoleRequest),
    #[prost(message, tag = "8")]
    UserRevokeRole(pb::AuthUserRevokeRoleRequest),
    #[prost(message, tag = "9")]
    RoleAdd(pb::AuthRoleAddRequest),
    #[prost(message, tag = "10")]
    RoleGet(pb::AuthRoleGetRequest),
    #[prost(message, tag = "11")]
    RoleList(pb::AuthRoleListRequest),
    #[prost(message, tag = "12")]
    RoleDelete(pb::AuthRoleDeleteRequest),
    #[prost(message, tag = "13")]
    RoleGrantPermission(pb::AuthRoleGrantPermissionRequest),
    #[prost(message, tag = "14")]
    RoleRevokePermission(pb::AuthRoleRevokePermissionRequest),
    #[prost(message, tag = "15")]
    Enable(pb::AuthEnableRequest),
    #[prost(message, tag = "16")]
    Disable(pb::AuthDisableRequest),
    /// A token for a user whose password the proposer checked.
    #[prost(message, tag = "17")]
    Authenticate(Authenticate),
}

/// etcd's `InternalAuthenticateRequest`: the user, and the random prefix of the token every member issues (the
/// entry's index completes it). The password was checked by the proposer and is not carried.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Authenticate {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub simple_token: String,
}

/// The entry that carries `op` for request `id` made by `caller`: exactly the bytes of the `InternalRequest`,
/// without taking the request from its caller.
pub fn encode(id: RequestId, caller: &Caller, op: &Op) -> Vec<u8> {
    let mut buf = Vec::with_capacity(op.encoded_len() + 11 + caller.user.len() + 16);
    if id.0 != 0 {
        prost::encoding::uint64::encode(1, &id.0, &mut buf);
    }
    op.encode(&mut buf);
    if !caller.user.is_empty() {
        prost::encoding::string::encode(20, &caller.user, &mut buf);
    }
    if caller.revision != 0 {
        prost::encoding::uint64::encode(21, &caller.revision, &mut buf);
    }
    if caller.internal {
        prost::encoding::bool::encode(22, &caller.internal, &mut buf);
    }
    buf
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn round_trip() {
        let r = InternalRequest {
            id: 42,
            op: Some(Op::Put(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() })),
            user: "alice".into(),
            auth_revision: 7,
            internal: false,
        };
        assert_eq!(InternalRequest::decode(r.encode_to_vec().as_slice()).unwrap(), r);
    }

    #[test]
    fn encoding_by_reference_is_the_message_encoding() {
        let callers =
            [Caller::default(), Caller::member(), Caller { user: "alice".into(), revision: 3, internal: false }];
        for (id, caller) in [0, 1, u64::MAX].into_iter().zip(callers) {
            let op = Op::Txn(TxnRequest { success: vec![Default::default()], ..Default::default() });
            let r = InternalRequest {
                id,
                op: Some(op.clone()),
                user: caller.user.clone(),
                auth_revision: caller.revision,
                internal: caller.internal,
            };
            assert_eq!(encode(RequestId(id), &caller, &op), r.encode_to_vec());
        }
    }
}
