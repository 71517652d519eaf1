//! bbolt's file format, the database inside etcd's snapshots (`etcdctl snapshot save`) and data directories
//! (`member/snap/db`), written and read by ferrokv's own code: a writer that streams a whole file from sorted
//! entries ([`write`]) and a reader that never trusts its input ([`Reader`]).
//!
//! **On-disk format** (bbolt 1.3, little-endian on every platform etcd runs on; `docs/format-bbolt.md` has the
//! tables):
//! - The file is pages of `page_size` bytes; page `n` starts at `n * page_size`. A page starts with a 16-byte
//!   header: id (u64), flags (u16: 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist), count (u16), overflow (u32:
//!   how many more pages the page spans).
//! - Pages 0 and 1 are metas (at offset 16): magic 0xED0CDAED, version 2, page size, flags, the root bucket
//!   (root page id, sequence), the freelist page id, the high-water page id, the transaction id, and an FNV-1a
//!   64-bit checksum of the 56 bytes before it. The valid meta with the higher transaction id is current.
//! - A leaf holds `count` 16-byte elements (flags u32, pos u32, ksize u32, vsize u32), `pos` counting from the
//!   element itself to its key, the value following the key. A branch holds 16-byte elements (pos u32, ksize u32,
//!   child page id u64), each child's first key.
//! - The root bucket is a leaf/branch tree whose entries with flag 0x01 are buckets: the value is the bucket's
//!   root page id (u64) and sequence (u64), followed, when the root id is 0, by the bucket's one page inline.
//! - The freelist page holds `count` page ids (u64); a count of 0xFFFF means the first id is the real count.
//!
//! **Layers**: `page` (headers and elements, bounds-checked), `write` (layout, then the pages in file order),
//! `read` (meta selection, bucket lookup, ordered iteration with every bound checked).

mod error;
mod page;
mod read;
mod write;

pub use error::{Error, Result};
pub use read::Reader;
pub use write::{Source, WriteOptions, write};

/// What receives a bucket's entries, one (key, value) at a time, in key order.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// bbolt's magic number.
pub const MAGIC: u32 = 0xED0C_DAED;
/// The format version bbolt 1.3 writes.
pub const VERSION: u32 = 2;
/// The page size ferrokv writes (bbolt's default on 4 KiB-page systems).
pub const DEFAULT_PAGE_SIZE: usize = 4096;
