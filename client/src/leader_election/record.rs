//! The election record a Lease holds, and the pure decisions taken from it.
//!
//! As in client-go, a candidate never compares the record's `renewTime` with its own clock:
//! it notes *when it observed* the record change, and the lease expires
//! `leaseDurationSeconds` after that observation. Clock skew between candidates does not
//! matter; only the rate of their clocks does.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

/// client-go's `resourcelock.LeaderElectionRecord`: the fields of a Lease's spec that leader
/// election reads and writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderElectionRecord {
    /// `holderIdentity`: the current leader; empty when no one holds the lease (released).
    pub holder_identity: String,
    /// `leaseDurationSeconds`: how long after observing a change candidates wait.
    pub lease_duration_seconds: i32,
    /// `acquireTime`: when the holder acquired the lease.
    pub acquire_time: Option<Timestamp>,
    /// `renewTime`: when the holder last renewed it (informational: never compared with a
    /// local clock).
    pub renew_time: Option<Timestamp>,
    /// `leaseTransitions`: how many times the lease changed hands.
    pub leader_transitions: i32,
    /// `strategy` (coordinated leader election; read, never written).
    pub strategy: Option<String>,
    /// `preferredHolder` (coordinated leader election; read, never written).
    pub preferred_holder: Option<String>,
}

impl LeaderElectionRecord {
    /// client-go's `LeaseSpecToLeaderElectionRecord`: absent fields read as empty or zero.
    pub fn from_lease_spec(spec: &LeaseSpec) -> Self {
        Self {
            holder_identity: spec.holder_identity.clone().unwrap_or_default(),
            lease_duration_seconds: spec.lease_duration_seconds.unwrap_or_default(),
            acquire_time: spec.acquire_time.as_ref().map(|t| t.0),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            leader_transitions: spec.lease_transitions.unwrap_or_default(),
            strategy: spec.strategy.clone(),
            preferred_holder: spec.preferred_holder.clone(),
        }
    }

    /// client-go's `LeaderElectionRecordToLeaseSpec`: `holderIdentity`,
    /// `leaseDurationSeconds`, `acquireTime`, `renewTime` and `leaseTransitions` always set.
    pub fn to_lease_spec(&self) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.holder_identity.clone()),
            lease_duration_seconds: Some(self.lease_duration_seconds),
            acquire_time: self.acquire_time.map(MicroTime),
            renew_time: self.renew_time.map(MicroTime),
            lease_transitions: Some(self.leader_transitions),
            strategy: self.strategy.clone(),
            preferred_holder: self.preferred_holder.clone(),
        }
    }

    /// Whether someone holds the lease.
    pub fn is_held(&self) -> bool {
        !self.holder_identity.is_empty()
    }

    /// `leaseDurationSeconds` as a duration (zero if negative).
    pub fn lease_duration(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.lease_duration_seconds).unwrap_or(0))
    }

    /// A fresh record for `identity` taking the lease over from `self` (transitions + 1).
    pub(crate) fn acquired_by(
        &self,
        identity: &str,
        duration_seconds: i32,
        now: Timestamp,
    ) -> Self {
        Self {
            holder_identity: identity.to_owned(),
            lease_duration_seconds: duration_seconds,
            acquire_time: Some(now),
            renew_time: Some(now),
            leader_transitions: self.leader_transitions.saturating_add(1),
            strategy: None,
            preferred_holder: None,
        }
    }

    /// `self` renewed by its holder `identity`: same acquire time and transitions.
    pub(crate) fn renewed_by(&self, identity: &str, duration_seconds: i32, now: Timestamp) -> Self {
        Self {
            holder_identity: identity.to_owned(),
            lease_duration_seconds: duration_seconds,
            acquire_time: self.acquire_time,
            renew_time: Some(now),
            leader_transitions: self.leader_transitions,
            strategy: None,
            preferred_holder: None,
        }
    }

    /// client-go's `release`: no holder, a one-second duration, transitions kept.
    pub(crate) fn released(&self, now: Timestamp) -> Self {
        Self {
            holder_identity: String::new(),
            lease_duration_seconds: 1,
            acquire_time: Some(now),
            renew_time: Some(now),
            leader_transitions: self.leader_transitions,
            strategy: None,
            preferred_holder: None,
        }
    }
}

/// A record and the local time it was first seen in this form (client-go's
/// `observedRecord` + `observedTime`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Observation {
    pub(crate) record: LeaderElectionRecord,
    pub(crate) at: Instant,
}

impl Observation {
    /// What is known after reading `record` at `now`: the observation time moves only when
    /// the record differs from the previous one.
    pub(crate) fn update(
        previous: Option<&Observation>,
        record: LeaderElectionRecord,
        now: Instant,
    ) -> Self {
        match previous {
            Some(p) if p.record == record => p.clone(),
            _ => Self { record, at: now },
        }
    }

    /// When the lease expires by this observation: `observedTime + leaseDurationSeconds`.
    pub(crate) fn expires_at(&self) -> Instant {
        self.at + self.record.lease_duration()
    }

    /// client-go's `isLeaseValid`: `observedTime + leaseDurationSeconds` is after `now`.
    pub(crate) fn is_valid(&self, now: Instant) -> bool {
        self.expires_at() > now
    }

    /// Whether the observed holder is `identity`.
    pub(crate) fn held_by(&self, identity: &str) -> bool {
        self.record.holder_identity == identity
    }
}

/// What a candidate does with the record it just read.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Decision {
    /// Someone else holds a lease that has not expired by our observation: wait.
    HeldByOther,
    /// Write this record (an acquisition, or a renewal of our own lease).
    Write(LeaderElectionRecord),
}

/// client-go's `tryAcquireOrRenew` after the Get: an unexpired lease held by another is left
/// alone; our own lease is renewed (keeping acquire time and transitions); an expired or
/// released lease is taken over with `leaseTransitions + 1`.
pub(crate) fn decide(
    identity: &str,
    duration_seconds: i32,
    observed: &Observation,
    now: Instant,
    wall: Timestamp,
) -> Decision {
    let current = &observed.record;
    if observed.held_by(identity) {
        return Decision::Write(current.renewed_by(identity, duration_seconds, wall));
    }
    if current.is_held() && observed.is_valid(now) {
        return Decision::HeldByOther;
    }
    Decision::Write(current.acquired_by(identity, duration_seconds, wall))
}

/// client-go's `Check`: unhealthy when we believe we hold the lease but have not observed it
/// change (renewed it) for longer than `lease_duration + tolerance`. `Ok` carries nothing;
/// `Err` carries the time since the last renewal.
pub(crate) fn renewal_overdue(
    observed: Option<&Observation>,
    identity: &str,
    lease_duration: Duration,
    tolerance: Duration,
    now: Instant,
) -> Result<(), Duration> {
    let Some(observed) = observed.filter(|o| o.held_by(identity)) else {
        return Ok(());
    };
    let since = now.saturating_duration_since(observed.at);
    if since > lease_duration + tolerance {
        Err(since)
    } else {
        Ok(())
    }
}

/// client-go's `wait.Jitter`: `period` plus up to `max_factor × period` at random.
pub(crate) fn jitter(period: Duration, max_factor: f64) -> Duration {
    if max_factor <= 0.0 {
        return period;
    }
    period + period.mul_f64(rand::random::<f64>() * max_factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECS: i32 = 15;

    fn held(by: &str, renewed_secs: i64, transitions: i32) -> LeaderElectionRecord {
        let t = Timestamp::from_second(renewed_secs).unwrap_or(Timestamp::UNIX_EPOCH);
        LeaderElectionRecord {
            holder_identity: by.to_owned(),
            lease_duration_seconds: SECS,
            acquire_time: Some(Timestamp::UNIX_EPOCH),
            renew_time: Some(t),
            leader_transitions: transitions,
            ..LeaderElectionRecord::default()
        }
    }

    #[test]
    fn spec_round_trip_uses_client_go_field_names() {
        let record = held("a", 1_700_000_000, 3);
        let spec = record.to_lease_spec();
        assert_eq!(LeaderElectionRecord::from_lease_spec(&spec), record);
        let json = serde_json::to_value(&spec).unwrap_or_default();
        for field in [
            "holderIdentity",
            "leaseDurationSeconds",
            "acquireTime",
            "renewTime",
            "leaseTransitions",
        ] {
            assert!(json.get(field).is_some(), "{field} missing from {json}");
        }
        assert_eq!(json["renewTime"], "2023-11-14T22:13:20.000000Z");
        // A released record still writes an (empty) holder, as client-go does.
        let released = record.released(Timestamp::UNIX_EPOCH);
        let json = serde_json::to_value(released.to_lease_spec()).unwrap_or_default();
        assert_eq!(json["holderIdentity"], "");
        assert_eq!(json["leaseDurationSeconds"], 1);
        assert_eq!(json["leaseTransitions"], 3);
    }

    #[test]
    fn absent_fields_read_as_zero() {
        let r = LeaderElectionRecord::from_lease_spec(&LeaseSpec::default());
        assert_eq!(r, LeaderElectionRecord::default());
        assert!(!r.is_held());
        assert_eq!(r.lease_duration(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn observation_time_moves_only_when_the_record_changes() {
        let t0 = Instant::now();
        let first = Observation::update(None, held("a", 100, 0), t0);
        assert_eq!(first.at, t0);
        tokio::time::advance(Duration::from_secs(5)).await;
        let same = Observation::update(Some(&first), held("a", 100, 0), Instant::now());
        assert_eq!(
            same.at, t0,
            "an unchanged record keeps its observation time"
        );
        let renewed = Observation::update(Some(&same), held("a", 105, 0), Instant::now());
        assert_eq!(renewed.at, t0 + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_is_judged_by_local_observation_not_renew_time() {
        // A record renewed (by its wall clock) in 1970: stale by renewTime, but we have just
        // observed it change, so it is valid for a full lease duration from now.
        let observed = Observation::update(None, held("other", 0, 2), Instant::now());
        let wall = Timestamp::now();
        let start = Instant::now();
        assert_eq!(
            decide("me", SECS, &observed, start, wall),
            Decision::HeldByOther
        );
        tokio::time::advance(Duration::from_millis(14_999)).await;
        assert_eq!(
            decide("me", SECS, &observed, Instant::now(), wall),
            Decision::HeldByOther
        );
        // At observedTime + leaseDuration it has expired (client-go: `!expiry.After(now)`).
        tokio::time::advance(Duration::from_millis(1)).await;
        let Decision::Write(next) = decide("me", SECS, &observed, Instant::now(), wall) else {
            panic!("an expired lease must be taken over");
        };
        assert_eq!(next.holder_identity, "me");
        assert_eq!(next.leader_transitions, 3);
        assert_eq!(next.acquire_time, Some(wall));
        assert_eq!(next.renew_time, Some(wall));
        assert_eq!(next.lease_duration_seconds, SECS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_renew_time_in_the_future_does_not_extend_the_lease() {
        // Skewed holder clock: renewTime far in the future. Still expires 15 s after we saw
        // it last change.
        let observed = Observation::update(None, held("other", 4_000_000_000, 0), Instant::now());
        tokio::time::advance(Duration::from_secs(16)).await;
        let decision = decide("me", SECS, &observed, Instant::now(), Timestamp::now());
        assert!(matches!(decision, Decision::Write(_)), "{decision:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_records_own_duration_counts() {
        // The holder wrote 5 s: that, not our configured 15 s, is what we wait.
        let mut record = held("other", 0, 0);
        record.lease_duration_seconds = 5;
        let observed = Observation::update(None, record, Instant::now());
        tokio::time::advance(Duration::from_millis(5001)).await;
        let decision = decide("me", SECS, &observed, Instant::now(), Timestamp::now());
        assert!(matches!(decision, Decision::Write(_)), "{decision:?}");
    }

    #[test]
    fn released_or_empty_leases_are_taken_at_once() {
        let now = Instant::now();
        let released = held("a", 0, 4).released(Timestamp::UNIX_EPOCH);
        let observed = Observation::update(None, released, now);
        let Decision::Write(next) = decide("me", SECS, &observed, now, Timestamp::now()) else {
            panic!("a released lease must be taken at once");
        };
        assert_eq!(next.leader_transitions, 5);
    }

    #[test]
    fn our_own_lease_is_renewed_keeping_acquire_time_and_transitions() {
        let now = Instant::now();
        let mine = held("me", 0, 7);
        let observed = Observation::update(None, mine.clone(), now);
        let wall = Timestamp::now();
        let Decision::Write(next) = decide("me", SECS, &observed, now, wall) else {
            panic!("our own lease must be renewed");
        };
        assert_eq!(next.acquire_time, mine.acquire_time);
        assert_eq!(next.leader_transitions, 7);
        assert_eq!(next.renew_time, Some(wall));
    }

    #[tokio::test(start_paused = true)]
    async fn health_check_tolerates_until_lease_plus_tolerance() {
        let lease = Duration::from_secs(15);
        let tolerance = Duration::from_secs(20);
        let mine = Observation::update(None, held("me", 0, 0), Instant::now());
        let other = Observation::update(None, held("other", 0, 0), Instant::now());
        assert_eq!(
            renewal_overdue(None, "me", lease, tolerance, Instant::now()),
            Ok(())
        );
        tokio::time::advance(Duration::from_secs(35)).await;
        assert_eq!(
            renewal_overdue(Some(&mine), "me", lease, tolerance, Instant::now()),
            Ok(())
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        let now = Instant::now();
        assert_eq!(
            renewal_overdue(Some(&mine), "me", lease, tolerance, now),
            Err(Duration::from_millis(35_001))
        );
        assert_eq!(
            renewal_overdue(Some(&other), "me", lease, tolerance, now),
            Ok(())
        );
    }

    #[test]
    fn jitter_stays_within_client_go_bounds() {
        let period = Duration::from_secs(2);
        for _ in 0..1000 {
            let j = jitter(period, 1.2);
            assert!(j >= period && j <= Duration::from_millis(4400), "{j:?}");
        }
        assert_eq!(jitter(period, 0.0), period);
    }
}
