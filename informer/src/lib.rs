//! Informers for Kubernetes controllers: client-go's `tools/cache` (reflector → DeltaFIFO →
//! indexer, shared informers, listers) in async Rust.
//!
//! A [`SharedIndexInformer`] lists and watches one resource type through a
//! [`Reflector`](reflector::Reflector), keeps an indexed, thread-safe cache of it (an
//! [`Indexer`] holding `Arc`s, never copies) and calls any number of
//! [`ResourceEventHandler`]s, each with its own buffer and resync period. A
//! [`SharedInformerFactory`] hands out one informer per type and scope and a typed [`Lister`]
//! to read its cache.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use ferrokube_client::Client;
//! use ferrokube_informer::labels::Selector;
//! use ferrokube_informer::{EventHandlerFuncs, SharedInformerFactory};
//! use k8s_openapi::api::core::v1::Pod;
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::try_default().await?;
//! let factory = SharedInformerFactory::new(client, Some(Duration::from_secs(600)))
//!     .namespace("default");
//!
//! let pods = factory.informer_for::<Pod>();
//! let _registration = pods.add_event_handler(EventHandlerFuncs::default().on_add(
//!     |pod: Arc<Pod>, _initial_list| println!("added {:?}", pod.metadata.name),
//! ));
//! let lister = factory.lister_for::<Pod>();
//!
//! let cancel = CancellationToken::new();
//! factory.start();
//! factory.wait_for_cache_sync(&cancel).await;
//! for pod in lister.list(&Selector::everything()) {
//!     println!("cached {:?}", pod.metadata.name);
//! }
//! factory.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The parts, bottom up: [`ListWatch`] (the list and watch requests, decoded while the bytes
//! arrive, without `managedFields` by default), [`Reflector`](reflector::Reflector) (list, then
//! watch from the last resourceVersion, relist and back off as client-go does), [`DeltaFifo`],
//! [`Indexer`], [`SharedIndexInformer`], [`SharedInformerFactory`], [`Lister`]; and
//! [`compact`], a cache that keeps objects as compact JSON for large, rarely read caches.

pub mod compact;
pub mod decode;
pub mod delta_fifo;
mod error;
pub mod factory;
mod json;
pub mod key;
pub mod labels;
pub mod list_watch;
pub mod lister;
pub mod reflector;
pub mod shared;
pub mod store;
mod strip;

pub use delta_fifo::DeltaFifo;
pub use error::Error;
pub use factory::SharedInformerFactory;
pub use key::DeletedFinalStateUnknown;
pub use list_watch::{ListWatch, ListWatchError};
pub use lister::Lister;
pub use shared::{
    Event, EventHandlerFuncs, EventStream, InformerConfig, Registration, ResourceEventHandler,
    SharedIndexInformer,
};
pub use store::Indexer;
