//! The gRPC and JSON gateway requests on arbitrary bytes: the first byte picks the message; the rest is decoded as
//! protobuf (as tonic decodes it) and, for the gateway, as JSON (pbjson's mapping), and a decoded Put or Txn goes
//! through the server's validation (etcd's checks: keys, flags, op counts, nesting, duplicate keys). Never a
//! panic, and nesting deep enough to overflow a stack is refused by the decoder first.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use server::api::kv::{check_put, check_txn};
use server::proto::etcdserverpb as pb;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    match kind % 6 {
        0 => {
            if let Ok(t) = pb::TxnRequest::decode(body) {
                let _ = check_txn(&t, 128);
            }
        }
        1 => {
            if let Ok(p) = pb::PutRequest::decode(body) {
                let _ = check_put(&p);
            }
        }
        2 => {
            let _ = pb::RangeRequest::decode(body);
            let _ = pb::DeleteRangeRequest::decode(body);
        }
        3 => {
            if let Ok(t) = serde_json::from_slice::<pb::TxnRequest>(body) {
                let _ = check_txn(&t, 128);
            }
        }
        4 => {
            if let Ok(p) = serde_json::from_slice::<pb::PutRequest>(body) {
                let _ = check_put(&p);
            }
        }
        _ => {
            let _ = pb::WatchRequest::decode(body);
            let _ = pb::LeaseGrantRequest::decode(body);
            let _ = serde_json::from_slice::<pb::RangeRequest>(body);
        }
    }
});
