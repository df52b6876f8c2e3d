//! Rate-limited work queues in the shape of client-go's `util/workqueue`, generic over the key
//! type and built for async Rust.
//!
//! This crate depends on nothing Kubernetes-specific. Its queues are being built under the
//! workqueue issue; until then the crate holds no API.
