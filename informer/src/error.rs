//! The crate's error type for the in-memory cache: keys, the store and its indices.

/// What went wrong in the informer cache (keys, [`Indexer`](crate::store::Indexer)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No index function is registered under this name.
    #[error("index with name {name} does not exist")]
    IndexNotFound {
        /// The index name asked for.
        name: String,
    },
    /// An index function is already registered under this name (client-go's "indexer
    /// conflict").
    #[error("indexer conflict: an index named {name} already exists")]
    IndexConflict {
        /// The name registered twice.
        name: String,
    },
    /// A store key is neither `name` nor `namespace/name` (client-go's
    /// `SplitMetaNamespaceKey` error).
    #[error("unexpected key format: {key:?}")]
    InvalidKey {
        /// The key that could not be split.
        key: String,
    },
}
