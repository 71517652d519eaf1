//! The etcd v3 API types and gRPC services, generated from `proto/` (see `build.rs`). Packages, services,
//! messages and field numbers match etcd's exactly: that is the interface etcdctl and every client library use.

#![allow(missing_docs, missing_debug_implementations, clippy::all, clippy::pedantic, clippy::nursery)]

/// etcd's `mvccpb`: KeyValue and Event.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// The parts of etcd's `authpb` the v3 API refers to.
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// etcd's `etcdserverpb`: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// etcd's `v3lockpb`: the Lock service (Lock, Unlock).
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

/// etcd's `v3electionpb`: the Election service (Campaign, Proclaim, Leader, Observe, Resign).
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::etcdserverpb::{Compare, PutRequest, RangeRequest, compare};

    /// Bytes an etcd client puts on the wire, written out by hand from the protobuf encoding rules and etcd's field
    /// numbers: a change of any field number in our .proto files breaks these.
    #[test]
    fn wire_encoding_matches_etcd_field_numbers() {
        let r =
            RangeRequest { key: b"foo".to_vec(), range_end: vec![0], limit: 5, keys_only: true, ..Default::default() };
        assert_eq!(r.encode_to_vec(), [0x0a, 3, b'f', b'o', b'o', 0x12, 1, 0, 0x18, 5, 0x40, 1]);
        let p = PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), lease: 7, prev_kv: true, ..Default::default() };
        assert_eq!(p.encode_to_vec(), [0x0a, 1, b'k', 0x12, 1, b'v', 0x18, 7, 0x20, 1]);
        let c = Compare {
            key: b"k".to_vec(),
            target: 3,
            target_union: Some(compare::TargetUnion::Value(b"x".to_vec())),
            range_end: b"z".to_vec(),
            ..Default::default()
        };
        // range_end is field 64: tag (64 << 3 | 2) = 514, varint 0x82 0x04.
        assert_eq!(c.encode_to_vec(), [0x10, 3, 0x1a, 1, b'k', 0x3a, 1, b'x', 0x82, 0x04, 1, b'z']);
    }

    /// protobuf's JSON mapping as etcd 3.4.23's gateway writes and reads it; the expected texts are what
    /// `curl -X POST http://127.0.0.1:2379/v3/kv/...` answered from etcd 3.4.23 here: original field names, 64-bit
    /// integers as strings, bytes in base64, defaults left out.
    #[test]
    fn json_mapping_matches_etcd_gateway() {
        use super::etcdserverpb::{DeleteRangeResponse, PutResponse, RangeResponse, ResponseHeader};
        use super::mvccpb::KeyValue;
        let header = Some(ResponseHeader {
            cluster_id: 14841639068965178418,
            member_id: 10276657743932975437,
            revision: 2,
            raft_term: 2,
        });
        let put = PutResponse { header, prev_kv: None };
        assert_eq!(
            serde_json::to_string(&put).unwrap(),
            r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"2","raft_term":"2"}}"#
        );
        let kv = KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"bar".to_vec(),
            lease: 0,
        };
        let range = RangeResponse { header, kvs: vec![kv.clone()], more: false, count: 1 };
        assert_eq!(
            serde_json::to_string(&range).unwrap(),
            r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"2","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
        );
        let mut header3 = header;
        if let Some(h) = header3.as_mut() {
            h.revision = 3;
        }
        let del = DeleteRangeResponse { header: header3, deleted: 1, prev_kvs: vec![kv] };
        assert_eq!(
            serde_json::to_string(&del).unwrap(),
            r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"3","raft_term":"2"},"deleted":"1","prev_kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}]}"#
        );
        // Requests as curl users write them: 64-bit integers as strings or numbers, enums by name or number,
        // camelCase or original names; a field the message does not have is ignored, as etcd's gateway does.
        let r: RangeRequest =
            serde_json::from_str(r#"{"key": "Zm9v", "sort_order": "DESCEND", "limit": "5", "bogus": 1}"#).unwrap();
        assert_eq!((r.key.as_slice(), r.sort_order, r.limit), (&b"foo"[..], 2, 5));
        let r: RangeRequest = serde_json::from_str(r#"{"key": "Zm9v", "sortOrder": 2, "keys_only": true}"#).unwrap();
        assert_eq!((r.sort_order, r.keys_only), (2, true));
        let p: PutRequest = serde_json::from_str(r#"{"key": "Zm9v", "value": "YmFy", "lease": "0"}"#).unwrap();
        assert_eq!((p.key.as_slice(), p.value.as_slice()), (&b"foo"[..], &b"bar"[..]));
        assert!(serde_json::from_str::<PutRequest>(r#"{"key": 5}"#).is_err(), "a wrong type is an error");
    }
}
