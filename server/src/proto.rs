//! The etcd v3 API types and gRPC services, generated from `proto/` (see `build.rs`). Packages, services,
//! messages and field numbers match etcd's exactly: that is the interface etcdctl and every client library use.

#![allow(missing_docs, missing_debug_implementations, clippy::all, clippy::pedantic, clippy::nursery)]

/// etcd's `mvccpb`: KeyValue and Event.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// The parts of etcd's `authpb` the v3 API refers to.
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// etcd's `etcdserverpb`: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// etcd's `v3lockpb`: the Lock service (Lock, Unlock).
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// etcd's `v3electionpb`: the Election service (Campaign, Proclaim, Leader, Observe, Resign).
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
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
}
