//! The engine's one error type: what went wrong, in words a caller can show a person.

/// Everything an engine call can fail with.
///
/// Bad input is always reported *before* anything is written, so an error other than
/// [`Error::Storage`] means the stored data is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong: an impossible page size, an oversized or empty payload,
    /// a malformed cursor, a user acting on themselves where that makes no sense.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A user, post or follow request that the request names does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The actor may not do this (delete someone else's post, follow someone who blocked them).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A unique name is taken.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The engine is at a configured bound (fanout backlog full); retry later.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The engine is shutting down and takes no new writes.
    #[error("engine is shutting down")]
    ShuttingDown,
    /// RocksDB failed, or a stored record did not decode. The data may need attention.
    #[error("storage: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// An [`Error::InvalidArgument`] from anything printable.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// An [`Error::NotFound`] from anything printable.
    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }

    /// A [`Error::Storage`] for a stored record that does not decode.
    pub fn corrupt(what: impl Into<String>) -> Self {
        Error::Storage(Box::new(Corruption(what.into())))
    }
}

/// A stored record that does not decode: kept as the source of an [`Error::Storage`].
#[derive(Debug, thiserror::Error)]
#[error("corrupt record: {0}")]
pub struct Corruption(pub String);

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
