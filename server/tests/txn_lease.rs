//! A Txn whose running branch puts a key under an unknown lease is refused whole with etcd's error; one whose
//! other branch names the unknown lease runs.

mod common;

use common::{free_port, start};
use server::proto::etcdserverpb::{
    Compare, LeaseGrantRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, kv_client::KvClient,
    lease_client::LeaseClient, request_op::Request,
};

fn put(key: &str, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

#[test]
fn txn_puts_need_existing_leases() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(&dir.path().join("data"), free_port(), free_port());
    let endpoint = format!("http://{}", m.endpoint);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut kv = KvClient::connect(endpoint.clone()).await.unwrap();
        let mut lease = LeaseClient::connect(endpoint).await.unwrap();
        let id = lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await.unwrap().into_inner().id;
        // Compare "version(a) == 0" holds: the success branch runs.
        let always = Compare { key: b"a".to_vec(), ..Default::default() };
        let bad =
            TxnRequest { compare: vec![always.clone()], success: vec![put("x", 777), put("y", 0)], failure: vec![] };
        let err = kv.txn(bad).await.unwrap_err();
        assert_eq!((err.code(), err.message()), (tonic::Code::NotFound, "etcdserver: requested lease not found"));
        let none = kv.range(RangeRequest { key: b"y".to_vec(), ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(none.count, 0, "nothing of the refused Txn was applied");
        // The unknown lease only in the branch that does not run: fine.
        let good = TxnRequest {
            compare: vec![always],
            success: vec![put("x", id), put("y", 0)],
            failure: vec![put("z", 777)],
        };
        assert!(kv.txn(good).await.unwrap().into_inner().succeeded);
        let x = kv.range(RangeRequest { key: b"x".to_vec(), ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(x.kvs[0].lease, id);
    });
}
