//! A client-go-style REST client for Kubernetes, built on [`kube::Client`].
//!
//! `kube` does HTTP, TLS, authentication and kubeconfig parsing; this crate adds what client-go
//! users rely on. Its API is being built under the client issue; until then it re-exports the
//! two crates every layer above builds on.

pub use k8s_openapi;
pub use kube;
