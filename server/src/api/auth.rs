//! etcd's Auth service: users, roles and permissions through Raft (`apply::auth` applies them with etcd's rules),
//! every request, reads included, in log order as etcd 3.4 does, carrying its caller (the apply loop checks it:
//! `apply::perms`). A password is hashed here, with bcrypt at `--bcrypt-cost`, on a blocking thread, and only the
//! hash enters the log.
//!
//! **Authenticate** (etcd's): after a linearizable read, the password is checked here against the user's hash; an
//! unknown user, or one without a password, costs the same bcrypt work against a stand-in hash, so the time taken
//! does not tell which users exist. Then an Authenticate entry carries the user and a random token prefix; every
//! member issues the same token when it applies it. If the auth revision moved meanwhile, the check is done again.
//!
//! Also here: [`caller`], who a request comes from, by its `token` metadata.

use tonic::{Request, Response, Status};

use crate::api::convert::Headers;
use crate::apply::Outcome;
use crate::apply::auth::Answer;
use crate::error::Error;
use crate::proposals::Proposer;
use crate::proto::etcdserverpb::{self as pb, auth_server::Auth};
use crate::request::{AuthOp, AuthRequest, Authenticate, Caller, Op};

/// A request's token: the `token` metadata etcd's clients send (or `authorization`, as the HTTP gateway does).
pub fn token(md: &tonic::metadata::MetadataMap) -> Option<&str> {
    md.get("token").or_else(|| md.get("authorization")).and_then(|v| v.to_str().ok())
}

/// The user the connection's client certificate names (never for a call the HTTP gateway relays: its certificate
/// is the gateway's, as etcd rules).
pub fn cert_user<'a>(md: &tonic::metadata::MetadataMap, extensions: &'a tonic::Extensions) -> Option<&'a str> {
    let relayed = md.get("grpcgateway-accept").is_some();
    extensions.get::<crate::api::client_conn::ClientInfo>().and_then(|c| c.common_name.as_deref()).filter(|_| !relayed)
}

/// Who a request comes from (see `perms::Auth::caller`), by its token and its client certificate.
pub fn caller_of(
    auth: &crate::apply::perms::Auth,
    md: &tonic::metadata::MetadataMap,
    extensions: &tonic::Extensions,
) -> Result<Caller, Error> {
    auth.caller(token(md), cert_user(md, extensions))
}

/// Who sent `request`.
pub fn caller<T>(auth: &crate::apply::perms::Auth, request: &Request<T>) -> Result<Caller, Error> {
    caller_of(auth, request.metadata(), request.extensions())
}

/// The hash an unknown user's password is compared with: a well-formed bcrypt hash at `cost` (so checking a
/// password against it does the whole work of that cost) that no password matches: its 23-byte digest is all
/// zero bits, which finding a match for would break bcrypt. Made by hand, not by hashing, so that the first
/// unknown user costs no more than the next.
fn stand_in(cost: u32) -> String {
    format!("$2b${cost:02}${}", ".".repeat(22 + 31))
}

/// The letters of a token's random part.
const TOKEN_LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The Auth service.
#[derive(Debug, Clone)]
pub struct AuthService {
    pub proposer: Proposer,
    pub headers: Headers,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    pub auth: crate::apply::perms::Auth,
    /// Authenticate reads linearizably first, as etcd does.
    pub reads: crate::read::ReadPath,
}

type Answered = (Option<pb::ResponseHeader>, Answer);

impl AuthService {
    /// Proposes `op` for the sender of `request` and returns its header and answer.
    async fn propose<R>(&self, request: &Request<R>, op: AuthOp) -> Result<Answered, Status> {
        let caller = caller(&self.auth, request)?;
        let r = self.proposer.propose(&caller, &Op::Auth(AuthRequest { op: Some(op) })).await?;
        match r.outcome {
            Outcome::Auth(answer) => Ok((self.headers.at(r.revision, r.term), answer)),
            _ => Err(Error::Corrupt("mismatched apply result".into()).into()),
        }
    }

    /// `password` hashed with bcrypt at the configured cost, off the async threads.
    async fn hash(&self, password: String) -> Result<String, Status> {
        let cost = self.bcrypt_cost;
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|e| Status::internal(format!("bcrypt: {e}")))?
            .map_err(|e| Status::internal(format!("bcrypt: {e}")))
    }

    /// Proposes a request whose response carries only a header.
    async fn done<T, R>(
        &self,
        request: &Request<R>,
        op: AuthOp,
        make: impl FnOnce(Option<pb::ResponseHeader>) -> T,
    ) -> Result<Response<T>, Status> {
        let (header, _) = self.propose(request, op).await?;
        Ok(Response::new(make(header)))
    }

    /// Checks `password` for `user` (see the module header); returns the auth revision it was checked at.
    async fn check_password(&self, user: &str, password: String) -> Result<u64, Status> {
        let state = self.auth.current();
        if !state.enabled() {
            return Err(Error::AuthNotEnabled.into());
        }
        let hash = state.hash(user).map(str::to_string);
        let known = hash.is_some();
        // A stand-in hash of the same cost for an unknown user, so that both take one comparison's time.
        let hash = hash.unwrap_or_else(|| stand_in(self.bcrypt_cost));
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .map_err(|e| Status::internal(format!("bcrypt: {e}")))?;
        if ok && known { Ok(state.revision()) } else { Err(Error::AuthFailed.into()) }
    }
}

/// A token's random part: 16 letters from the kernel's generator.
fn token_prefix() -> Result<String, Status> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Status::internal(format!("random token: {e}")))?;
    Ok(bytes.iter().map(|b| TOKEN_LETTERS[usize::from(*b) % TOKEN_LETTERS.len()] as char).collect())
}

fn mismatched() -> Status {
    Error::Corrupt("mismatched auth answer".into()).into()
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, r: Request<pb::AuthEnableRequest>) -> Result<Response<pb::AuthEnableResponse>, Status> {
        let op = AuthOp::Enable(*r.get_ref());
        self.done(&r, op, |header| pb::AuthEnableResponse { header }).await
    }

    async fn auth_disable(
        &self,
        r: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        let op = AuthOp::Disable(*r.get_ref());
        self.done(&r, op, |header| pb::AuthDisableResponse { header }).await
    }

    async fn auth_status(&self, r: Request<pb::AuthStatusRequest>) -> Result<Response<pb::AuthStatusResponse>, Status> {
        match self.propose(&r, AuthOp::Status(pb::AuthStatusRequest {})).await? {
            (header, Answer::Status { enabled, revision }) => {
                Ok(Response::new(pb::AuthStatusResponse { header, enabled, auth_revision: revision }))
            }
            _ => Err(mismatched()),
        }
    }

    async fn authenticate(
        &self,
        r: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        self.reads.linearize().await?;
        let pb::AuthenticateRequest { name, password } = r.get_ref().clone();
        loop {
            let checked = self.check_password(&name, password.clone()).await?;
            let op = AuthOp::Authenticate(Authenticate { name: name.clone(), simple_token: token_prefix()? });
            // Proposed as nobody: authenticating needs no permission.
            let r = self.proposer.propose(&Caller::default(), &Op::Auth(AuthRequest { op: Some(op) })).await?;
            let Outcome::Auth(Answer::Token(token)) = r.outcome else { return Err(mismatched()) };
            if checked == self.auth.current().revision() {
                let header = self.headers.at(r.revision, r.term);
                return Ok(Response::new(pb::AuthenticateResponse { header, token }));
            }
        }
    }

    async fn user_add(&self, r: Request<pb::AuthUserAddRequest>) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        let mut add = r.get_ref().clone();
        if add.name.is_empty() {
            return Err(Error::UserEmpty.into());
        }
        if !add.options.is_some_and(|o| o.no_password) {
            add.hashed_password = self.hash(std::mem::take(&mut add.password)).await?;
        }
        add.password.clear();
        self.done(&r, AuthOp::UserAdd(add), |header| pb::AuthUserAddResponse { header }).await
    }

    async fn user_get(&self, r: Request<pb::AuthUserGetRequest>) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        match self.propose(&r, AuthOp::UserGet(r.get_ref().clone())).await? {
            (header, Answer::UserRoles(roles)) => Ok(Response::new(pb::AuthUserGetResponse { header, roles })),
            _ => Err(mismatched()),
        }
    }

    async fn user_list(
        &self,
        r: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        match self.propose(&r, AuthOp::UserList(*r.get_ref())).await? {
            (header, Answer::Users(users)) => Ok(Response::new(pb::AuthUserListResponse { header, users })),
            _ => Err(mismatched()),
        }
    }

    async fn user_delete(
        &self,
        r: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        let op = AuthOp::UserDelete(r.get_ref().clone());
        self.done(&r, op, |header| pb::AuthUserDeleteResponse { header }).await
    }

    async fn user_change_password(
        &self,
        r: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        let mut change = r.get_ref().clone();
        change.hashed_password = self.hash(std::mem::take(&mut change.password)).await?;
        self.done(&r, AuthOp::UserChangePassword(change), |header| pb::AuthUserChangePasswordResponse { header }).await
    }

    async fn user_grant_role(
        &self,
        r: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        let op = AuthOp::UserGrantRole(r.get_ref().clone());
        self.done(&r, op, |header| pb::AuthUserGrantRoleResponse { header }).await
    }

    async fn user_revoke_role(
        &self,
        r: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        let op = AuthOp::UserRevokeRole(r.get_ref().clone());
        self.done(&r, op, |header| pb::AuthUserRevokeRoleResponse { header }).await
    }

    async fn role_add(&self, r: Request<pb::AuthRoleAddRequest>) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        let op = AuthOp::RoleAdd(r.get_ref().clone());
        self.done(&r, op, |header| pb::AuthRoleAddResponse { header }).await
    }

    async fn role_get(&self, r: Request<pb::AuthRoleGetRequest>) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        match self.propose(&r, AuthOp::RoleGet(r.get_ref().clone())).await? {
            (header, Answer::Permissions(perm)) => Ok(Response::new(pb::AuthRoleGetResponse { header, perm })),
            _ => Err(mismatched()),
        }
    }

    async fn role_list(
        &self,
        r: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        match self.propose(&r, AuthOp::RoleList(*r.get_ref())).await? {
            (header, Answer::Roles(roles)) => Ok(Response::new(pb::AuthRoleListResponse { header, roles })),
            _ => Err(mismatched()),
        }
    }

    async fn role_delete(
        &self,
        r: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        let op = AuthOp::RoleDelete(r.get_ref().clone());
        self.done(&r, op, |header| pb::AuthRoleDeleteResponse { header }).await
    }

    async fn role_grant_permission(
        &self,
        r: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        let op = AuthOp::RoleGrantPermission(r.get_ref().clone());
        self.done(&r, op, |header| pb::AuthRoleGrantPermissionResponse { header }).await
    }

    async fn role_revoke_permission(
        &self,
        r: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        let op = AuthOp::RoleRevokePermission(r.get_ref().clone());
        self.done(&r, op, |header| pb::AuthRoleRevokePermissionResponse { header }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stand-in must be checked as a real hash is (a malformed one would be refused at once, without the
    /// bcrypt work, which is the timing difference it exists to hide), at the configured cost, and match nothing.
    #[test]
    fn the_stand_in_hash_costs_a_whole_check_and_matches_nothing() {
        for cost in [4, 10] {
            let parts: bcrypt::HashParts = stand_in(cost).parse().expect("a well-formed bcrypt hash");
            assert_eq!(parts.get_cost(), cost);
        }
        for password in ["", "x", "rootpw", "\\0"] {
            assert_eq!(bcrypt::verify(password, &stand_in(4)).ok(), Some(false), "{password:?}");
        }
        let real = bcrypt::hash("pw", 4).unwrap();
        assert_eq!(real.len(), stand_in(4).len(), "as long as a real hash");
    }
}
