//! A key's value at one revision, as the `key` keyspace stores it under that revision.
//!
//! **On-disk format** (little-endian): flags u8 (bit 0: tombstone), create revision i64, version i64, lease i64,
//! key length u32, key, value (the rest). A tombstone has version 0 and an empty value.

/// etcd's `mvccpb.KeyValue`, in our own types.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

const TOMBSTONE: u8 = 1;
const FIXED: usize = 1 + 8 + 8 + 8 + 4;

/// Encodes a revision's record (`mod_revision` is the B+tree key, not stored again).
pub fn encode(kv: &KeyValue, tombstone: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(FIXED + kv.key.len() + kv.value.len());
    b.push(if tombstone { TOMBSTONE } else { 0 });
    b.extend_from_slice(&kv.create_revision.to_le_bytes());
    b.extend_from_slice(&kv.version.to_le_bytes());
    b.extend_from_slice(&kv.lease.to_le_bytes());
    b.extend_from_slice(&(kv.key.len() as u32).to_le_bytes());
    b.extend_from_slice(&kv.key);
    b.extend_from_slice(&kv.value);
    b
}

/// Decodes a record stored under `mod_revision`; `None` if malformed. Returns the value and the tombstone flag.
pub fn decode(b: &[u8], mod_revision: i64) -> Option<(KeyValue, bool)> {
    if b.len() < FIXED {
        return None;
    }
    let i64_at = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        i64::from_le_bytes(w)
    };
    let klen = u32::from_le_bytes([b[25], b[26], b[27], b[28]]) as usize;
    if FIXED + klen > b.len() || b[0] & !TOMBSTONE != 0 {
        return None;
    }
    let kv = KeyValue {
        key: b[FIXED..FIXED + klen].to_vec(),
        value: b[FIXED + klen..].to_vec(),
        create_revision: i64_at(1),
        mod_revision,
        version: i64_at(9),
        lease: i64_at(17),
    };
    Some((kv, b[0] & TOMBSTONE != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            create_revision: 3,
            mod_revision: 9,
            version: 4,
            lease: 77,
        };
        assert_eq!(decode(&encode(&kv, false), 9), Some((kv.clone(), false)));
        assert_eq!(decode(&encode(&kv, true), 9).map(|x| x.1), Some(true));
        assert_eq!(decode(&[0u8; 5], 1), None);
    }
}
