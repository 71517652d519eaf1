//! One record frame: how a record is laid out in a segment, and its chained checksum.
//!
//! **On-disk format** (integers little-endian; see also docs/format-wal.md). Every frame starts at an 8-aligned
//! offset, so its first 8 bytes (length and type) never straddle a 512-byte sector and are never torn:
//!
//! | offset | len | field |
//! |---|---|---|
//! | 0 | 4 | payload length N |
//! | 4 | 1 | record type (1 entry, 2 hard state, 3 snapshot marker, 4 metadata, 5 truncate, 6 seal) |
//! | 5 | 3 | reserved, zero |
//! | 8 | 4 | CRC32C over bytes 0..8 and the payload, seeded with the previous frame's CRC |
//! | 12 | N | payload |
//! | 12+N | 0..7 | zero padding to a multiple of 8 |
//!
//! Payloads: entry = index u64, term u64, data; hard state = term u64, vote u64, commit u64; snapshot marker =
//! index u64, term u64; metadata = bytes; truncate = first discarded index u64; seal = empty.
//!
//! **Invariants**
//! 1. The CRC chain starts at the segment header's CRC (which covers a random salt), so a frame left over from any
//!    other segment, or any other use of the same file, cannot verify.
//! 2. A frame whose first 8 bytes are zero is not a frame: it is the end of the written log.

use crate::types::{Entry, HardState, RaftIndex, SnapshotMarker, Term};

/// Bytes before the payload.
pub const FRAME_HEADER_LEN: usize = 12;
const LEN_OFFSET: usize = 0;
const TYPE_OFFSET: usize = LEN_OFFSET + 4;
const RESERVED_OFFSET: usize = TYPE_OFFSET + 1;
const CRC_OFFSET: usize = RESERVED_OFFSET + 3;
const _: () = assert!(CRC_OFFSET + 4 == FRAME_HEADER_LEN);

/// The largest payload any frame may claim: bounds what a corrupt length can make the reader do.
pub const MAX_PAYLOAD: usize = 1 << 30;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    Entry = 1,
    HardState = 2,
    Snapshot = 3,
    Metadata = 4,
    Truncate = 5,
    Seal = 6,
}

impl RecordType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => RecordType::Entry,
            2 => RecordType::HardState,
            3 => RecordType::Snapshot,
            4 => RecordType::Metadata,
            5 => RecordType::Truncate,
            6 => RecordType::Seal,
            _ => return None,
        })
    }
}

/// A record to append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// A Raft entry. Appending index `i <= last_index` first truncates the log from `i` (a Truncate record is
    /// written before it), as Raft does when a leader overwrites conflicting uncommitted entries.
    Entry {
        index: RaftIndex,
        term: Term,
        data: &'a [u8],
    },
    HardState(HardState),
    Snapshot(SnapshotMarker),
    Metadata(&'a [u8]),
}

/// A decoded record, owning its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Entry(Entry),
    HardState(HardState),
    Snapshot(SnapshotMarker),
    Metadata(Vec<u8>),
    Truncate(RaftIndex),
    Seal,
}

/// A frame's total length, padding included, for a payload of `payload_len` bytes.
pub fn frame_len(payload_len: usize) -> usize {
    (FRAME_HEADER_LEN + payload_len + 7) & !7
}

/// The payload length of the frame a record (or an internal truncate/seal) encodes to.
pub fn payload_len(record: &Record<'_>) -> usize {
    match record {
        Record::Entry { data, .. } => 16 + data.len(),
        Record::HardState(_) => 24,
        Record::Snapshot(_) => 16,
        Record::Metadata(m) => m.len(),
    }
}

/// Length of a truncate frame.
pub const TRUNCATE_FRAME_LEN: usize = (FRAME_HEADER_LEN + 8 + 7) & !7;
/// Length of a seal frame.
pub const SEAL_FRAME_LEN: usize = (FRAME_HEADER_LEN + 7) & !7;

/// Encodes one frame into the start of `out` (which must hold `frame_len(payload)` bytes) and returns the new
/// chain value.
fn encode_raw(out: &mut [u8], ty: RecordType, parts: &[&[u8]], chain: u32) -> u32 {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    let total = frame_len(n);
    let out = &mut out[..total];
    out[LEN_OFFSET..TYPE_OFFSET].copy_from_slice(&(n as u32).to_le_bytes());
    out[TYPE_OFFSET] = ty as u8;
    out[RESERVED_OFFSET..CRC_OFFSET].fill(0);
    let mut at = FRAME_HEADER_LEN;
    for p in parts {
        out[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    out[at..].fill(0);
    let crc = crc32c::crc32c_append(crc32c::crc32c_append(chain, &out[..CRC_OFFSET]), &out[FRAME_HEADER_LEN..at]);
    out[CRC_OFFSET..FRAME_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// Encodes `record` into `out`; returns the new chain value.
pub fn encode(out: &mut [u8], record: &Record<'_>, chain: u32) -> u32 {
    match record {
        Record::Entry { index, term, data } => {
            encode_raw(out, RecordType::Entry, &[&index.0.to_le_bytes(), &term.0.to_le_bytes(), data], chain)
        }
        Record::HardState(h) => encode_raw(
            out,
            RecordType::HardState,
            &[&h.term.0.to_le_bytes(), &h.vote.to_le_bytes(), &h.commit.0.to_le_bytes()],
            chain,
        ),
        Record::Snapshot(s) => {
            encode_raw(out, RecordType::Snapshot, &[&s.index.0.to_le_bytes(), &s.term.0.to_le_bytes()], chain)
        }
        Record::Metadata(m) => encode_raw(out, RecordType::Metadata, &[m], chain),
    }
}

/// Encodes a truncate record (entries from `from` on are discarded).
pub fn encode_truncate(out: &mut [u8], from: RaftIndex, chain: u32) -> u32 {
    encode_raw(out, RecordType::Truncate, &[&from.0.to_le_bytes()], chain)
}

/// Encodes the seal that ends a segment.
pub fn encode_seal(out: &mut [u8], chain: u32) -> u32 {
    encode_raw(out, RecordType::Seal, &[], chain)
}

/// What the reader found at an offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A valid frame of `len` bytes; `crc` continues the chain.
    Valid { record: Decoded, len: usize, crc: u32 },
    /// Eight zero bytes: nothing was ever written here (invariant 2).
    End,
    /// The header is impossible (unknown type, reserved bits set, length past the data): no torn write makes this.
    BadHeader(&'static str),
    /// A well-formed header whose frame is cut short by the end of the data.
    Truncated { len: usize },
    /// A well-formed header whose checksum, padding or payload does not verify; `len` is the frame it claims.
    BadChecksum { len: usize },
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn decode_payload(ty: RecordType, p: &[u8]) -> Option<Decoded> {
    let fixed = |n: usize| p.len() == n;
    Some(match ty {
        RecordType::Entry if p.len() >= 16 => {
            Decoded::Entry(Entry { index: RaftIndex(u64_at(p, 0)), term: Term(u64_at(p, 8)), data: p[16..].to_vec() })
        }
        RecordType::HardState if fixed(24) => Decoded::HardState(HardState {
            term: Term(u64_at(p, 0)),
            vote: u64_at(p, 8),
            commit: RaftIndex(u64_at(p, 16)),
        }),
        RecordType::Snapshot if fixed(16) => {
            Decoded::Snapshot(SnapshotMarker { index: RaftIndex(u64_at(p, 0)), term: Term(u64_at(p, 8)) })
        }
        RecordType::Metadata => Decoded::Metadata(p.to_vec()),
        RecordType::Truncate if fixed(8) => Decoded::Truncate(RaftIndex(u64_at(p, 0))),
        RecordType::Seal if fixed(0) => Decoded::Seal,
        _ => return None,
    })
}

/// Reads the frame at the start of `data`, verifying it against `chain`.
pub fn decode(data: &[u8], chain: u32) -> Frame {
    if data.len() < 8 || data[..8].iter().all(|&b| b == 0) {
        return Frame::End;
    }
    let n = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let Some(ty) = RecordType::from_u8(data[TYPE_OFFSET]) else {
        return Frame::BadHeader("unknown record type");
    };
    if data[RESERVED_OFFSET..CRC_OFFSET].iter().any(|&b| b != 0) {
        return Frame::BadHeader("reserved header bytes are not zero");
    }
    if n > MAX_PAYLOAD {
        return Frame::BadHeader("record length out of range");
    }
    let len = frame_len(n);
    if len > data.len() {
        return Frame::Truncated { len };
    }
    let stored = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    let payload = &data[FRAME_HEADER_LEN..FRAME_HEADER_LEN + n];
    let crc = crc32c::crc32c_append(crc32c::crc32c_append(chain, &data[..CRC_OFFSET]), payload);
    let padding_clean = data[FRAME_HEADER_LEN + n..len].iter().all(|&b| b == 0);
    if crc != stored || !padding_clean {
        return Frame::BadChecksum { len };
    }
    match decode_payload(ty, payload) {
        Some(record) => Frame::Valid { record, len, crc },
        // The checksum matched, so these bytes are what a writer wrote: a payload that does not parse is damage.
        None => Frame::BadHeader("payload does not match its record type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(record: Record<'_>, expect: Decoded) {
        let mut buf = vec![0xEEu8; frame_len(payload_len(&record)) + 8];
        let crc = encode(&mut buf, &record, 77);
        let len = frame_len(payload_len(&record));
        assert_eq!(len % 8, 0);
        assert_eq!(decode(&buf[..len], 77), Frame::Valid { record: expect, len, crc });
        // Another chain seed (a stale frame from another segment) never verifies.
        assert!(matches!(decode(&buf[..len], 78), Frame::BadChecksum { .. }));
    }

    #[test]
    fn every_record_type_round_trips() {
        roundtrip(
            Record::Entry { index: RaftIndex(7), term: Term(3), data: b"hello" },
            Decoded::Entry(Entry { index: RaftIndex(7), term: Term(3), data: b"hello".to_vec() }),
        );
        let hs = HardState { term: Term(9), vote: 2, commit: RaftIndex(40) };
        roundtrip(Record::HardState(hs), Decoded::HardState(hs));
        let snap = SnapshotMarker { index: RaftIndex(100), term: Term(4) };
        roundtrip(Record::Snapshot(snap), Decoded::Snapshot(snap));
        roundtrip(Record::Metadata(b""), Decoded::Metadata(vec![]));
        roundtrip(Record::Metadata(&[1; 300]), Decoded::Metadata(vec![1; 300]));
        let mut buf = [0u8; 32];
        let crc = encode_truncate(&mut buf, RaftIndex(5), 1);
        assert_eq!(
            decode(&buf, 1),
            Frame::Valid { record: Decoded::Truncate(RaftIndex(5)), len: TRUNCATE_FRAME_LEN, crc }
        );
        let crc = encode_seal(&mut buf, 2);
        assert_eq!(decode(&buf, 2), Frame::Valid { record: Decoded::Seal, len: SEAL_FRAME_LEN, crc });
    }

    #[test]
    fn damage_is_classified() {
        let mut buf = vec![0u8; 64];
        encode(&mut buf, &Record::Metadata(b"abcdefgh"), 0);
        let len = frame_len(8);
        for i in 0..len {
            let mut b = buf.clone();
            b[i] ^= 0x01;
            let got = decode(&b, 0);
            assert!(!matches!(got, Frame::Valid { .. } | Frame::End), "flip at {i} went unnoticed: {got:?}");
        }
        assert_eq!(decode(&[0u8; 16], 0), Frame::End);
        assert_eq!(decode(&buf[..len - 8], 0), Frame::Truncated { len });
        let mut b = buf.clone();
        b[4] = 99;
        assert_eq!(decode(&b, 0), Frame::BadHeader("unknown record type"));
    }
}
