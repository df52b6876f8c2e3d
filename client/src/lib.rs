//! A client-go-style REST client for Kubernetes, built on [`kube::Client`].
//!
//! `kube` does HTTP, TLS, authentication plugins and kubeconfig parsing; this crate adds what
//! client-go users rely on: a [`Config`] with QPS/burst throttling counted on every request,
//! `Retry-After` handling, typed access to any resource ([`Api`]), a dynamic client, a raw
//! [`Request`] builder, one [`Error`] type with client-go's `IsNotFound`-style helpers, and
//! [`retry::retry_on_conflict`].
//!
//! ```no_run
//! use ferrokube_client::{Client, Config, ListOptions};
//! use k8s_openapi::api::core::v1::Pod;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Config::infer().await?.with_qps(50.0).with_burst(100).build()?;
//! let pods = client.all::<Pod>().list(&ListOptions::default()).await?;
//! println!("There are {} pods in the cluster", pods.items.len());
//! # Ok(()) }
//! ```

pub mod api;
pub mod client;
pub mod config;
pub mod discovery;
pub mod error;
pub mod events;
pub mod exec;
pub mod leader_election;
pub mod logs;
pub mod metrics;
pub mod options;
pub mod portforward;
pub mod proxy;
pub mod request;
pub mod restmapper;
pub mod retry;
#[doc(hidden)]
pub mod skip;
pub mod throttle;
pub mod watch;

pub use api::{Api, Deleted};
pub use client::Client;
pub use config::{Config, ConfigError};
pub use discovery::{Discovery, ResourceInfo};
pub use error::{ApiError, Error, Result, Status};
pub use events::{BroadcasterConfig, EventBroadcaster, EventType, Recorder};
pub use exec::{AttachOptions, AttachedProcess, ExecOptions};
pub use leader_election::{LeaderElectionConfig, LeaderElector, LeaderEvent};
pub use logs::{LogOptions, LogStream};
pub use options::{
    DeleteOptions, ListOptions, Patch, PatchOptions, PropagationPolicy, ResourceVersionMatch,
    WriteOptions,
};
pub use request::Request;
pub use restmapper::RestMapper;
pub use watch::WatchEvent;

pub use k8s_openapi;
pub use kube;
