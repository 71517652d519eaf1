//! The copy-on-write B+tree: page codec (`node`), readers (`read`), the writer (`write`) and the checker.

pub mod check;
pub mod node;
pub mod read;
pub mod write;
