//! What a controller asks of you: a [`Reconciler`] turns a [`Request`] (namespace/name) into
//! an [`Action`] (controller-runtime's `pkg/reconcile`).
//!
//! A reconcile reads the object named by the request from the cache, compares the world with
//! what the object asks for, writes what differs, and says when to look again:
//!
//! | result | what the controller does |
//! |---|---|
//! | `Ok(Action::done())` | forgets the key's failures; nothing until the next event |
//! | `Ok(Action::requeue_after(d))` | forgets the key's failures; reconciles again after `d` |
//! | `Ok(Action::requeue())` | reconciles again after the rate limiter's delay |
//! | `Err(e)` | logs and counts `e`, retries after the rate limiter's (growing) delay |
//! | `Err(e)` with a [`TerminalError`] in `e`'s chain | logs and counts `e`, never retries it |
//! | a panic | caught, logged and counted, then handled like `Err` |

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A boxed error, the form every reconcile error takes once it leaves the reconciler.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Which object to reconcile: its namespace (none for cluster-scoped objects) and name.
///
/// ```
/// use ferrokube_runtime::reconcile::Request;
///
/// let request = Request::namespaced("default", "web");
/// assert_eq!(request.to_string(), "default/web");
/// assert_eq!(Request::cluster("node-1").to_string(), "node-1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Request {
    /// The object's namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

impl Request {
    /// A request for a namespaced object.
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    /// A request for a cluster-scoped object.
    pub fn cluster(name: impl Into<String>) -> Self {
        Self {
            namespace: None,
            name: name.into(),
        }
    }

    /// The request for `object` (its namespace and name; an unnamed object gives an empty name).
    pub fn for_object<K: kube::Resource>(object: &K) -> Self {
        let meta = object.meta();
        Self {
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }

    /// The namespace, or `None` for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What to do after a successful reconcile.
///
/// ```
/// use std::time::Duration;
/// use ferrokube_runtime::reconcile::Action;
///
/// assert_eq!(Action::requeue_after(Duration::from_secs(30)).requeue_delay(), Some(Duration::from_secs(30)));
/// assert!(Action::done().is_done());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use = "an Action tells the controller when to reconcile again; return it"]
pub struct Action {
    kind: ActionKind,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ActionKind {
    #[default]
    Done,
    Requeue,
    RequeueAfter(Duration),
}

impl Action {
    /// Nothing more to do until the next event.
    pub fn done() -> Self {
        Self {
            kind: ActionKind::Done,
        }
    }

    /// Reconcile again after the rate limiter's delay for this key (controller-runtime's
    /// `Result{Requeue: true}`); the delay grows while the key keeps asking.
    pub fn requeue() -> Self {
        Self {
            kind: ActionKind::Requeue,
        }
    }

    /// Reconcile again after `delay` (controller-runtime's `Result{RequeueAfter: d}`); a zero
    /// delay is [`requeue`](Self::requeue).
    pub fn requeue_after(delay: Duration) -> Self {
        if delay.is_zero() {
            return Self::requeue();
        }
        Self {
            kind: ActionKind::RequeueAfter(delay),
        }
    }

    /// True for [`done`](Self::done).
    pub fn is_done(&self) -> bool {
        self.kind == ActionKind::Done
    }

    /// True for [`requeue`](Self::requeue) (rate-limited).
    pub fn is_rate_limited_requeue(&self) -> bool {
        self.kind == ActionKind::Requeue
    }

    /// The delay of [`requeue_after`](Self::requeue_after).
    pub fn requeue_delay(&self) -> Option<Duration> {
        match self.kind {
            ActionKind::RequeueAfter(d) => Some(d),
            _ => None,
        }
    }
}

/// An error that retrying cannot fix (controller-runtime's `reconcile.TerminalError`): the
/// controller logs and counts it but does not requeue the key.
///
/// Anywhere in the error's [`source`](StdError::source) chain counts, so a variant of your own
/// error enum can wrap it:
///
/// ```
/// use ferrokube_runtime::reconcile::{self, TerminalError};
///
/// #[derive(Debug, thiserror::Error)]
/// enum Error {
///     #[error("the spec is invalid")]
///     Invalid(#[source] TerminalError),
/// }
///
/// let e: reconcile::BoxError = Error::Invalid(TerminalError::new("replicas must be positive")).into();
/// assert!(reconcile::is_terminal(&*e));
/// ```
#[derive(Debug)]
pub struct TerminalError {
    source: BoxError,
}

impl TerminalError {
    /// Marks `error` as terminal.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self {
            source: error.into(),
        }
    }

    /// The wrapped error.
    pub fn into_inner(self) -> BoxError {
        self.source
    }
}

/// Shows the wrapped error (whose causes follow as this error's sources): marking an error
/// terminal does not change how it reads.
impl fmt::Display for TerminalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl StdError for TerminalError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.source()
    }
}

/// Shows an error and its causes on one line, `error: cause: cause`: how reconcile errors
/// are logged, and a way for programs to print errors as sentences.
///
/// ```
/// use ferrokube_runtime::reconcile::{BoxError, Chain};
///
/// let e: BoxError = "boom".into();
/// assert_eq!(Chain(&*e).to_string(), "boom");
/// ```
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Whether `error` or any error in its source chain is a [`TerminalError`].
pub fn is_terminal(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<TerminalError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// What a reconcile gets besides its request: the controller's name, this reconcile's ID,
/// and a token cancelled when the manager shuts down.
#[derive(Clone, Debug)]
pub struct Context {
    controller: std::sync::Arc<str>,
    reconcile_id: ReconcileId,
    cancel: CancellationToken,
}

impl Context {
    /// A context (the controller builds these; tests of a reconciler may too).
    pub fn new(controller: impl Into<std::sync::Arc<str>>, cancel: CancellationToken) -> Self {
        Self {
            controller: controller.into(),
            reconcile_id: ReconcileId::random(),
            cancel,
        }
    }

    /// The controller's name.
    pub fn controller(&self) -> &str {
        &self.controller
    }

    /// This reconcile's ID (also in the reconcile's tracing span).
    pub fn reconcile_id(&self) -> ReconcileId {
        self.reconcile_id
    }

    /// Cancelled when the manager shuts down: long reconciles should stop early.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }
}

/// A reconcile's ID: a random UUID (version 4), as controller-runtime logs `reconcileID`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReconcileId(u128);

impl ReconcileId {
    /// A new random ID.
    pub fn random() -> Self {
        let bits: u128 = rand::random();
        // Version 4, variant 10xx.
        Self((bits & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62))
    }
}

impl fmt::Display for ReconcileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xFFFF_FFFF_FFFF
        )
    }
}

impl fmt::Debug for ReconcileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Brings the world named by a [`Request`] to what its object asks for
/// (controller-runtime's `reconcile.Reconciler`).
///
/// The reconciler holds what it needs (usually the manager's
/// [`Client`](crate::client::Client), which reads from the cache and writes to the API
/// server). A key is never reconciled by two workers at once. Reconciles must be
/// idempotent: the controller may call them for any reason (resyncs, restarts, retries).
///
/// `Error` is any error that converts into a [`BoxError`]: your own `thiserror` enum, a
/// `BoxError`, `anyhow::Error` or a `String`. Wrap it in a [`TerminalError`] to stop retries.
///
/// A closure works too, through [`from_fn`].
pub trait Reconciler: Send + Sync + 'static {
    /// The reconcile's error.
    type Error: Into<BoxError> + Send + 'static;

    /// Reconciles the object named by `request`.
    fn reconcile(
        &self,
        request: Request,
        ctx: Context,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send;
}

/// A [`Reconciler`] made of an async closure.
///
/// ```
/// use ferrokube_runtime::reconcile::{self, Action, Context, Request};
///
/// let reconciler = reconcile::from_fn(|request: Request, _ctx: Context| async move {
///     println!("reconciling {request}");
///     Ok::<_, reconcile::BoxError>(Action::done())
/// });
/// # let _ = reconciler;
/// ```
pub fn from_fn<F, Fut, E>(f: F) -> FromFn<F>
where
    F: Fn(Request, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send,
    E: Into<BoxError> + Send + 'static,
{
    FromFn { f }
}

/// The [`Reconciler`] of [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F> {
    f: F,
}

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFn").finish_non_exhaustive()
    }
}

impl<F, Fut, E> Reconciler for FromFn<F>
where
    F: Fn(Request, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send,
    E: Into<BoxError> + Send + 'static,
{
    type Error = E;

    fn reconcile(
        &self,
        request: Request,
        ctx: Context,
    ) -> impl Future<Output = Result<Action, E>> + Send {
        (self.f)(request, ctx)
    }
}

impl<R: Reconciler> Reconciler for std::sync::Arc<R> {
    type Error = R::Error;

    fn reconcile(
        &self,
        request: Request,
        ctx: Context,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send {
        (**self).reconcile(request, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_errors_are_found_in_the_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] TerminalError);

        let plain: BoxError = "boom".into();
        assert!(!is_terminal(&*plain));
        let direct: BoxError = TerminalError::new("bad spec").into();
        assert!(is_terminal(&*direct));
        let wrapped: BoxError = Outer(TerminalError::new("bad spec")).into();
        assert!(is_terminal(&*wrapped));
        assert_eq!(direct.to_string(), "bad spec");
        assert_eq!(Chain(&*wrapped).to_string(), "outer: bad spec");
    }

    #[test]
    fn requeue_after_zero_is_a_rate_limited_requeue() {
        assert!(Action::requeue_after(Duration::ZERO).is_rate_limited_requeue());
        assert_eq!(Action::default(), Action::done());
    }

    #[test]
    fn reconcile_ids_are_version_4_uuids() {
        let a = ReconcileId::random().to_string();
        let b = ReconcileId::random().to_string();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn requests_order_and_print() {
        let mut v = [Request::namespaced("b", "x"), Request::cluster("y")];
        v.sort();
        assert_eq!(v[0], Request::cluster("y"));
        assert_eq!(v[1].to_string(), "b/x");
    }
}
