//! The floor of ferrokv's client path: what the gRPC stack alone costs a put, with no Raft, WAL or store.
//!
//! `grpc_floor ADDRESS [tonic|h2]` serves etcd's KV Put on ADDRESS (`127.0.0.1:PORT`), answering every Put at once
//! with a response header, as a member's would be. Nothing is stored; there is no Raft and no WAL.
//! - `tonic` (the default): the same stack as a member's client URLs. The same listener and connection shim
//!   (`api::client_tls::incoming`, so PING ACKs leave with the next response), the same tonic server settings, a
//!   two-worker tokio runtime, mimalloc and no transparent huge pages. Every other KV call gets an empty answer.
//! - `h2`: the same listener, shim and runtime, with the h2 crate's server used directly, without hyper, tonic and
//!   their layers: each request stream is a task that reads the gRPC message, decodes it and answers with HEADERS,
//!   DATA and trailers. It serves Put only (and any other path with the same answer).
//!
//! Run etcd's `benchmark put` against it, pinned like `scripts/ab-benchmark.py` does. The `tonic` floor's CPU per
//! put is the least any member on today's stack can cost: issue 17's first line asks a member for 0.35× of etcd's
//! CPU per put, and if this floor alone is near that, no change below the gRPC layer can meet it. The `h2` floor
//! shows what a lighter gRPC path would leave (docs/performance.md).

use std::net::SocketAddr;

use server::proto::etcdserverpb::{self as pb, kv_server::Kv, kv_server::KvServer};
use tonic::codegen::tokio_stream;
use tonic::{Request, Response, Status};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Answers every call at once.
#[derive(Debug, Default)]
struct Floor {
    revision: std::sync::atomic::AtomicI64,
}

impl Floor {
    fn header(&self) -> Option<pb::ResponseHeader> {
        let revision = self.revision.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        Some(pb::ResponseHeader { cluster_id: 1, member_id: 1, revision, raft_term: 2 })
    }
}

#[tonic::async_trait]
impl Kv for Floor {
    async fn range(&self, _: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        Ok(Response::new(pb::RangeResponse { header: self.header(), ..Default::default() }))
    }

    type RangeStreamStream = tokio_stream::Empty<Result<pb::RangeStreamResponse, Status>>;

    async fn range_stream(&self, _: Request<pb::RangeRequest>) -> Result<Response<Self::RangeStreamStream>, Status> {
        Ok(Response::new(tokio_stream::empty()))
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let p = request.into_inner();
        if p.key.is_empty() {
            return Err(Status::invalid_argument("etcdserver: key is not provided"));
        }
        Ok(Response::new(pb::PutResponse { header: self.header(), prev_kv: None }))
    }

    async fn delete_range(
        &self,
        _: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        Ok(Response::new(pb::DeleteRangeResponse { header: self.header(), ..Default::default() }))
    }

    async fn txn(&self, _: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        Ok(Response::new(pb::TxnResponse { header: self.header(), ..Default::default() }))
    }

    async fn compact(&self, _: Request<pb::CompactionRequest>) -> Result<Response<pb::CompactionResponse>, Status> {
        Ok(Response::new(pb::CompactionResponse { header: self.header() }))
    }
}

fn main() {
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and no pointers; it changes only this process's paging.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    let Some(Ok(addr)) = std::env::args().nth(1).map(|a| a.parse::<SocketAddr>()) else {
        eprintln!("usage: grpc_floor 127.0.0.1:PORT [tonic|h2]");
        std::process::exit(2);
    };
    let raw = std::env::args().nth(2).is_some_and(|m| m == "h2");
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("grpc_floor: start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let listener = server::api::client_tls::ClientListener::Tcp { listener, plain: true, tls: None };
        let incoming = server::api::client_tls::incoming(listener, None);
        if raw {
            return raw_h2::serve(incoming, std::sync::Arc::new(Floor::default())).await;
        }
        tonic::transport::Server::builder()
            .accept_http1(true)
            .add_service(KvServer::new(Floor::default()))
            .serve_with_incoming(incoming)
            .await
            .map_err(std::io::Error::other)
    });
    if let Err(e) = served {
        eprintln!("grpc_floor: serve {addr}: {e}");
        std::process::exit(1);
    }
}

/// The `h2` floor: gRPC unary Put over the h2 crate's server, nothing between.
mod raw_h2 {
    use std::io;
    use std::sync::Arc;

    use super::Floor;
    use prost::Message;
    use server::api::client_conn::ClientConn;
    use server::proto::etcdserverpb as pb;
    use tonic::codegen::Bytes;
    use tonic::codegen::tokio_stream::{StreamExt, wrappers::ReceiverStream};

    /// Serves every connection `incoming` yields until it ends; `floor` numbers the response headers.
    pub async fn serve(mut incoming: ReceiverStream<io::Result<ClientConn>>, floor: Arc<Floor>) -> io::Result<()> {
        while let Some(conn) = incoming.next().await {
            let Ok(conn) = conn else { continue };
            let floor = floor.clone();
            tokio::spawn(async move {
                let Ok(mut h2) = h2::server::handshake(conn).await else { return };
                while let Some(Ok((request, respond))) = h2.accept().await {
                    tokio::spawn(answer(request, respond, floor.clone()));
                }
            });
        }
        Ok(())
    }

    /// Reads one gRPC message (5-byte prefix, then the message) and answers it.
    async fn answer(
        request: http::Request<h2::RecvStream>,
        mut respond: h2::server::SendResponse<Bytes>,
        floor: Arc<Floor>,
    ) {
        let mut body = request.into_body();
        let mut message = Vec::new();
        while let Some(Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
            message.extend_from_slice(&chunk);
        }
        let status = match message.get(5..).map(pb::PutRequest::decode) {
            Some(Ok(p)) if !p.key.is_empty() => "0",
            _ => "3",
        };
        let reply = pb::PutResponse { header: floor.header(), prev_kv: None }.encode_to_vec();
        let mut framed = Vec::with_capacity(5 + reply.len());
        framed.push(0);
        framed.extend_from_slice(&(reply.len() as u32).to_be_bytes());
        framed.extend_from_slice(&reply);
        let response =
            http::Response::builder().header("content-type", "application/grpc").body(()).unwrap_or_default();
        let Ok(mut send) = respond.send_response(response, false) else { return };
        let _ = send.send_data(Bytes::from(framed), false);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static(status));
        let _ = send.send_trailers(trailers);
    }
}
