//! [`LeaderElectionConfig`] and its validation, and the leader election [`LeaderElectionError`].

use std::time::Duration;

/// client-go's `JitterFactor`: acquire attempts are spaced by `retry_period` plus up to this
/// many more `retry_period`s at random, and `renew_deadline` must exceed
/// `retry_period × JITTER_FACTOR`.
pub const JITTER_FACTOR: f64 = 1.2;

/// What is wrong with a [`LeaderElectionConfig`], or why the health check fails.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaderElectionError {
    /// A duration that must be positive is zero.
    #[error("{field} must be greater than zero")]
    NotPositive {
        /// The configuration field.
        field: &'static str,
    },

    /// A string that must be set is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The configuration field.
        field: &'static str,
    },

    /// `lease_duration` is shorter than one second, which a Lease cannot express
    /// (`leaseDurationSeconds` is a whole number of seconds).
    #[error("lease_duration ({lease_duration:?}) must be at least one second")]
    SubSecondLeaseDuration {
        /// The configured lease duration.
        lease_duration: Duration,
    },

    /// `lease_duration` does not exceed `renew_deadline`.
    #[error(
        "lease_duration ({lease_duration:?}) must be greater than renew_deadline ({renew_deadline:?})"
    )]
    LeaseDurationNotAboveRenewDeadline {
        /// The configured lease duration.
        lease_duration: Duration,
        /// The configured renew deadline.
        renew_deadline: Duration,
    },

    /// `renew_deadline` does not exceed `retry_period × 1.2` ([`JITTER_FACTOR`]).
    #[error(
        "renew_deadline ({renew_deadline:?}) must be greater than retry_period ({retry_period:?}) × {JITTER_FACTOR}"
    )]
    RenewDeadlineNotAboveRetryPeriod {
        /// The configured renew deadline.
        renew_deadline: Duration,
        /// The configured retry period.
        retry_period: Duration,
    },

    /// The health check: this instance believes it leads, but has not renewed its lease for
    /// longer than the lease duration plus the tolerance.
    #[error("failed election to renew leadership on lease {lease}: last renewed {since:?} ago")]
    RenewalOverdue {
        /// The election's name (or `namespace/name` of the Lease).
        lease: String,
        /// Time since the last successful renewal.
        since: Duration,
    },
}

impl LeaderElectionError {
    /// The configuration field at fault, for validation errors.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::NotPositive { field } | Self::Empty { field } => Some(field),
            Self::SubSecondLeaseDuration { .. }
            | Self::LeaseDurationNotAboveRenewDeadline { .. } => Some("lease_duration"),
            Self::RenewDeadlineNotAboveRetryPeriod { .. } => Some("renew_deadline"),
            Self::RenewalOverdue { .. } => None,
        }
    }
}

/// client-go's `LeaderElectionConfig` with a `LeaseLock`: which Lease, who we are, and the
/// timings (client-go's defaults: 15 s / 10 s / 2 s).
///
/// Built with [`new`](Self::new) (or `Default`) and by-value `with_*` setters; each setting
/// is read back with the getter of the same name without the prefix.
///
/// ```
/// use std::time::Duration;
/// use ferrokube_client::leader_election::LeaderElectionConfig;
///
/// let config = LeaderElectionConfig::new("kube-system", "my-controller", "pod-a")
///     .with_lease_duration(Duration::from_secs(30))
///     .with_renew_deadline(Duration::from_secs(20))
///     .with_release_on_cancel(true);
/// assert!(config.validate().is_ok());
/// assert_eq!(config.retry_period(), Duration::from_secs(2));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
#[doc(alias = "LeaseLock")]
pub struct LeaderElectionConfig {
    // Each field is documented on its getter; `pub(super)` for the elector.
    pub(super) lease_namespace: String,
    pub(super) lease_name: String,
    pub(super) identity: String,
    pub(super) lease_duration: Duration,
    pub(super) renew_deadline: Duration,
    pub(super) retry_period: Duration,
    pub(super) release_on_cancel: bool,
    pub(super) name: String,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            lease_namespace: String::new(),
            lease_name: String::new(),
            identity: String::new(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_cancel: false,
            name: String::new(),
        }
    }
}

impl LeaderElectionConfig {
    /// A configuration for the Lease `namespace/name`, as candidate `identity`, with
    /// client-go's default timings.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            lease_namespace: namespace.into(),
            lease_name: name.into(),
            identity: identity.into(),
            ..Self::default()
        }
    }

    /// Sets the Lease's [namespace](Self::lease_namespace) and [name](Self::lease_name).
    pub fn with_lease(mut self, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        self.lease_namespace = namespace.into();
        self.lease_name = name.into();
        self
    }

    /// Sets this candidate's [identity](Self::identity).
    pub fn with_identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = identity.into();
        self
    }

    /// Sets the [lease duration](Self::lease_duration) (default 15 s).
    pub fn with_lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = duration;
        self
    }

    /// Sets the [renew deadline](Self::renew_deadline) (default 10 s).
    pub fn with_renew_deadline(mut self, deadline: Duration) -> Self {
        self.renew_deadline = deadline;
        self
    }

    /// Sets the [retry period](Self::retry_period) (default 2 s).
    pub fn with_retry_period(mut self, period: Duration) -> Self {
        self.retry_period = period;
        self
    }

    /// Sets whether the lease is [released when the run is cancelled](Self::release_on_cancel)
    /// (default no).
    pub fn with_release_on_cancel(mut self, release: bool) -> Self {
        self.release_on_cancel = release;
        self
    }

    /// Sets the [name](Self::name) used in logs and the health check.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Namespace of the Lease; empty means the client's default namespace.
    pub fn lease_namespace(&self) -> &str {
        &self.lease_namespace
    }

    /// Name of the Lease.
    pub fn lease_name(&self) -> &str {
        &self.lease_name
    }

    /// This candidate's identity, unique among the candidates (`holderIdentity`).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How long non-leaders wait, from the last change of the Lease *they observed*, before
    /// they may take it over. Written to the Lease in whole seconds.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// How long the leader keeps retrying to renew before it gives up leadership.
    pub fn renew_deadline(&self) -> Duration {
        self.renew_deadline
    }

    /// Time between attempts to acquire or renew.
    pub fn retry_period(&self) -> Duration {
        self.retry_period
    }

    /// Clear `holderIdentity` when the run is cancelled, so that another candidate takes over
    /// at once instead of waiting for the lease to expire. Only safe if the work guarded by
    /// the lease has stopped before the run is cancelled.
    pub fn release_on_cancel(&self) -> bool {
        self.release_on_cancel
    }

    /// A name for logs and the health check; defaults to `namespace/name` of the Lease.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the configuration as client-go's `NewLeaderElector` does: every duration
    /// positive, `lease_duration > renew_deadline > retry_period × 1.2`, and a non-empty
    /// identity; plus a Lease name and a lease duration of at least one second.
    pub fn validate(&self) -> Result<(), LeaderElectionError> {
        for (field, value) in [
            ("lease_duration", self.lease_duration),
            ("renew_deadline", self.renew_deadline),
            ("retry_period", self.retry_period),
        ] {
            if value.is_zero() {
                return Err(LeaderElectionError::NotPositive { field });
            }
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(LeaderElectionError::LeaseDurationNotAboveRenewDeadline {
                lease_duration: self.lease_duration,
                renew_deadline: self.renew_deadline,
            });
        }
        // As Go: time.Duration(JitterFactor * float64(RetryPeriod)), in nanoseconds.
        let jittered_nanos = (self.retry_period.as_nanos() as f64 * JITTER_FACTOR) as u128;
        if self.renew_deadline.as_nanos() <= jittered_nanos {
            return Err(LeaderElectionError::RenewDeadlineNotAboveRetryPeriod {
                renew_deadline: self.renew_deadline,
                retry_period: self.retry_period,
            });
        }
        if self.lease_duration < Duration::from_secs(1) {
            return Err(LeaderElectionError::SubSecondLeaseDuration {
                lease_duration: self.lease_duration,
            });
        }
        if self.identity.is_empty() {
            return Err(LeaderElectionError::Empty { field: "identity" });
        }
        if self.lease_name.is_empty() {
            return Err(LeaderElectionError::Empty {
                field: "lease_name",
            });
        }
        Ok(())
    }

    /// `leaseDurationSeconds` as written to the Lease: whole seconds, as client-go's
    /// `int(LeaseDuration / time.Second)`.
    pub(crate) fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> LeaderElectionConfig {
        LeaderElectionConfig::new("ns", "lease", "me")
    }

    #[test]
    fn defaults_are_client_go_defaults() {
        let c = LeaderElectionConfig::default();
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert_eq!(c.renew_deadline, Duration::from_secs(10));
        assert_eq!(c.retry_period, Duration::from_secs(2));
        assert!(!c.release_on_cancel);
        assert_eq!(valid().validate(), Ok(()));
        assert_eq!(valid().lease_duration_seconds(), 15);
    }

    #[test]
    fn zero_durations_are_named() {
        let field = |c: LeaderElectionConfig| c.validate().err().and_then(|e| e.field());
        assert_eq!(
            field(valid().with_lease_duration(Duration::ZERO)),
            Some("lease_duration")
        );
        assert_eq!(
            field(valid().with_renew_deadline(Duration::ZERO)),
            Some("renew_deadline")
        );
        assert_eq!(
            field(valid().with_retry_period(Duration::ZERO)),
            Some("retry_period")
        );
        let text = valid()
            .with_retry_period(Duration::ZERO)
            .validate()
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            text.as_deref(),
            Some("retry_period must be greater than zero")
        );
    }

    #[test]
    fn lease_duration_must_exceed_renew_deadline() {
        let err = valid()
            .with_lease_duration(Duration::from_secs(10))
            .validate()
            .err();
        assert_eq!(
            err,
            Some(LeaderElectionError::LeaseDurationNotAboveRenewDeadline {
                lease_duration: Duration::from_secs(10),
                renew_deadline: Duration::from_secs(10),
            })
        );
        assert_eq!(err.and_then(|e| e.field()), Some("lease_duration"));
        let ok = valid().with_lease_duration(Duration::from_millis(10_001));
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn renew_deadline_must_exceed_jittered_retry_period() {
        // 1.2 × 2 s = 2.4 s exactly: not greater, as in client-go.
        let c = valid()
            .with_lease_duration(Duration::from_secs(3))
            .with_renew_deadline(Duration::from_millis(2400))
            .with_retry_period(Duration::from_secs(2));
        let err = c.validate().err();
        assert!(
            matches!(
                err,
                Some(LeaderElectionError::RenewDeadlineNotAboveRetryPeriod { .. })
            ),
            "{err:?}"
        );
        assert_eq!(err.and_then(|e| e.field()), Some("renew_deadline"));
        let c = c.with_renew_deadline(Duration::from_millis(2400) + Duration::from_nanos(1));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn identity_and_lease_name_are_required() {
        let err = valid().with_identity("").validate().err();
        assert_eq!(err, Some(LeaderElectionError::Empty { field: "identity" }));
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("identity must not be empty")
        );
        let err = valid().with_lease("ns", "").validate().err();
        assert_eq!(err.and_then(|e| e.field()), Some("lease_name"));
        // An empty namespace means the client's default one.
        assert_eq!(valid().with_lease("", "lease").validate(), Ok(()));
    }

    #[test]
    fn lease_duration_is_whole_seconds() {
        let c = valid()
            .with_lease_duration(Duration::from_millis(900))
            .with_renew_deadline(Duration::from_millis(600))
            .with_retry_period(Duration::from_millis(100));
        assert_eq!(
            c.validate().err().and_then(|e| e.field()),
            Some("lease_duration")
        );
        let c = c.with_lease_duration(Duration::from_millis(3500));
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.lease_duration_seconds(), 3);
    }
}
