//! controller-runtime for Rust: write a Kubernetes operator as a [`Reconciler`] and let a
//! [`Manager`] run it — shared informer cache, priority work queue with per-key backoff,
//! leader election with warm standby, Prometheus metrics, health probes and graceful shutdown.
//!
//! One dependency brings every layer: [`client`] (REST client), [`informer`] (caches),
//! [`workqueue`] (rate-limited queues), plus [`kube`], [`k8s_openapi`] and
//! [`CancellationToken`]; [`envtest`] (feature `envtest`) runs a real API server in tests.
//!
//! # From an empty `main` to a running controller
//!
//! A reconciler reads the object a request names from the cache, brings the world in line,
//! and says when to look again. This one keeps a `ConfigMap` labelled `greeting=true` holding
//! a `greeting` key:
//!
//! ```no_run
//! use std::time::Duration;
//! use ferrokube_runtime::prelude::*;
//! use k8s_openapi::api::core::v1::ConfigMap;
//!
//! struct Greeter {
//!     client: CachedClient,
//! }
//!
//! impl Reconciler for Greeter {
//!     type Error = ferrokube_runtime::cached_client::Error;
//!
//!     async fn reconcile(&self, request: Request, _ctx: Context) -> Result<Action, Self::Error> {
//!         // Reads come from the cache: no API call, an `Arc` of the cached object.
//!         let Some(cm) = self.client.get_request::<ConfigMap>(&request).await? else {
//!             return Ok(Action::done()); // deleted
//!         };
//!         if cm.data.as_ref().is_some_and(|d| d.contains_key("greeting")) {
//!             return Ok(Action::done());
//!         }
//!         // Writes go to the API server.
//!         let patch = serde_json::json!({ "data": { "greeting": "hello" } });
//!         self.client.patch(&*cm, &Patch::Merge(patch)).await?;
//!         Ok(Action::requeue_after(Duration::from_secs(600)))
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = Config::infer().await?;
//!     let manager = Manager::new(
//!         &config,
//!         ManagerOptions::default()
//!             .leader_election(LeaderElectionOptions::new("default", "greeter"))
//!             .cache(CacheOptions::default().by_object(
//!                 ByObject::<ConfigMap>::new().label_selector("greeting=true"),
//!             )),
//!     )?;
//!     Builder::new(&manager)
//!         .for_with::<ConfigMap>(predicate::resource_version_changed())
//!         .options(ControllerOptions::default().max_concurrent_reconciles(2))
//!         .complete(Greeter { client: manager.client() })?;
//!     // Runs until SIGINT/SIGTERM; serves /metrics, /healthz and /readyz on :8080.
//!     manager.start(shutdown_signal()?).await?;
//!     Ok(())
//! }
//! ```
//!
//! # Custom resources through the one dependency
//!
//! `#[derive(CustomResource)]` works through the re-exports when told where the crates are
//! (add `serde`, `serde_json` and, for a generated schema, `schemars` to your dependencies):
//!
//! ```ignore
//! #[derive(ferrokube_runtime::kube::CustomResource, Clone, Debug, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
//! #[kube(group = "example.com", version = "v1", kind = "Widget", namespaced, status = "WidgetStatus")]
//! #[kube(crates(
//!     kube_core = "::ferrokube_runtime::kube::core",
//!     k8s_openapi = "::ferrokube_runtime::k8s_openapi",
//! ))]
//! struct WidgetSpec { size: i32 }
//! ```
//!
//! (`examples/examples/podcount.rs` in the repository is a complete operator written this way.)
//!
//! # Map
//!
//! | module | controller-runtime | what |
//! |---|---|---|
//! | [`manager`] | `pkg/manager` | [`Manager`]: runs everything, leader election, shutdown |
//! | [`builder`] | `pkg/builder` | [`Builder`]: `for_`, `owns`, `watches`, predicates |
//! | [`reconcile`] | `pkg/reconcile` | [`Reconciler`], [`Request`], [`Action`], terminal errors |
//! | [`controller`] | `pkg/internal/controller` | queue → workers → reconciler |
//! | [`cache`] | `pkg/cache` | one informer per type, field indexes, reads |
//! | [`cached_client`] | `pkg/client` | [`CachedClient`]: cached reads, direct writes |
//! | [`handler`] | `pkg/handler` | events → requests (own object, owner, map) |
//! | [`predicate`] | `pkg/predicate` | event filters (generation, labels, …) |
//! | [`controllerutil`] | `pkg/controller/controllerutil` | finalizers, owner references, create-or-update |
//! | [`metrics`] | `pkg/metrics` | `controller_runtime_*`, `workqueue_*`, `rest_client_*` |
//! | [`server`] | `pkg/healthz` + metrics server | `/metrics`, `/healthz`, `/readyz` |
//! | [`webhook`] | `pkg/webhook`, `pkg/certwatcher` | admission and conversion webhooks over HTTPS, certificate reload |
//!
//! [`Reconciler`]: reconcile::Reconciler
//! [`Request`]: reconcile::Request
//! [`Action`]: reconcile::Action
//! [`Manager`]: manager::Manager
//! [`Builder`]: builder::Builder
//! [`CachedClient`]: cached_client::CachedClient

pub use ferrokube_client as client;
pub use ferrokube_informer as informer;
pub use ferrokube_workqueue as workqueue;
pub use k8s_openapi;
pub use kube;
pub use tokio_util::sync::CancellationToken;

pub mod builder;
pub mod cache;
pub mod cached_client;
pub mod controller;
pub mod controllerutil;
pub mod handler;
pub mod manager;
pub mod metrics;
pub mod predicate;
pub mod reconcile;
pub mod server;
pub mod webhook;

#[cfg(feature = "envtest")]
pub mod envtest;

pub use cached_client::CachedClient;

/// What the crate guide imports: `use ferrokube_runtime::prelude::*;`.
pub mod prelude {
    pub use crate::CancellationToken;
    pub use crate::builder::Builder;
    pub use crate::cache::{ByObject, CacheOptions, ListParams};
    pub use crate::cached_client::CachedClient;
    pub use crate::controller::Options as ControllerOptions;
    pub use crate::manager::{LeaderElectionOptions, Manager, ManagerOptions, shutdown_signal};
    pub use crate::reconcile::{self, Action, Context, Reconciler, Request, TerminalError};
    pub use crate::webhook::server::{Options as WebhookServerOptions, WebhookServer};
    pub use crate::{handler, predicate};
    pub use ferrokube_client::{Client, Config, Patch};
}
