//! [`Runnable`]: work the manager starts and stops (controller-runtime's `manager.Runnable`).

use std::future::Future;
use std::pin::Pin;

use tokio_util::sync::CancellationToken;

use crate::reconcile::BoxError;

/// A runnable's future.
pub type RunFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// Something the manager runs until its token is cancelled: controllers, and your own
/// background work. It must return soon after `cancel` fires.
///
/// Leader-elected runnables (the default, as controllers) run only while this replica
/// leads; the others run on every replica from the start.
pub trait Runnable: Send + 'static {
    /// A name for logs and errors.
    fn name(&self) -> String;

    /// Whether it runs only on the leader (default true).
    fn needs_leader_election(&self) -> bool {
        true
    }

    /// Runs until `cancel` fires; an error stops the manager.
    fn start(self: Box<Self>, cancel: CancellationToken) -> RunFuture;
}

/// A [`Runnable`] made of a name, a leader-election flag and an async closure.
///
/// ```no_run
/// use ferrokube_runtime::manager::runnable_fn;
///
/// let ticker = runnable_fn("ticker", false, |cancel| async move {
///     while !cancel.is_cancelled() {
///         tokio::select! {
///             _ = cancel.cancelled() => {}
///             _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => println!("tick"),
///         }
///     }
///     Ok(())
/// });
/// # let _ = ticker;
/// ```
pub fn runnable_fn<F, Fut>(
    name: impl Into<String>,
    needs_leader_election: bool,
    f: F,
) -> FnRunnable<F>
where
    F: FnOnce(CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    FnRunnable {
        name: name.into(),
        needs_leader_election,
        f,
    }
}

/// The [`Runnable`] of [`runnable_fn`].
pub struct FnRunnable<F> {
    name: String,
    needs_leader_election: bool,
    f: F,
}

impl<F> std::fmt::Debug for FnRunnable<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnRunnable")
            .field("name", &self.name)
            .field("needs_leader_election", &self.needs_leader_election)
            .finish_non_exhaustive()
    }
}

impl<F, Fut> Runnable for FnRunnable<F>
where
    F: FnOnce(CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    fn name(&self) -> String {
        self.name.clone()
    }

    fn needs_leader_election(&self) -> bool {
        self.needs_leader_election
    }

    fn start(self: Box<Self>, cancel: CancellationToken) -> RunFuture {
        Box::pin((self.f)(cancel))
    }
}
