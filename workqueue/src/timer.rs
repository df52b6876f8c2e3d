//! The one background task per queue that moves delayed keys in when they become ready.
//!
//! The task sleeps on a Tokio timer until the earliest ready time, or until it is told that an
//! earlier key arrived, the queue shut down, or the queue was dropped. It holds the queue only
//! weakly, so it never keeps a dropped queue alive, and it is spawned lazily on the first delayed
//! add, so queues that never delay anything cost no task.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::{Instant, timeout_at};

/// What the timer task should do after moving the keys that are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Sleep until this instant (or an earlier wake-up).
    At(Instant),
    /// Nothing is waiting: sleep until woken.
    Idle,
    /// The queue shut down: end the task.
    Stop,
}

/// A queue whose delayed keys a [`Timer`] drives.
pub(crate) trait Expire: Send + Sync + 'static {
    /// Moves every key due at `now` into the queue and says when to look again.
    fn expire(&self, now: Instant) -> Next;
}

/// Handle on a queue's timer task; owned by the queue's shared state.
#[derive(Debug)]
pub(crate) struct Timer {
    wake: Arc<Notify>,
    started: AtomicBool,
    /// The runtime the queue was created in, if any, for delayed adds made from outside it.
    handle: Option<Handle>,
}

impl Timer {
    pub(crate) fn new() -> Self {
        Self {
            wake: Arc::new(Notify::new()),
            started: AtomicBool::new(false),
            handle: Handle::try_current().ok(),
        }
    }

    /// Makes the task look at the queue again (an earlier key arrived, or shutdown).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Spawns the task for `target` unless it is already running.
    ///
    /// # Panics
    ///
    /// If the task is not running yet and neither the caller nor the queue's creator is inside a
    /// Tokio runtime: delays need Tokio's timer.
    pub(crate) fn start<T: Expire>(&self, target: &Arc<T>) {
        if self.started.load(Ordering::Acquire) || self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let task = run(Arc::downgrade(target), Arc::clone(&self.wake));
        match Handle::try_current().ok().or_else(|| self.handle.clone()) {
            Some(handle) => drop(handle.spawn(task)),
            None => panic!(
                "ferrokube-workqueue: delayed adds need a Tokio runtime (with time enabled); \
                 create the queue or call add_after inside one"
            ),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // The queue is gone: let the task notice and end.
        self.wake.notify_one();
    }
}

async fn run<T: Expire>(target: Weak<T>, wake: Arc<Notify>) {
    let mut notified = pin!(wake.notified());
    loop {
        // Enable before looking, so a wake-up sent while we look is not lost.
        notified.as_mut().enable();
        let next = match target.upgrade() {
            Some(target) => target.expire(Instant::now()),
            None => return,
        };
        match next {
            Next::Stop => return,
            Next::Idle => notified.as_mut().await,
            Next::At(deadline) => {
                // Either outcome means "look again".
                let _ = timeout_at(deadline, notified.as_mut()).await;
            }
        }
        notified.set(wake.notified());
    }
}
