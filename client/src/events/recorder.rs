//! [`Recorder`]: the handle controllers record events with (client-go's `EventRecorder`).

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::core::DynamicObject;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

use super::broadcaster::{EventMetrics, Shared};
use super::correlate::Occurrence;

/// The longest `reason` and `action` the API accepts, in bytes.
pub const MAX_REASON_LEN: usize = 128;
/// The longest `note` the API accepts, in bytes (`NoteLengthLimit`).
pub const MAX_NOTE_LEN: usize = 1024;

/// An event's `type`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum EventType {
    /// Nothing is wrong (`Normal`).
    #[doc(alias = "EventTypeNormal")]
    Normal,
    /// Something may need attention (`Warning`).
    #[doc(alias = "EventTypeWarning")]
    Warning,
}

impl EventType {
    /// The value of the `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something an event can be about: an [`ObjectReference`], any typed [`kube::Resource`]
/// (k8s-openapi types and `#[derive(CustomResource)]` types), or a [`DynamicObject`].
///
/// The `Marker` parameter only keeps these implementations apart; it is always inferred.
#[doc(alias = "GetReference")]
pub trait ToReference<Marker> {
    /// The reference (`apiVersion`, `kind`, `namespace`, `name`, `uid`, `resourceVersion`).
    fn to_reference(&self) -> ObjectReference;
}

/// The [`ToReference`] marker for [`ObjectReference`].
#[derive(Debug)]
pub enum ByReference {}
/// The [`ToReference`] marker for typed resources.
#[derive(Debug)]
pub enum ByResource {}
/// The [`ToReference`] marker for [`DynamicObject`].
#[derive(Debug)]
pub enum ByDynamicObject {}

impl ToReference<ByReference> for ObjectReference {
    fn to_reference(&self) -> ObjectReference {
        self.clone()
    }
}

impl<K: Resource<DynamicType = ()>> ToReference<ByResource> for K {
    fn to_reference(&self) -> ObjectReference {
        ObjectReference {
            resource_version: self.meta().resource_version.clone(),
            ..self.object_ref(&())
        }
    }
}

impl ToReference<ByDynamicObject> for DynamicObject {
    fn to_reference(&self) -> ObjectReference {
        let meta = &self.metadata;
        ObjectReference {
            api_version: self.types.as_ref().map(|t| t.api_version.clone()),
            kind: self.types.as_ref().map(|t| t.kind.clone()),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            field_path: None,
        }
    }
}

/// Records events for one reporting controller and instance. Cheap to clone; get one from
/// [`EventBroadcaster::recorder`](super::EventBroadcaster::recorder).
#[derive(Clone)]
#[doc(alias = "EventRecorder")]
pub struct Recorder {
    shared: Arc<Shared>,
    reporting_controller: Arc<str>,
    reporting_instance: Arc<str>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("reporting_controller", &self.reporting_controller)
            .field("reporting_instance", &self.reporting_instance)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    pub(crate) fn new(
        shared: Arc<Shared>,
        reporting_controller: String,
        reporting_instance: String,
    ) -> Self {
        Self {
            shared,
            reporting_controller: reporting_controller.into(),
            reporting_instance: reporting_instance.into(),
        }
    }

    /// The `reportingController` of this recorder's events.
    pub fn reporting_controller(&self) -> &str {
        &self.reporting_controller
    }

    /// The `reportingInstance` of this recorder's events.
    pub fn reporting_instance(&self) -> &str {
        &self.reporting_instance
    }

    /// Records an event about `regarding` (client-go's `Eventf`).
    ///
    /// Never blocks and never fails: the event is queued for the broadcaster's task, or, when
    /// its queue is full or it has stopped, dropped and counted in
    /// [`EventMetrics::dropped`]. An empty `reason` or `action` (which the API rejects) is
    /// counted in [`EventMetrics::invalid`]. `reason` and `action` are cut to
    /// [`MAX_REASON_LEN`] bytes and `note` to [`MAX_NOTE_LEN`] bytes.
    #[doc(alias = "Eventf")]
    pub fn event<M, R: ToReference<M> + ?Sized>(
        &self,
        regarding: &R,
        related: Option<&ObjectReference>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        let occurrence = Occurrence {
            regarding: regarding.to_reference(),
            related: related.cloned(),
            type_,
            reason: truncated(reason.to_owned(), MAX_REASON_LEN),
            action: truncated(action.to_owned(), MAX_REASON_LEN),
            note: truncated(note.into(), MAX_NOTE_LEN),
            reporting_controller: Arc::clone(&self.reporting_controller),
            reporting_instance: Arc::clone(&self.reporting_instance),
            time: Timestamp::now(),
            at: Instant::now(),
        };
        match self.shared.sender.try_send(occurrence) {
            Ok(()) => self.shared.metrics.recorded.inc(),
            Err(TrySendError::Full(o)) => {
                self.shared.metrics.dropped.inc();
                tracing::trace!(reason = %o.reason, "event queue full: event dropped");
            }
            Err(TrySendError::Closed(o)) => {
                self.shared.metrics.dropped.inc();
                tracing::trace!(reason = %o.reason, "event broadcaster stopped: event dropped");
            }
        }
    }

    /// The broadcaster's counters.
    pub fn metrics(&self) -> EventMetrics {
        self.shared.metrics.snapshot()
    }
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
pub(crate) fn truncated(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::core::{ApiResource, GroupVersionKind};

    fn reference<M, R: ToReference<M> + ?Sized>(r: &R) -> ObjectReference {
        r.to_reference()
    }

    #[test]
    fn references_from_every_kind_of_object() {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("cm".into());
        cm.metadata.namespace = Some("ns".into());
        cm.metadata.uid = Some("u".into());
        cm.metadata.resource_version = Some("7".into());
        let r = reference(&cm);
        assert_eq!(r.api_version.as_deref(), Some("v1"));
        assert_eq!(r.kind.as_deref(), Some("ConfigMap"));
        assert_eq!(r.namespace.as_deref(), Some("ns"));
        assert_eq!(r.name.as_deref(), Some("cm"));
        assert_eq!(r.uid.as_deref(), Some("u"));
        assert_eq!(r.resource_version.as_deref(), Some("7"));
        assert_eq!(reference(&r), r);

        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
        let widget = DynamicObject::new("w", &ar).within("ns");
        let r = reference(&widget);
        assert_eq!(r.api_version.as_deref(), Some("example.com/v1"));
        assert_eq!(r.kind.as_deref(), Some("Widget"));
        assert_eq!(r.name.as_deref(), Some("w"));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncated("abc".into(), 5), "abc");
        assert_eq!(truncated("abcdef".into(), 3), "abc");
        // "é" is two bytes: cutting inside it keeps the character out.
        assert_eq!(truncated("aé".into(), 2), "a");
        assert_eq!(
            truncated("x".repeat(2000), MAX_NOTE_LEN).len(),
            MAX_NOTE_LEN
        );
    }
}
