//! The Cluster service: MemberList from the bootstrap configuration. Membership changes come with issue 6 and say so.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb::{self as pb, cluster_server::Cluster};
use crate::server::Node;

/// The Cluster service.
#[derive(Debug, Clone)]
pub struct ClusterService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, _: Request<pb::MemberAddRequest>) -> Result<Response<pb::MemberAddResponse>, Status> {
        Err(Status::unimplemented("ferrokv: MemberAdd is not implemented yet"))
    }

    async fn member_remove(
        &self,
        _: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        Err(Status::unimplemented("ferrokv: MemberRemove is not implemented yet"))
    }

    async fn member_update(
        &self,
        _: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(Status::unimplemented("ferrokv: MemberUpdate is not implemented yet"))
    }

    async fn member_list(&self, _: Request<pb::MemberListRequest>) -> Result<Response<pb::MemberListResponse>, Status> {
        let n = &self.node;
        // etcd's Cluster service headers carry no revision.
        let header = n.ids.header(0, n.status.term.load(Ordering::Relaxed));
        Ok(Response::new(pb::MemberListResponse { header, members: n.members.clone() }))
    }

    async fn member_promote(
        &self,
        _: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        Err(Status::unimplemented("ferrokv: MemberPromote is not implemented yet"))
    }
}
