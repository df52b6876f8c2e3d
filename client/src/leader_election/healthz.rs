//! [`HealthzAdaptor`]: the leader election health check, for a `/healthz` endpoint.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{LeaderElectionError, LeaderElector};

/// client-go's `HealthzAdaptor`: a health check that can be registered before the elector
/// exists, and fails when the elector believes it leads but its renewals have stalled for
/// longer than the lease duration plus `timeout` (so that the kubelet restarts the process).
/// Clones share the elector.
///
/// ```
/// # use std::time::Duration;
/// use ferrokube_client::leader_election::HealthzAdaptor;
///
/// let healthz = HealthzAdaptor::new(Duration::from_secs(20));
/// assert_eq!(healthz.name(), "leaderElection");
/// assert!(healthz.check().is_ok()); // no elector yet: healthy
/// ```
#[derive(Clone)]
#[doc(alias = "NewLeaderHealthzAdaptor")]
pub struct HealthzAdaptor {
    elector: Arc<Mutex<Option<LeaderElector>>>,
    timeout: Duration,
}

impl fmt::Debug for HealthzAdaptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthzAdaptor")
            .field("elector", &*self.elector.lock())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HealthzAdaptor {
    /// A health check tolerating renewals up to `timeout` past the lease's expiry.
    pub fn new(timeout: Duration) -> Self {
        Self {
            elector: Arc::new(Mutex::new(None)),
            timeout,
        }
    }

    /// Ties the check to `elector`.
    #[doc(alias = "SetLeaderElection")]
    pub fn set_leader_election(&self, elector: &LeaderElector) {
        *self.elector.lock() = Some(elector.clone());
    }

    /// The check's name: `leaderElection`, as client-go's.
    pub fn name(&self) -> &'static str {
        "leaderElection"
    }

    /// Healthy without an elector; otherwise [`LeaderElector::check`] with this timeout.
    pub fn check(&self) -> Result<(), LeaderElectionError> {
        match &*self.elector.lock() {
            Some(elector) => elector.check(self.timeout),
            None => Ok(()),
        }
    }
}
