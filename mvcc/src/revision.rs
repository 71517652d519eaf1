//! Revisions: etcd's (main, sub) pair. `main` grows by one per write transaction; `sub` numbers the changes inside
//! it. Encoded big-endian (main, then sub, 8 bytes each), so byte order is revision order and the B+tree's key
//! order is history order.

use std::fmt;

/// A write's position in history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// Bytes of an encoded revision.
pub const REVISION_LEN: usize = 16;

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The B+tree key of this revision.
    pub fn encode(self) -> [u8; REVISION_LEN] {
        let mut b = [0u8; REVISION_LEN];
        b[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        b[8..].copy_from_slice(&(self.sub as u64).to_be_bytes());
        b
    }

    /// Decodes a B+tree key.
    pub fn decode(b: &[u8]) -> Option<Revision> {
        if b.len() != REVISION_LEN {
            return None;
        }
        let mut m = [0u8; 8];
        let mut s = [0u8; 8];
        m.copy_from_slice(&b[..8]);
        s.copy_from_slice(&b[8..]);
        Some(Revision { main: u64::from_be_bytes(m) as i64, sub: u64::from_be_bytes(s) as i64 })
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn byte_order_is_revision_order(a in (0i64..i64::MAX, 0i64..1000), b in (0i64..i64::MAX, 0i64..1000)) {
            let (ra, rb) = (Revision::new(a.0, a.1), Revision::new(b.0, b.1));
            prop_assert_eq!(ra.cmp(&rb), ra.encode().cmp(&rb.encode()));
            prop_assert_eq!(Revision::decode(&ra.encode()), Some(ra));
        }
    }
}
