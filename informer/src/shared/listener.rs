//! One registration: its own unbounded buffer of notifications, drained by a Tokio task that
//! calls a handler (client-go's `processorListener`) or by the consumer of an
//! [`EventStream`](super::EventStream).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::event::Event;
use super::handler::ResourceEventHandler;

/// The informer's end of a registration.
pub(crate) struct Listener<K> {
    pub(crate) id: u64,
    sender: mpsc::UnboundedSender<Event<K>>,
    /// Initial-list notifications sent but not yet handled (or received, for a stream).
    pending_initial: Arc<AtomicUsize>,
    pub(crate) resync_period: Option<Duration>,
    next_resync: Mutex<Instant>,
}

impl<K> Listener<K> {
    /// A listener and the receiving end of its buffer.
    pub(crate) fn new(id: u64, resync_period: Option<Duration>) -> (Self, Receiver<K>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let pending_initial = Arc::new(AtomicUsize::new(0));
        let listener = Self {
            id,
            sender,
            pending_initial: Arc::clone(&pending_initial),
            resync_period,
            next_resync: Mutex::new(Instant::now() + resync_period.unwrap_or(Duration::MAX / 4)),
        };
        let receiver = Receiver {
            receiver,
            pending_initial,
        };
        (listener, receiver)
    }

    /// The count of initial notifications not yet handled.
    pub(crate) fn pending_initial(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.pending_initial)
    }

    /// Buffers `event`; it is dropped if the receiving end is gone.
    pub(crate) fn send(&self, event: Event<K>) {
        let initial = event.is_initial();
        if initial {
            self.pending_initial.fetch_add(1, Ordering::AcqRel);
        }
        if self.sender.send(event).is_err() && initial {
            self.pending_initial.fetch_sub(1, Ordering::AcqRel);
        }
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

/// The consuming end of a listener's buffer.
pub(crate) struct Receiver<K> {
    receiver: mpsc::UnboundedReceiver<Event<K>>,
    pending_initial: Arc<AtomicUsize>,
}

impl<K> Receiver<K> {
    /// The next notification; `None` once the listener is removed (and the buffer empty).
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event<K>>> {
        self.receiver.poll_recv(cx)
    }

    /// Counts an initial notification as handled.
    pub(crate) fn handled_initial(&self) {
        self.pending_initial.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where the first panic of a handler waits for `run()` to resume it.
#[derive(Default)]
pub(crate) struct PanicSlot {
    payload: Mutex<Option<Box<dyn Any + Send>>>,
    raised: CancellationToken,
}

impl PanicSlot {
    fn raise(&self, payload: Box<dyn Any + Send>) {
        let mut slot = self.payload.lock();
        if slot.is_none() {
            *slot = Some(payload);
        }
        drop(slot);
        self.raised.cancel();
    }

    /// Completes once a handler panicked.
    pub(crate) fn raised(&self) -> WaitForCancellationFuture<'_> {
        self.raised.cancelled()
    }

    /// The first handler panic, if any.
    pub(crate) fn take(&self) -> Option<Box<dyn Any + Send>> {
        self.payload.lock().take()
    }
}

/// A handler with its listener's buffer, waiting to be spawned.
pub(crate) struct HandlerTask<K> {
    receiver: Receiver<K>,
    handler: Arc<dyn ResourceEventHandler<K>>,
}

impl<K: Send + Sync + 'static> HandlerTask<K> {
    pub(crate) fn new(receiver: Receiver<K>, handler: Arc<dyn ResourceEventHandler<K>>) -> Self {
        Self { receiver, handler }
    }

    /// Spawns the task calling the handler, one notification after the other, until `stop`
    /// fires (after the call in progress) or the listener is removed (after its buffer). A
    /// panic in the handler ends the task and goes to `panics`.
    pub(crate) fn spawn(
        self,
        runtime: &Handle,
        stop: CancellationToken,
        panics: Arc<PanicSlot>,
    ) -> JoinHandle<()> {
        runtime.spawn(self.run(stop, panics))
    }

    async fn run(mut self, stop: CancellationToken, panics: Arc<PanicSlot>) {
        let mut stopped = pin!(stop.cancelled_owned());
        loop {
            let event = tokio::select! {
                biased;
                () = &mut stopped => return,
                event = std::future::poll_fn(|cx| self.receiver.poll_recv(cx)) => match event {
                    Some(event) => event,
                    None => return,
                },
            };
            let initial = event.is_initial();
            let handler = &self.handler;
            let handled = catch_unwind(AssertUnwindSafe(|| match event {
                Event::Added { object, initial } => handler.on_add(object, initial),
                Event::Updated { old, new } => handler.on_update(old, new),
                Event::Deleted(object) => handler.on_delete(object),
            }));
            if let Err(payload) = handled {
                panics.raise(payload);
                return;
            }
            if initial {
                self.receiver.handled_initial();
            }
        }
    }
}
