//! Page headers, meta pages and elements: encoding, and decoding that checks every bound against the bytes it
//! is given (see the crate header for the layout).

use crate::{Error, MAGIC, Result, VERSION};

pub const HEADER: usize = 16;
pub const ELEMENT: usize = 16;
pub const BRANCH: u16 = 0x01;
pub const LEAF: u16 = 0x02;
pub const META: u16 = 0x04;
pub const FREELIST: u16 = 0x10;
/// A leaf element that is a bucket.
pub const BUCKET_LEAF: u32 = 0x01;
/// A bucket value's header: root page id and sequence.
pub const BUCKET_HEADER: usize = 16;
/// The meta's bytes covered by its checksum.
const META_SUMMED: usize = 56;

/// A page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl Header {
    pub fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..10].copy_from_slice(&self.flags.to_le_bytes());
        out[10..12].copy_from_slice(&self.count.to_le_bytes());
        out[12..16].copy_from_slice(&self.overflow.to_le_bytes());
    }

    /// The header at the start of `b` (at least [`HEADER`] bytes, which the caller ensures).
    pub fn decode(b: &[u8]) -> Header {
        Header { id: u64_at(b, 0), flags: u16_at(b, 8), count: u16_at(b, 10), overflow: u32_at(b, 12) }
    }
}

/// A meta page's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    pub flags: u32,
    pub root: u64,
    pub sequence: u64,
    pub freelist: u64,
    /// The high-water mark: the first page id past the file's pages.
    pub pgid: u64,
    pub txid: u64,
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

impl Meta {
    /// The 64 bytes of the meta (at page offset [`HEADER`]), checksum included.
    pub fn encode(&self) -> [u8; 64] {
        let mut m = [0u8; 64];
        m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        m[4..8].copy_from_slice(&VERSION.to_le_bytes());
        m[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        m[12..16].copy_from_slice(&self.flags.to_le_bytes());
        m[16..24].copy_from_slice(&self.root.to_le_bytes());
        m[24..32].copy_from_slice(&self.sequence.to_le_bytes());
        m[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        m[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        m[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv1a(&m[..META_SUMMED]);
        m[56..64].copy_from_slice(&sum.to_le_bytes());
        m
    }

    /// The meta in a meta page's bytes (header included), if its magic, version and checksum hold.
    pub fn decode(page: &[u8]) -> std::result::Result<Meta, String> {
        if page.len() < HEADER + 64 {
            return Err("a meta page shorter than a meta".into());
        }
        let h = Header::decode(page);
        if h.flags & META == 0 {
            return Err(format!("page flags {:#x} are not a meta's", h.flags));
        }
        let m = &page[HEADER..HEADER + 64];
        if u32_at(m, 0) != MAGIC {
            return Err("not a bbolt file (magic)".into());
        }
        if u32_at(m, 4) != VERSION {
            return Err(format!("version {} (expected {VERSION})", u32_at(m, 4)));
        }
        if fnv1a(&m[..META_SUMMED]) != u64_at(m, 56) {
            return Err("checksum mismatch".into());
        }
        Ok(Meta {
            page_size: u32_at(m, 8),
            flags: u32_at(m, 12),
            root: u64_at(m, 16),
            sequence: u64_at(m, 24),
            freelist: u64_at(m, 32),
            pgid: u64_at(m, 40),
            txid: u64_at(m, 48),
        })
    }
}

/// One element of a leaf or branch page, bounds-checked against the page's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Element<'a> {
    pub flags: u32,
    pub key: &'a [u8],
    /// A leaf element's value (empty for a branch element).
    pub value: &'a [u8],
    /// A branch element's child page.
    pub child: u64,
}

/// Element `i` of the page `b` (its whole span, overflow included), checked: the element table and the key and
/// value it points at lie inside `b`.
pub fn element(b: &[u8], flags: u16, i: usize, page: u64) -> Result<Element<'_>> {
    let bad = |what: String| Error::Invalid { page, what };
    let at = HEADER + i * ELEMENT;
    if at + ELEMENT > b.len() {
        return Err(bad(format!("element {i} lies past the page")));
    }
    let e = &b[at..at + ELEMENT];
    let span = |pos: u32, len: u64| -> Result<std::ops::Range<usize>> {
        let start = at as u64 + u64::from(pos);
        let end = start + len;
        if end > b.len() as u64 {
            return Err(bad(format!("element {i} points past the page ({start}..{end} of {})", b.len())));
        }
        Ok(start as usize..end as usize)
    };
    if flags & LEAF != 0 {
        let (eflags, pos, ksize, vsize) = (u32_at(e, 0), u32_at(e, 4), u32_at(e, 8), u32_at(e, 12));
        let all = span(pos, u64::from(ksize) + u64::from(vsize))?;
        let (k, v) = b[all].split_at(ksize as usize);
        Ok(Element { flags: eflags, key: k, value: v, child: 0 })
    } else {
        let (pos, ksize, child) = (u32_at(e, 0), u32_at(e, 4), u64_at(e, 8));
        let k = span(pos, u64::from(ksize))?;
        Ok(Element { flags: 0, key: &b[k], value: &[], child })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip_and_checksum() {
        let m = Meta { page_size: 4096, flags: 0, root: 3, sequence: 0, freelist: 2, pgid: 9, txid: 4 };
        let mut page = vec![0u8; 4096];
        Header { id: 0, flags: META, count: 0, overflow: 0 }.encode(&mut page);
        page[HEADER..HEADER + 64].copy_from_slice(&m.encode());
        assert_eq!(Meta::decode(&page), Ok(m));
        page[HEADER + 20] ^= 1;
        assert!(Meta::decode(&page).unwrap_err().contains("checksum"));
    }

    #[test]
    fn fnv1a_is_the_standard_one() {
        // FNV-1a 64 of "a" (the published test vector).
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
