//! client-go's `tools/cache` in async Rust: reflector → DeltaFIFO → indexer, shared informers.
//!
//! Built on [`ferrokube_client`]. Its API is being built under the informer issue; until then
//! the crate holds no API.

pub mod backoff;
pub mod decode;
pub mod delta_fifo;
pub mod error;
mod json;
pub mod key;
pub mod list_watch;
pub mod reflector;
pub mod store;
pub mod strip;

pub use delta_fifo::DeltaFifo;
pub use error::Error;
pub use key::DeletedFinalStateUnknown;
pub use store::Indexer;
pub mod shared;

pub use shared::{
    EventHandlerFuncs, InformerConfig, Registration, ResourceEventHandler, SharedIndexInformer,
};
pub mod labels;
pub mod lister;

pub use lister::Lister;
pub mod factory;

pub use factory::SharedInformerFactory;
pub mod compact;
