//! KV.RangeStream: for every kind of range request, merging the streamed chunks gives exactly the unary Range's
//! response; a large range arrives in several chunks; a compacted revision is etcd's error.

mod common;

use common::{free_port, start};
use server::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, kv_client::KvClient,
    range_request::SortOrder, range_request::SortTarget,
};
use tonic::transport::Channel;

/// Merges a stream's chunks as proto.Merge would; also returns how many chunks came.
async fn streamed(kv: &mut KvClient<Channel>, r: RangeRequest) -> Result<(RangeResponse, usize), tonic::Status> {
    let mut stream = kv.range_stream(r).await?.into_inner();
    let mut merged = RangeResponse::default();
    let mut chunks = 0;
    while let Some(msg) = stream.message().await? {
        let part = msg.range_response.expect("each message wraps a RangeResponse");
        chunks += 1;
        if part.header.is_some() {
            assert!(merged.header.is_none(), "one header, in the first chunk");
            merged.header = part.header;
        }
        merged.kvs.extend(part.kvs);
        merged.more |= part.more;
        if part.count != 0 {
            merged.count = part.count;
        }
    }
    Ok((merged, chunks))
}

#[test]
fn range_stream_matches_range() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(&dir.path().join("data"), free_port(), free_port());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut kv = KvClient::connect(format!("http://{}", m.endpoint)).await.unwrap();
        // 3000 keys, every 100th with a 20 KiB value (about 600 KiB of them), so chunk sizes have to adapt.
        for i in 0..3000u32 {
            let value = if i % 100 == 0 { vec![b'x'; 20 << 10] } else { format!("v{i}").into_bytes() };
            let key = format!("key/{i:05}").into_bytes();
            kv.put(PutRequest { key, value, ..Default::default() }).await.unwrap();
        }
        let before_updates = 3001;
        for i in (0..3000u32).step_by(7) {
            let key = format!("key/{i:05}").into_bytes();
            kv.put(PutRequest { key, value: b"updated".to_vec(), ..Default::default() }).await.unwrap();
        }
        let range_end = b"key0".to_vec();
        kv.delete_range(DeleteRangeRequest {
            key: b"key/01000".to_vec(),
            range_end: b"key/01100".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
        let all = RangeRequest { key: b"key/".to_vec(), range_end: range_end.clone(), ..Default::default() };
        let cases = vec![
            all.clone(),
            RangeRequest { limit: 10, ..all.clone() },
            RangeRequest { limit: 2899, ..all.clone() },
            RangeRequest { limit: 2900, ..all.clone() },
            RangeRequest { limit: 2901, ..all.clone() },
            RangeRequest { keys_only: true, ..all.clone() },
            RangeRequest { serializable: true, ..all.clone() },
            RangeRequest { min_mod_revision: before_updates, ..all.clone() },
            RangeRequest { min_mod_revision: before_updates, limit: 50, ..all.clone() },
            RangeRequest { max_create_revision: 500, limit: 600, ..all.clone() },
            RangeRequest { revision: 2000, ..all.clone() },
            RangeRequest { revision: 2000, limit: 1500, ..all.clone() },
            RangeRequest { count_only: true, ..all.clone() },
            RangeRequest { sort_order: SortOrder::Descend as i32, limit: 5, ..all.clone() },
            RangeRequest { sort_order: SortOrder::Ascend as i32, ..all.clone() },
            RangeRequest { sort_target: SortTarget::Mod as i32, limit: 20, ..all.clone() },
            RangeRequest { key: b"key/00042".to_vec(), ..Default::default() },
            RangeRequest { key: b"nothing/".to_vec(), range_end: b"nothing0".to_vec(), ..Default::default() },
            RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() },
        ];
        for r in cases {
            let unary = kv.range(r.clone()).await.unwrap().into_inner();
            let (merged, chunks) = streamed(&mut kv, r.clone()).await.unwrap();
            assert_eq!(merged, unary, "{r:?}");
            if r == all {
                assert_eq!(unary.count, 2900);
                assert!(chunks >= 4, "a large range comes in several chunks, got {chunks}");
            }
        }
        // A compacted revision gets etcd's error, as Range does.
        kv.compact(CompactionRequest { revision: 3000, physical: true }).await.unwrap();
        let err = streamed(&mut kv, RangeRequest { revision: 10, ..all.clone() }).await.unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (tonic::Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted")
        );
        let err = streamed(&mut kv, RangeRequest { key: vec![], ..all }).await.unwrap_err();
        assert_eq!(err.message(), "etcdserver: key is not provided");
    });
}
