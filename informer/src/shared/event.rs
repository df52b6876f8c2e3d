//! [`Event`]: what an informer tells a registration, and [`EventStream`]: a registration
//! consumed as a [`Stream`] instead of through a handler.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use futures::Stream;

use super::listener::Receiver;
use crate::delta_fifo::DeltaObject;

/// A change an informer tells a registration about: what a [`ResourceEventHandler`] is
/// called with, as a value (client-go's `addNotification`, `updateNotification`,
/// `deleteNotification`).
///
/// Objects are the cache's own `Arc`s, never copies.
///
/// [`ResourceEventHandler`]: super::ResourceEventHandler
pub enum Event<K> {
    /// An object appeared; `initial` is true for the informer's initial contents (and for
    /// the replay a registration added late gets).
    Added {
        /// The object.
        object: Arc<K>,
        /// Whether it belongs to the initial contents.
        initial: bool,
    },
    /// An object changed (also sent on resync, with `old` and `new` the same object).
    Updated {
        /// The object as it was cached before.
        old: Arc<K>,
        /// The object now.
        new: Arc<K>,
    },
    /// An object was deleted: its last state, or a [`DeletedFinalStateUnknown`] when the
    /// deletion was only noticed on a relist.
    ///
    /// [`DeletedFinalStateUnknown`]: crate::DeletedFinalStateUnknown
    Deleted(DeltaObject<K>),
}

impl<K> Event<K> {
    /// The object concerned: the added one, the new state, or the last known state.
    pub fn object(&self) -> &Arc<K> {
        match self {
            Self::Added { object, .. } => object,
            Self::Updated { new, .. } => new,
            Self::Deleted(object) => object.object(),
        }
    }

    /// Whether this is an [`Added`](Self::Added) of the initial contents.
    pub fn is_initial(&self) -> bool {
        matches!(self, Self::Added { initial: true, .. })
    }
}

impl<K> Clone for Event<K> {
    fn clone(&self) -> Self {
        match self {
            Self::Added { object, initial } => Self::Added {
                object: Arc::clone(object),
                initial: *initial,
            },
            Self::Updated { old, new } => Self::Updated {
                old: Arc::clone(old),
                new: Arc::clone(new),
            },
            Self::Deleted(object) => Self::Deleted(object.clone()),
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for Event<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Added { object, initial } => f
                .debug_struct("Added")
                .field("object", object)
                .field("initial", initial)
                .finish(),
            Self::Updated { old, new } => f
                .debug_struct("Updated")
                .field("old", old)
                .field("new", new)
                .finish(),
            Self::Deleted(object) => f.debug_tuple("Deleted").field(object).finish(),
        }
    }
}

impl<K: PartialEq> PartialEq for Event<K> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Self::Added { object, initial },
                Self::Added {
                    object: o,
                    initial: i,
                },
            ) => object == o && initial == i,
            (Self::Updated { old, new }, Self::Updated { old: o, new: n }) => old == o && new == n,
            (Self::Deleted(a), Self::Deleted(b)) => a == b,
            _ => false,
        }
    }
}

/// What an informer's registrations are removed through, whatever their type.
pub(crate) trait Listeners: Send + Sync {
    fn remove_listener(&self, id: u64);
}

/// A registration's notifications as a [`Stream`], from
/// [`SharedIndexInformer::add_event_stream`](super::SharedIndexInformer::add_event_stream).
///
/// It yields the informer's contents as initial [`Event::Added`]s, then every change, in the
/// order a handler would see them. Its buffer is unbounded, so a slow consumer delays only
/// itself (and holds what it has not read yet). An initial add counts as handled for
/// [`Registration::has_synced`](super::Registration::has_synced) once it was yielded.
///
/// It ends when the registration is removed or the informer stops (after what is already
/// buffered). Dropping it removes the registration.
#[must_use = "streams do nothing unless polled; dropping it removes the registration"]
pub struct EventStream<K> {
    receiver: Receiver<K>,
    /// Removes the registration on drop.
    _registered: Registered,
}

impl<K> EventStream<K> {
    pub(crate) fn new(receiver: Receiver<K>, id: u64, informer: Weak<dyn Listeners>) -> Self {
        Self {
            receiver,
            _registered: Registered { id, informer },
        }
    }
}

impl<K> fmt::Debug for EventStream<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("id", &self._registered.id)
            .finish_non_exhaustive()
    }
}

impl<K> Stream for EventStream<K> {
    type Item = Event<K>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<K>>> {
        let this = self.get_mut();
        let polled = this.receiver.poll_recv(cx);
        if let Poll::Ready(Some(event)) = &polled
            && event.is_initial()
        {
            this.receiver.handled_initial();
        }
        polled
    }
}

/// A stream's registration, removed when the stream is dropped.
struct Registered {
    id: u64,
    informer: Weak<dyn Listeners>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(informer) = self.informer.upgrade() {
            informer.remove_listener(self.id);
        }
    }
}
