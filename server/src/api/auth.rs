//! etcd's Auth service: users, roles and permissions through Raft (`apply::auth` applies them with etcd's rules),
//! every request, reads included, in log order as etcd 3.4 does. A password is hashed here, with bcrypt at
//! `--bcrypt-cost`, on a blocking thread, and only the hash enters the log.
//!
//! Not yet (issue 16): AuthEnable is refused (nothing enforces permissions, so enabling would promise what is not
//! kept); Authenticate answers etcd's "authentication is not enabled", which is true; AuthDisable, with
//! authentication never enabled, has nothing to do.

use tonic::{Request, Response, Status};

use crate::api::convert::Headers;
use crate::apply::Outcome;
use crate::apply::auth::Answer;
use crate::error::Error;
use crate::proposals::Proposer;
use crate::proto::etcdserverpb::{self as pb, auth_server::Auth};
use crate::request::{AuthOp, AuthRequest, Op};

/// The Auth service.
#[derive(Debug, Clone)]
pub struct AuthService {
    pub proposer: Proposer,
    pub headers: Headers,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
}

type Answered = (Option<pb::ResponseHeader>, Answer);

impl AuthService {
    /// Proposes `op` and returns its header and answer.
    async fn propose(&self, op: AuthOp) -> Result<Answered, Status> {
        let r = self.proposer.propose(&Op::Auth(AuthRequest { op: Some(op) })).await?;
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
    async fn done<T>(
        &self,
        op: AuthOp,
        make: impl FnOnce(Option<pb::ResponseHeader>) -> T,
    ) -> Result<Response<T>, Status> {
        let (header, _) = self.propose(op).await?;
        Ok(Response::new(make(header)))
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, _: Request<pb::AuthEnableRequest>) -> Result<Response<pb::AuthEnableResponse>, Status> {
        Err(Status::unimplemented(
            "ferrokv: authentication is not enforced yet, so it cannot be enabled (users and roles can be managed)",
        ))
    }

    async fn auth_disable(
        &self,
        _: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        let (header, _) = self.propose(AuthOp::Status(pb::AuthStatusRequest {})).await?;
        Ok(Response::new(pb::AuthDisableResponse { header }))
    }

    async fn auth_status(&self, r: Request<pb::AuthStatusRequest>) -> Result<Response<pb::AuthStatusResponse>, Status> {
        match self.propose(AuthOp::Status(r.into_inner())).await? {
            (header, Answer::Status { enabled, revision }) => {
                Ok(Response::new(pb::AuthStatusResponse { header, enabled, auth_revision: revision }))
            }
            _ => Err(Error::Corrupt("mismatched auth answer".into()).into()),
        }
    }

    async fn authenticate(
        &self,
        _: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        Err(Error::AuthNotEnabled.into())
    }

    async fn user_add(&self, r: Request<pb::AuthUserAddRequest>) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        let mut r = r.into_inner();
        if r.name.is_empty() {
            return Err(Error::UserEmpty.into());
        }
        if !r.options.is_some_and(|o| o.no_password) {
            r.hashed_password = self.hash(std::mem::take(&mut r.password)).await?;
        }
        r.password.clear();
        self.done(AuthOp::UserAdd(r), |header| pb::AuthUserAddResponse { header }).await
    }

    async fn user_get(&self, r: Request<pb::AuthUserGetRequest>) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        match self.propose(AuthOp::UserGet(r.into_inner())).await? {
            (header, Answer::UserRoles(roles)) => Ok(Response::new(pb::AuthUserGetResponse { header, roles })),
            _ => Err(Error::Corrupt("mismatched auth answer".into()).into()),
        }
    }

    async fn user_list(
        &self,
        r: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        match self.propose(AuthOp::UserList(r.into_inner())).await? {
            (header, Answer::Users(users)) => Ok(Response::new(pb::AuthUserListResponse { header, users })),
            _ => Err(Error::Corrupt("mismatched auth answer".into()).into()),
        }
    }

    async fn user_delete(
        &self,
        r: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        self.done(AuthOp::UserDelete(r.into_inner()), |header| pb::AuthUserDeleteResponse { header }).await
    }

    async fn user_change_password(
        &self,
        r: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        let mut r = r.into_inner();
        r.hashed_password = self.hash(std::mem::take(&mut r.password)).await?;
        self.done(AuthOp::UserChangePassword(r), |header| pb::AuthUserChangePasswordResponse { header }).await
    }

    async fn user_grant_role(
        &self,
        r: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        self.done(AuthOp::UserGrantRole(r.into_inner()), |header| pb::AuthUserGrantRoleResponse { header }).await
    }

    async fn user_revoke_role(
        &self,
        r: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        self.done(AuthOp::UserRevokeRole(r.into_inner()), |header| pb::AuthUserRevokeRoleResponse { header }).await
    }

    async fn role_add(&self, r: Request<pb::AuthRoleAddRequest>) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        self.done(AuthOp::RoleAdd(r.into_inner()), |header| pb::AuthRoleAddResponse { header }).await
    }

    async fn role_get(&self, r: Request<pb::AuthRoleGetRequest>) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        match self.propose(AuthOp::RoleGet(r.into_inner())).await? {
            (header, Answer::Permissions(perm)) => Ok(Response::new(pb::AuthRoleGetResponse { header, perm })),
            _ => Err(Error::Corrupt("mismatched auth answer".into()).into()),
        }
    }

    async fn role_list(
        &self,
        r: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        match self.propose(AuthOp::RoleList(r.into_inner())).await? {
            (header, Answer::Roles(roles)) => Ok(Response::new(pb::AuthRoleListResponse { header, roles })),
            _ => Err(Error::Corrupt("mismatched auth answer".into()).into()),
        }
    }

    async fn role_delete(
        &self,
        r: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        self.done(AuthOp::RoleDelete(r.into_inner()), |header| pb::AuthRoleDeleteResponse { header }).await
    }

    async fn role_grant_permission(
        &self,
        r: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        self.done(AuthOp::RoleGrantPermission(r.into_inner()), |header| pb::AuthRoleGrantPermissionResponse { header })
            .await
    }

    async fn role_revoke_permission(
        &self,
        r: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        self.done(AuthOp::RoleRevokePermission(r.into_inner()), |header| pb::AuthRoleRevokePermissionResponse {
            header,
        })
        .await
    }
}
