//! An `events.k8s.io/v1` event recorder: client-go's `tools/events` (`EventBroadcaster`,
//! `EventRecorder`, `series` for repeats) with `tools/record`'s correlation (aggregation of
//! similar events and a per-object spam filter).
//!
//! ```no_run
//! use ferrokube_client::Client;
//! use ferrokube_client::events::{BroadcasterConfig, EventBroadcaster, EventType};
//! use k8s_openapi::api::core::v1::ConfigMap;
//!
//! # async fn demo(client: Client, cm: ConfigMap) {
//! let broadcaster = EventBroadcaster::new(client, BroadcasterConfig::default());
//! let recorder = broadcaster.recorder("example.com/my-controller", "my-controller-0");
//! // Never blocks, never fails.
//! recorder.event(&cm, None, EventType::Normal, "Synced", "Sync", "config is in sync");
//! broadcaster.shutdown().await; // writes what is pending
//! # }
//! ```
//!
//! What happens to one [`Recorder::event`] call, in the broadcaster's task:
//!
//! 1. **Queue.** The call pushes into a bounded queue ([`BroadcasterConfig::queue_capacity`],
//!    1000) and returns; when the queue is full the event is dropped and counted.
//! 2. **Aggregation** (`EventAggregator`). Events differing only in their note are similar;
//!    once 10 different notes were seen with no pause over 10 minutes, each further new note
//!    goes to one aggregate event whose note is `(combined from similar events): <note>`.
//! 3. **Spam filter** (`EventSourceObjectSpamFilter`). Each reporting controller + instance +
//!    object has a token bucket of 25 events refilled with one every 5 minutes; events over
//!    it are dropped (logged at debug).
//! 4. **Series.** An event is identified by regarding object (without its resourceVersion),
//!    related object, type, reason, action, reporting controller and instance, and note. The
//!    first occurrence is created (POST) as `<regarding name>.<nanoseconds in hex>` in the
//!    regarding object's namespace (`default` for cluster-scoped objects). Repeats within the
//!    series window (6 minutes since the last occurrence) update `series.count` and
//!    `series.lastObservedTime` in memory, and a periodic flush
//!    ([`BroadcasterConfig::flush_interval`]) writes them with one merge PATCH of `series`.
//! 5. **Writes** run concurrently, each retried with a short bounded backoff on transport
//!    errors, timeouts, 429 and 5xx; a PATCH of a vanished event becomes a create. Failures are
//!    logged and counted, never returned.
//!
//! [`EventBroadcaster::metrics`] counts each outcome ([`EventMetrics`]).

mod broadcaster;
mod config;
mod correlate;
mod lru;
mod recorder;
mod series;
#[cfg(test)]
mod tests;

pub use broadcaster::{EventBroadcaster, EventMetrics};
pub use config::BroadcasterConfig;
pub use correlate::COMBINED_NOTE_PREFIX;
pub use recorder::{
    ByDynamicObject, ByReference, ByResource, EventType, MAX_NOTE_LEN, MAX_REASON_LEN, Recorder,
    ToReference,
};
pub use series::CLUSTER_SCOPED_NAMESPACE;
