//! [`DeltaFifo::pop`] and its errors.

use std::pin::pin;

use super::{DeltaFifo, Deltas};

/// Why a pop's processing closure failed, and whether to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessError<E> {
    /// Processing failed; the deltas are dropped.
    Failed(E),
    /// Processing failed; the deltas are queued again unless their key was queued meanwhile
    /// (client-go's `ErrRequeue`).
    Requeue(E),
}

/// Why [`DeltaFifo::pop`] returned no processed deltas.
#[derive(Debug, thiserror::Error)]
pub enum PopError<E> {
    /// The queue is closed and empty (client-go's `ErrFIFOClosed`).
    #[error("the DeltaFIFO is closed")]
    Closed,
    /// The processing closure failed.
    #[error("processing the deltas of {key} failed")]
    Process {
        /// The key whose deltas failed.
        key: String,
        /// What the closure returned.
        #[source]
        error: E,
        /// Whether the deltas were queued again ([`ProcessError::Requeue`]).
        requeued: bool,
    },
}

impl<E> PopError<E> {
    /// Whether this is [`PopError::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

// === impl DeltaFifo ===

impl<K: kube::Resource + Send + Sync + 'static> DeltaFifo<K> {
    /// Waits for a queued key, removes it with its deltas, and hands them to `process`,
    /// oldest key first; returns the deltas once processed (client-go's `Pop`).
    ///
    /// `process` gets the deltas and whether they belong to the initial population (see
    /// [`has_synced`](Self::has_synced)). It runs synchronously with the queue locked, so
    /// the consumer's store (the queue's known objects) is updated atomically with the pop
    /// and a key's deltas are processed before the key can be popped again. It must
    /// therefore be quick, must not block or call back into the queue, and should hand slow
    /// work off (e.g. to per-handler buffers).
    ///
    /// Waiting costs nothing (no polling) and is cancel-safe: dropping the future before it
    /// completes takes nothing off the queue.
    ///
    /// # Errors
    ///
    /// [`PopError::Closed`] once the queue is [closed](Self::close) and empty;
    /// [`PopError::Process`] when `process` failed (after requeueing the deltas for
    /// [`ProcessError::Requeue`]).
    pub async fn pop<F, E>(&self, process: F) -> Result<Deltas<K>, PopError<E>>
    where
        F: FnOnce(&Deltas<K>, bool) -> Result<(), ProcessError<E>>,
    {
        let mut notified = pin!(self.notify.notified());
        loop {
            // Registered before looking at the queue: a key queued after the look wakes us.
            notified.as_mut().enable();
            {
                let mut state = self.state.lock();
                if let Some((deltas, is_in_initial_list)) = state.pop_front() {
                    let (error, requeued) = match process(&deltas, is_in_initial_list) {
                        Ok(()) => return Ok(deltas),
                        Err(ProcessError::Failed(error)) => (error, false),
                        Err(ProcessError::Requeue(error)) => {
                            let requeued = state.add_if_not_present(deltas.clone());
                            drop(state);
                            if requeued {
                                self.notify.notify_waiters();
                            }
                            (error, requeued)
                        }
                    };
                    return Err(PopError::Process {
                        key: deltas.key,
                        error,
                        requeued,
                    });
                }
                if state.closed {
                    return Err(PopError::Closed);
                }
            }
            notified.as_mut().await;
            notified.set(self.notify.notified());
        }
    }
}
