//! Linearizable reads arriving through every member at once are each answered by the first ReadIndex round they
//! join: none is dropped by the leader for a context another member's round already uses, and so none waits out
//! a retry (counted by `etcd_server_slow_read_indexes_total`, etcd's series for read index requests that timed
//! out). Contexts used to be a per-member counter, equal on every member.

mod common;

use std::time::Duration;

use common::cluster::{agreed_leader, launch, specs};
use common::{http_get, metric_value};
use server::proto::etcdserverpb::{PutRequest, RangeRequest, kv_client::KvClient};

#[test]
fn reads_through_every_member_share_no_read_index_context() {
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = specs(3);
    let members: Vec<_> = specs.iter().map(|s| launch(dir.path(), s, &cluster)).collect();
    let endpoints: Vec<String> = members.iter().map(|m| m.endpoint.clone()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        agreed_leader(&endpoints).await;
        let mut kv = KvClient::connect(format!("http://{}", endpoints[0])).await.unwrap();
        kv.put(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() }).await.unwrap();
        // Reads through each member at once: four readers per member, 250 linearizable gets each.
        let mut readers = Vec::new();
        for e in &endpoints {
            for _ in 0..4 {
                let e = e.clone();
                readers.push(tokio::spawn(async move {
                    let mut kv = KvClient::connect(format!("http://{e}")).await.unwrap();
                    for _ in 0..250 {
                        let r = kv.range(RangeRequest { key: b"k".to_vec(), ..Default::default() }).await.unwrap();
                        assert_eq!(r.into_inner().kvs.len(), 1);
                    }
                }));
            }
        }
        for r in readers {
            tokio::time::timeout(Duration::from_secs(60), r).await.expect("3,000 reads within 60 s").unwrap();
        }
    });
    for e in &endpoints {
        let (code, text) = http_get(e, "/metrics");
        assert_eq!(code, 200);
        let slow = metric_value(&text, "etcd_server_slow_read_indexes_total");
        assert_eq!(slow, 0.0, "read index rounds at {e} went unanswered and were asked again");
    }
}
