//! Writes the seed corpora (`fuzz/corpus/<target>/`) with the project's own encoders, so every target starts
//! from inputs that decode: a WAL segment, the pages and a snapshot image of a small store, an etcd bbolt file,
//! a peer connection's frames, and gRPC and JSON requests. Run from `fuzz/`: `cargo run --bin make_seeds`.

use std::path::Path;

use prost::Message as _;
use protobuf::Message as _;
use server::proto::etcdserverpb as pb;

fn save(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

/// The bytes up to the last non-zero one (a preallocated file's zero tail adds nothing to a seed).
fn trimmed(mut b: Vec<u8>) -> Vec<u8> {
    let end = b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
    b.truncate((end + 63) / 64 * 64);
    b
}

fn wal_seeds() {
    let dir = ferrokv_fuzz::scratch_dir("seed-wal");
    let config = wal::Config { segment_size: 64 << 10, ..wal::Config::default() };
    let w = wal::Wal::create(&dir, config).unwrap();
    for i in 1..40u64 {
        let data = vec![i as u8; (i * 7 % 90) as usize];
        let e = [wal::Record::Entry { index: wal::RaftIndex(i), term: wal::Term(1 + i / 20), data: &data }];
        w.append(&e).unwrap().wait().unwrap();
    }
    let hs = wal::HardState { term: wal::Term(2), vote: 1, commit: wal::RaftIndex(30) };
    w.append(&[wal::Record::HardState(hs), wal::Record::Metadata(b"member")]).unwrap().wait().unwrap();
    drop(w);
    let seg = std::fs::read(wal::segment::path(&dir, wal::SegmentSeq(1))).unwrap();
    let seg = trimmed(seg);
    save("wal_segment", "segment", &seg);
    save("wal_segment", "header-only", &seg[..seg.len().min(64)]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn store_seeds() {
    let dir = ferrokv_fuzz::scratch_dir("seed-store");
    let db = mvcc::Db::open(dir.join("db"), &["t"], mvcc::DbConfig::default()).unwrap();
    let ks = db.keyspace("t").unwrap();
    let mut w = db.write().unwrap();
    for i in 0..400u32 {
        let v = if i % 100 == 0 { vec![7u8; 5000] } else { vec![i as u8; 40] };
        w.put(ks, format!("{i:06}").as_bytes(), &v).unwrap();
    }
    w.commit().unwrap();
    let mut image = Vec::new();
    db.snapshot_to(&mut image).unwrap();
    save("snapshot", "small-store", &image);
    // Pages of the store (4096 bytes each): metas, branches, leaves, overflow. The first byte picks 4096 bytes.
    for (i, page) in image.chunks(4096).take(12).enumerate() {
        let page = trimmed(page.to_vec());
        if !page.is_empty() {
            save("btree_page", &format!("page-{i}"), &[&[63u8][..], &page].concat());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

struct Two;

impl bbolt::Source for Two {
    fn visit(&mut self, bucket: usize, f: &mut bbolt::Visit<'_>) -> bbolt::Result<()> {
        for i in 0..50u32 {
            f(format!("{bucket}-{i:04}").as_bytes(), &vec![i as u8; 30 + i as usize])?;
        }
        Ok(())
    }
}

fn bbolt_seeds() {
    let mut out = Vec::new();
    let opts = bbolt::WriteOptions { page_size: 4096, txid: 2 };
    bbolt::write(&mut out, &[b"key", b"meta"], &mut Two, opts).unwrap();
    save("bbolt_reader", "two-buckets", &out);
}

fn peer_seeds() {
    use server::consensus::transport::{PREAMBLE, write_frame};
    let mut m = raft::eraftpb::Message::default();
    m.set_msg_type(raft::eraftpb::MessageType::MsgAppend);
    m.from = 1;
    m.to = 2;
    m.term = 3;
    m.index = 10;
    m.log_term = 3;
    m.commit = 9;
    let mut e = raft::eraftpb::Entry::default();
    e.index = 11;
    e.term = 3;
    e.data = vec![1, 2, 3, 4].into();
    m.entries.push(e);
    let mut wire = PREAMBLE.to_vec();
    assert!(write_frame(&mut wire, &[&[0u8][..], &m.write_to_bytes().unwrap()].concat()));
    assert!(write_frame(&mut wire, &[&[1u8][..], &7i64.to_le_bytes(), &8i64.to_le_bytes()].concat()));
    save("peer_frame", "append-and-renew", &wire);
    let mut hb = raft::eraftpb::Message::default();
    hb.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
    hb.from = 2;
    hb.to = 1;
    let mut wire = PREAMBLE.to_vec();
    assert!(write_frame(&mut wire, &[&[0u8][..], &hb.write_to_bytes().unwrap()].concat()));
    assert!(write_frame(&mut wire, &[4u8]));
    save("peer_frame", "heartbeat-and-members", &wire);
}

fn request_seeds() {
    use pb::request_op::Request;
    let put = pb::PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), lease: 5, ..Default::default() };
    let range = pb::RangeRequest { key: b"a".to_vec(), range_end: b"z".to_vec(), limit: 3, ..Default::default() };
    let inner = pb::TxnRequest {
        success: vec![pb::RequestOp { request: Some(Request::RequestRange(range.clone())) }],
        ..Default::default()
    };
    let txn = pb::TxnRequest {
        compare: vec![pb::Compare {
            key: b"k".to_vec(),
            target: pb::compare::CompareTarget::Version as i32,
            target_union: Some(pb::compare::TargetUnion::Version(1)),
            ..Default::default()
        }],
        success: vec![
            pb::RequestOp { request: Some(Request::RequestPut(put.clone())) },
            pb::RequestOp { request: Some(Request::RequestTxn(inner)) },
        ],
        failure: vec![pb::RequestOp {
            request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })),
        }],
    };
    save("grpc_request", "txn", &[&[0u8][..], &txn.encode_to_vec()].concat());
    save("grpc_request", "put", &[&[1u8][..], &put.encode_to_vec()].concat());
    save("grpc_request", "range", &[&[2u8][..], &range.encode_to_vec()].concat());
    save("grpc_request", "txn-json", &[&[3u8][..], serde_json::to_string(&txn).unwrap().as_bytes()].concat());
    save("grpc_request", "put-json", &[&[4u8][..], serde_json::to_string(&put).unwrap().as_bytes()].concat());
}

fn main() {
    wal_seeds();
    store_seeds();
    bbolt_seeds();
    peer_seeds();
    request_seeds();
    println!("seeds written under fuzz/corpus/");
}
