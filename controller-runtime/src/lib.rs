//! controller-runtime for Rust: one dependency that brings ferrokube's client, informers and
//! work queues, plus [`envtest`] (feature `envtest`) to run a real API server in tests.
//!
//! ```no_run
//! use ferrokube_runtime::client::kube;
//! # async fn demo() -> Result<(), kube::Error> {
//! let client = kube::Client::try_default().await?;
//! # Ok(()) }
//! ```
//!
//! The manager, controllers and reconcilers are not built yet; this crate re-exports the
//! lower layers ([`client`], [`informer`], [`workqueue`]) so that a user adds one dependency.

pub use ferrokube_client as client;
pub use ferrokube_informer as informer;
pub use ferrokube_workqueue as workqueue;

#[cfg(feature = "envtest")]
pub mod envtest;
