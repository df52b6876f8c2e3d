//! client-go's `tools/cache` in async Rust: reflector → DeltaFIFO → indexer, shared informers.
//!
//! Built on [`ferrokube_client`]. Its API is being built under the informer issue; until then
//! the crate holds no API.

pub mod decode;
mod json;
pub mod list_watch;
pub mod strip;
pub mod backoff;
pub mod reflector;
