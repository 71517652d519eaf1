//! The page layer: page layout and checksums, the two meta pages, free-space tracking and the page file.

pub mod alloc;
pub mod layout;
pub mod meta;
pub mod pager;

pub use layout::{PageId, PageType, TxnId};
