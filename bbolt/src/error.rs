//! The bbolt crate's one error type.

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything reading or writing a bbolt file can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Writing the file (or reading it) failed.
    #[error("bbolt: {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The file breaks bbolt's format: which page, and what is wrong. Never a panic, whatever the input.
    #[error("bbolt: invalid database: page {page}: {what}")]
    Invalid { page: u64, what: String },
    /// Neither meta page is valid.
    #[error("bbolt: invalid database: no valid meta page ({0})")]
    NoMeta(String),
    /// A bucket the caller asked for is not in the file.
    #[error("bbolt: bucket {0:?} not found")]
    NoBucket(String),
    /// What the caller handed the writer cannot be written (keys out of order, an empty key, too large).
    #[error("bbolt: cannot write: {0}")]
    Input(String),
    /// The caller's source of entries failed.
    #[error("bbolt: the source failed: {0}")]
    Source(String),
}
