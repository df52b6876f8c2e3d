//! Correlation, client-go's `tools/record/events_cache.go` applied to `events.k8s.io/v1`:
//! the keys that say which occurrences are "the same event", the [`Aggregator`] that combines
//! similar events differing only in their note, and the [`SpamFilter`] (a token bucket per
//! reporter + object). Pure logic: time comes in as an argument.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_workqueue::rate_limiter::TokenBucket;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::lru::Lru;
use super::recorder::{EventType, MAX_NOTE_LEN, truncated};

/// The note of an aggregate event is this prefix followed by the note that triggered it
/// (client-go's `EventAggregatorByReasonMessageFunc`).
pub const COMBINED_NOTE_PREFIX: &str = "(combined from similar events): ";

/// One call to `Recorder::event`, as it travels to the broadcaster's task.
#[derive(Clone, Debug)]
pub(crate) struct Occurrence {
    pub(crate) regarding: ObjectReference,
    pub(crate) related: Option<ObjectReference>,
    pub(crate) type_: EventType,
    pub(crate) reason: String,
    pub(crate) action: String,
    pub(crate) note: String,
    pub(crate) reporting_controller: Arc<str>,
    pub(crate) reporting_instance: Arc<str>,
    /// Wall-clock time of the call: the event's `eventTime` / `series.lastObservedTime`.
    pub(crate) time: Timestamp,
    /// Monotonic time of the call, for windows and token buckets.
    pub(crate) at: Instant,
}

/// Which object an event is about: an `ObjectReference` without its `resourceVersion` (like
/// client-go's `getEventKey`), so an object that changes between two occurrences still gets
/// one series.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub(crate) struct ObjectKey {
    api_version: String,
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    field_path: String,
}

impl ObjectKey {
    pub(crate) fn new(r: &ObjectReference) -> Self {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        Self {
            api_version: s(&r.api_version),
            kind: s(&r.kind),
            namespace: s(&r.namespace),
            name: s(&r.name),
            uid: s(&r.uid),
            field_path: s(&r.field_path),
        }
    }
}

/// The note part of an [`EventKey`].
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) enum NoteKey {
    /// An event recorded as it came, identified by its note.
    Exact(String),
    /// The one aggregate event standing for similar events with different notes.
    Combined,
}

/// What makes two occurrences the same event: regarding, related, type, reason, action,
/// reporting controller and instance, and note (client-go's `tools/events` `eventKey` plus
/// `tools/record`'s message). With [`NoteKey::Combined`] it is also the aggregation key
/// (client-go's `EventAggregatorByReasonFunc`).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct EventKey {
    regarding: ObjectKey,
    related: Option<ObjectKey>,
    type_: EventType,
    reason: String,
    action: String,
    reporting_controller: Arc<str>,
    reporting_instance: Arc<str>,
    note: NoteKey,
}

impl EventKey {
    pub(crate) fn new(o: &Occurrence, note: NoteKey) -> Self {
        Self {
            regarding: ObjectKey::new(&o.regarding),
            related: o.related.as_ref().map(ObjectKey::new),
            type_: o.type_,
            reason: o.reason.clone(),
            action: o.action.clone(),
            reporting_controller: Arc::clone(&o.reporting_controller),
            reporting_instance: Arc::clone(&o.reporting_instance),
            note,
        }
    }

    #[cfg(test)]
    pub(crate) fn is_combined(&self) -> bool {
        self.note == NoteKey::Combined
    }
}

/// The spam filter's key: reporter and object (client-go's `getSpamKey`, which ignores the
/// field path).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct SpamKey {
    reporting_controller: Arc<str>,
    reporting_instance: Arc<str>,
    regarding: ObjectKey,
}

impl SpamKey {
    pub(crate) fn new(o: &Occurrence) -> Self {
        let mut regarding = ObjectKey::new(&o.regarding);
        regarding.field_path.clear();
        Self {
            reporting_controller: Arc::clone(&o.reporting_controller),
            reporting_instance: Arc::clone(&o.reporting_instance),
            regarding,
        }
    }
}

// === Aggregator ===

#[derive(Debug)]
struct AggregateRecord {
    notes: HashSet<String>,
    last: Instant,
}

/// client-go's `EventAggregator`: once `max_events` different notes of otherwise identical
/// events are seen with no gap longer than `interval`, further new notes are combined into one
/// aggregate event.
#[derive(Debug)]
pub(crate) struct Aggregator {
    cache: Lru<EventKey, AggregateRecord>,
    max_events: usize,
    interval: Duration,
}

impl Aggregator {
    /// `max_events == 0` turns aggregation off.
    pub(crate) fn new(cache_size: usize, max_events: usize, interval: Duration) -> Self {
        Self {
            cache: Lru::new(cache_size),
            max_events,
            interval,
        }
    }

    /// Records one occurrence of `note` for the events keyed by `key` (a
    /// [`NoteKey::Combined`] key) and says whether it must be combined.
    ///
    /// As in client-go, the record is reset when more than `interval` passed since the last
    /// similar event, and it holds at most `max_events - 1` notes: where client-go drops an
    /// arbitrary note once the threshold is reached, this keeps the first ones, so a note seen
    /// before the threshold keeps its own event and every later new note is combined.
    pub(crate) fn observe(&mut self, key: &EventKey, note: &str, now: Instant) -> bool {
        if self.max_events == 0 {
            return false;
        }
        let record = match self.cache.get_mut(key) {
            Some(r) if now.saturating_duration_since(r.last) <= self.interval => r,
            _ => {
                self.cache.insert(
                    key.clone(),
                    AggregateRecord {
                        notes: HashSet::new(),
                        last: now,
                    },
                );
                match self.cache.get_mut(key) {
                    Some(r) => r,
                    None => return false,
                }
            }
        };
        record.last = now;
        if record.notes.contains(note) {
            return false;
        }
        if record.notes.len() + 1 < self.max_events {
            record.notes.insert(note.to_owned());
            return false;
        }
        true
    }
}

// === SpamFilter ===

/// client-go's `EventSourceObjectSpamFilter`: each reporter + object may emit `burst` events,
/// then one more per `every` (a [`TokenBucket`] per key, taken with `allow_at` as client-go's
/// passive token bucket's `TryAccept`).
#[derive(Debug)]
pub(crate) struct SpamFilter {
    cache: Lru<SpamKey, TokenBucket>,
    burst: u32,
    every: Duration,
}

impl SpamFilter {
    /// `burst == 0` turns the filter off.
    pub(crate) fn new(cache_size: usize, burst: u32, every: Duration) -> Self {
        Self {
            cache: Lru::new(cache_size),
            burst,
            every,
        }
    }

    /// Whether an event for `key` may go through now (taking a token if so).
    pub(crate) fn allow(&mut self, key: &SpamKey, now: Instant) -> bool {
        if self.burst == 0 {
            return true;
        }
        if let Some(bucket) = self.cache.get_mut(key) {
            return bucket.allow_at(now);
        }
        let mut bucket = TokenBucket::every(self.every, self.burst);
        let allowed = bucket.allow_at(now);
        self.cache.insert(key.clone(), bucket);
        allowed
    }
}

// === Correlator ===

/// An occurrence the correlator let through.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Correlated {
    /// The event's identity (the aggregate key when combined).
    pub(crate) key: EventKey,
    /// The note to write (prefixed when combined).
    pub(crate) note: String,
    /// Whether it was combined with similar events.
    pub(crate) combined: bool,
}

/// client-go's `EventCorrelator`: aggregation first, then the spam filter.
#[derive(Debug)]
pub(crate) struct Correlator {
    aggregator: Aggregator,
    spam: SpamFilter,
}

impl Correlator {
    pub(crate) fn new(aggregator: Aggregator, spam: SpamFilter) -> Self {
        Self { aggregator, spam }
    }

    /// What to record for `o`; `None` when the spam filter drops it.
    pub(crate) fn correlate(&mut self, o: &Occurrence) -> Option<Correlated> {
        let aggregate_key = EventKey::new(o, NoteKey::Combined);
        let combined = self.aggregator.observe(&aggregate_key, &o.note, o.at);
        if !self.spam.allow(&SpamKey::new(o), o.at) {
            return None;
        }
        Some(if combined {
            Correlated {
                key: aggregate_key,
                note: truncated(format!("{COMBINED_NOTE_PREFIX}{}", o.note), MAX_NOTE_LEN),
                combined: true,
            }
        } else {
            Correlated {
                key: EventKey::new(o, NoteKey::Exact(o.note.clone())),
                note: o.note.clone(),
                combined: false,
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn occurrence(name: &str, note: &str) -> Occurrence {
        Occurrence {
            regarding: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("ConfigMap".into()),
                namespace: Some("ns".into()),
                name: Some(name.into()),
                uid: Some("uid-1".into()),
                resource_version: Some("1".into()),
                ..ObjectReference::default()
            },
            related: None,
            type_: EventType::Normal,
            reason: "Synced".into(),
            action: "Sync".into(),
            note: note.into(),
            reporting_controller: "example.com/ctl".into(),
            reporting_instance: "ctl-0".into(),
            time: Timestamp::now(),
            at: Instant::now(),
        }
    }

    fn default_correlator() -> Correlator {
        Correlator::new(
            Aggregator::new(64, 10, Duration::from_secs(600)),
            SpamFilter::new(64, 25, Duration::from_secs(300)),
        )
    }

    #[test]
    fn the_key_covers_every_identifying_field_but_resource_version() {
        let base = occurrence("cm", "hello");
        let key = |o: &Occurrence| EventKey::new(o, NoteKey::Exact(o.note.clone()));
        let mut same = base.clone();
        same.regarding.resource_version = Some("2".into());
        same.time = Timestamp::UNIX_EPOCH;
        assert_eq!(
            key(&base),
            key(&same),
            "resourceVersion and time are not identity"
        );

        let changes: [fn(&mut Occurrence); 10] = [
            |o| o.note = "other".into(),
            |o| o.reason = "Other".into(),
            |o| o.action = "Other".into(),
            |o| o.type_ = EventType::Warning,
            |o| o.reporting_controller = "other".into(),
            |o| o.reporting_instance = "other".into(),
            |o| o.regarding.name = Some("other".into()),
            |o| o.regarding.uid = Some("other".into()),
            |o| o.regarding.field_path = Some("spec".into()),
            |o| o.related = Some(ObjectReference::default()),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut other = base.clone();
            change(&mut other);
            assert_ne!(
                key(&base),
                key(&other),
                "change #{i} must make another event"
            );
        }
        // Aggregation ignores the note; the spam key ignores everything but reporter + object.
        let mut other_note = base.clone();
        other_note.note = "other".into();
        other_note.reason = "Other".into();
        other_note.regarding.field_path = Some("spec".into());
        assert_ne!(
            EventKey::new(&base, NoteKey::Combined),
            EventKey::new(&other_note, NoteKey::Combined)
        );
        assert_eq!(SpamKey::new(&base), SpamKey::new(&other_note));
    }

    #[tokio::test(start_paused = true)]
    async fn aggregation_starts_at_the_tenth_distinct_note() {
        let mut agg = Aggregator::new(64, 10, Duration::from_secs(600));
        let key = EventKey::new(&occurrence("cm", ""), NoteKey::Combined);
        let now = Instant::now();
        for i in 1..=9 {
            assert!(!agg.observe(&key, &format!("note {i}"), now), "note {i}");
        }
        // Repeating a known note is never combined.
        assert!(!agg.observe(&key, "note 3", now));
        assert!(agg.observe(&key, "note 10", now));
        assert!(agg.observe(&key, "note 11", now));
        assert!(
            !agg.observe(&key, "note 1", now),
            "early notes keep their event"
        );
        // Another object has its own record.
        let other = EventKey::new(&occurrence("other", ""), NoteKey::Combined);
        assert!(!agg.observe(&other, "note 10", now));
    }

    #[tokio::test(start_paused = true)]
    async fn aggregation_resets_after_a_quiet_interval() {
        let mut agg = Aggregator::new(64, 10, Duration::from_secs(600));
        let key = EventKey::new(&occurrence("cm", ""), NoteKey::Combined);
        for i in 1..=9 {
            assert!(!agg.observe(&key, &format!("a{i}"), Instant::now()));
        }
        // Similar events keep the record alive as long as they come within 10 minutes.
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(agg.observe(&key, "b", Instant::now()));
        tokio::time::advance(Duration::from_secs(601)).await;
        assert!(!agg.observe(&key, "c", Instant::now()), "record was reset");
        let mut off = Aggregator::new(64, 0, Duration::from_secs(600));
        for i in 0..20 {
            assert!(!off.observe(&key, &i.to_string(), Instant::now()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn spam_filter_bursts_25_then_refills_one_per_5_minutes() {
        let mut filter = SpamFilter::new(64, 25, Duration::from_secs(300));
        let key = SpamKey::new(&occurrence("cm", ""));
        let other = SpamKey::new(&occurrence("other", ""));
        for i in 0..25 {
            assert!(
                filter.allow(&key, Instant::now()),
                "event {i} is within the burst"
            );
        }
        assert!(!filter.allow(&key, Instant::now()));
        assert!(
            filter.allow(&other, Instant::now()),
            "buckets are per object"
        );

        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(!filter.allow(&key, Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(filter.allow(&key, Instant::now()), "one token after 300s");
        assert!(!filter.allow(&key, Instant::now()));

        // A long pause refills up to the burst, no more.
        tokio::time::advance(Duration::from_secs(300 * 100)).await;
        let allowed = (0..40)
            .filter(|_| filter.allow(&key, Instant::now()))
            .count();
        assert_eq!(allowed, 25);
    }

    #[tokio::test(start_paused = true)]
    async fn thirty_distinct_notes_give_nine_events_and_one_combined_series() {
        let mut c = default_correlator();
        let mut verdicts = Vec::new();
        for i in 1..=30 {
            let o = occurrence("cm", &format!("attempt {i} failed"));
            verdicts.push(c.correlate(&o));
        }
        let exact = verdicts
            .iter()
            .filter(|v| v.as_ref().is_some_and(|c| !c.combined))
            .count();
        let combined: Vec<_> = verdicts
            .iter()
            .flatten()
            .filter(|c| c.combined)
            .map(|c| (&c.key, &c.note))
            .collect();
        let spam = verdicts.iter().filter(|v| v.is_none()).count();
        assert_eq!(exact, 9);
        assert_eq!(combined.len(), 16, "events 10..=25 pass the spam filter");
        assert_eq!(spam, 5, "events 26..=30 exceed the burst of 25");
        assert!(combined.iter().all(|(k, _)| k.is_combined()));
        assert_eq!(
            combined[0].1,
            "(combined from similar events): attempt 10 failed"
        );
    }
}
