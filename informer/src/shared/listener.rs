//! One registered handler: a thread draining its own unbounded buffer of notifications
//! (client-go's `processorListener`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::handler::ResourceEventHandler;
use crate::delta_fifo::DeltaObject;

/// What a listener is told.
pub(crate) enum Notification<K> {
    Add { object: Arc<K>, initial: bool },
    Update { old: Arc<K>, new: Arc<K> },
    Delete(DeltaObject<K>),
}

impl<K> Clone for Notification<K> {
    fn clone(&self) -> Self {
        match self {
            Self::Add { object, initial } => Self::Add {
                object: Arc::clone(object),
                initial: *initial,
            },
            Self::Update { old, new } => Self::Update {
                old: Arc::clone(old),
                new: Arc::clone(new),
            },
            Self::Delete(o) => Self::Delete(o.clone()),
        }
    }
}

pub(crate) struct Listener<K> {
    pub(crate) id: u64,
    sender: mpsc::Sender<Notification<K>>,
    /// Initial-list notifications queued but not yet handled.
    pub(crate) pending_initial: Arc<AtomicUsize>,
    pub(crate) resync_period: Option<Duration>,
    next_resync: Mutex<Instant>,
}

impl<K: Send + Sync + 'static> Listener<K> {
    pub(crate) fn spawn(
        id: u64,
        name: &str,
        handler: Arc<dyn ResourceEventHandler<K>>,
        resync_period: Option<Duration>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel::<Notification<K>>();
        let pending_initial = Arc::new(AtomicUsize::new(0));
        let pending = Arc::clone(&pending_initial);
        let thread_name = format!("informer-{name}-{id}");
        let run = move || {
            for n in receiver {
                let initial = matches!(n, Notification::Add { initial: true, .. });
                let outcome = catch_unwind(AssertUnwindSafe(|| match n {
                    Notification::Add { object, initial } => handler.on_add(object, initial),
                    Notification::Update { old, new } => handler.on_update(old, new),
                    Notification::Delete(o) => handler.on_delete(o),
                }));
                if outcome.is_err() {
                    tracing::error!(
                        listener = id,
                        "an event handler panicked; the event was skipped"
                    );
                }
                if initial {
                    pending.fetch_sub(1, Ordering::AcqRel);
                }
            }
        };
        if let Err(e) = std::thread::Builder::new().name(thread_name).spawn(run) {
            tracing::error!(error = %e, "cannot start an event handler thread");
        }
        Self {
            id,
            sender,
            pending_initial,
            resync_period,
            next_resync: Mutex::new(Instant::now() + resync_period.unwrap_or(Duration::MAX / 4)),
        }
    }

    pub(crate) fn send(&self, n: Notification<K>) {
        if matches!(n, Notification::Add { initial: true, .. }) {
            self.pending_initial.fetch_add(1, Ordering::AcqRel);
        }
        // A send fails only once the thread is gone (it panicked outside a handler).
        let _ = self.sender.send(n);
    }

    /// Whether this listener's resync is due at `now`; if so, schedules the next one.
    pub(crate) fn resync_due(&self, now: Instant) -> bool {
        let Some(period) = self.resync_period else {
            return false;
        };
        let mut next = self.next_resync.lock();
        if now >= *next {
            *next = now + period;
            true
        } else {
            false
        }
    }
}
