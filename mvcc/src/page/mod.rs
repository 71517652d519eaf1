//! The page layer: page layout and checksums, the two meta pages and the right to write them, free-space
//! tracking and the page file.

pub mod alloc;
pub mod layout;
pub mod meta;
pub(crate) mod meta_io;
pub mod pager;

pub use layout::{PageId, PageType, TxnId};
