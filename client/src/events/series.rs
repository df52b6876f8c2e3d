//! Series bookkeeping, client-go's `tools/events` event cache: the first occurrence of an
//! event is created; repeats within the series window only bump `series.count` and
//! `series.lastObservedTime` in memory, and a periodic flush writes them with one PATCH per
//! series. Pure logic: the broadcaster's task performs the [`WriteJob`]s and reports back.

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::correlate::{EventKey, Occurrence};
use super::lru::Lru;

/// The namespace of events about cluster-scoped objects (`metav1.NamespaceDefault`).
pub const CLUSTER_SCOPED_NAMESPACE: &str = "default";

/// The longest name the API accepts (a DNS subdomain).
const MAX_NAME_LEN: usize = 253;

/// Which request a [`WriteJob`] starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// POST the whole event (with its series, if it has one).
    Create,
    /// Merge-patch `series` of the existing event.
    Patch,
}

/// One write for the broadcaster's task to perform.
#[derive(Clone, Debug)]
pub(crate) struct WriteJob {
    pub(crate) key: EventKey,
    pub(crate) id: u64,
    pub(crate) op: Op,
    /// The event as it should be on the server (its `series` set once it has repeated).
    pub(crate) event: Event,
}

/// What became of one occurrence.
#[derive(Debug)]
pub(crate) enum Observed {
    /// A new event, to create now.
    New(Box<WriteJob>),
    /// A repeat of a known event; its series now has this count.
    Repeat(i32),
}

#[derive(Debug)]
struct Entry {
    id: u64,
    event: Event,
    count: i32,
    last_observed: Timestamp,
    last_seen: Instant,
    /// The series changed since the last write was started.
    dirty: bool,
    /// A write for this entry is queued or running.
    in_flight: bool,
    /// The event exists on the server (as far as we know).
    created: bool,
}

impl Entry {
    fn job(&mut self, key: &EventKey) -> WriteJob {
        self.dirty = false;
        self.in_flight = true;
        let mut event = self.event.clone();
        if self.count > 1 {
            event.series = Some(EventSeries {
                count: self.count,
                last_observed_time: MicroTime(self.last_observed),
            });
        }
        WriteJob {
            key: key.clone(),
            id: self.id,
            op: if self.created { Op::Patch } else { Op::Create },
            event,
        }
    }
}

/// The events seen recently, by key.
#[derive(Debug)]
pub(crate) struct SeriesCache {
    entries: Lru<EventKey, Entry>,
    window: Duration,
    next_id: u64,
    last_name_nanos: i128,
}

impl SeriesCache {
    /// A cache where an event repeated within `window` of its last occurrence extends its
    /// series, holding at most `capacity` events.
    pub(crate) fn new(capacity: usize, window: Duration) -> Self {
        Self {
            entries: Lru::new(capacity),
            window,
            next_id: 0,
            last_name_nanos: 0,
        }
    }

    /// Records an occurrence of the event `key`, written with `note`.
    pub(crate) fn observe(&mut self, key: EventKey, o: &Occurrence, note: String) -> Observed {
        let window = self.window;
        if let Some(entry) = self.entries.get_mut(&key)
            && o.at.saturating_duration_since(entry.last_seen) <= window
        {
            entry.count = entry.count.saturating_add(1);
            entry.last_observed = entry.last_observed.max(o.time);
            entry.last_seen = entry.last_seen.max(o.at);
            entry.dirty = true;
            return Observed::Repeat(entry.count);
        }
        // Names are `<regarding>.<nanoseconds, hex>`; never reuse one, even on a coarse clock.
        let nanos = o.time.as_nanosecond().max(self.last_name_nanos + 1);
        self.last_name_nanos = nanos;
        self.next_id += 1;
        let mut entry = Entry {
            id: self.next_id,
            event: make_event(o, note, nanos),
            count: 1,
            last_observed: o.time,
            last_seen: o.at,
            dirty: false,
            in_flight: false,
            created: false,
        };
        let job = entry.job(&key);
        if let Some((evicted, _)) = self.entries.insert(key, entry) {
            tracing::trace!(?evicted, "event cache full: forgot the least recent event");
        }
        Observed::New(Box::new(job))
    }

    /// The writes due now: every series that changed and has no write under way. Events not
    /// seen for longer than the window, with nothing left to write, are forgotten (client-go's
    /// `finishSeries`).
    pub(crate) fn due(&mut self, now: Instant) -> Vec<WriteJob> {
        let window = self.window;
        self.entries.retain(|_, e| {
            e.dirty || e.in_flight || now.saturating_duration_since(e.last_seen) <= window
        });
        self.entries
            .iter_mut()
            .filter(|(_, e)| e.dirty && !e.in_flight)
            .map(|(k, e)| e.job(k))
            .collect()
    }

    /// Reports how the write for `key` (entry `id`) ended.
    pub(crate) fn complete(&mut self, key: &EventKey, id: u64, written: bool) {
        match self.entries.peek(key) {
            Some(e) if e.id == id => {}
            _ => return,
        }
        if let Some(e) = self.entries.get_mut(key) {
            e.in_flight = false;
            e.created |= written;
        }
    }

    /// How many events are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Builds the `events.k8s.io/v1` Event for an occurrence (client-go's `makeEvent`).
pub(crate) fn make_event(o: &Occurrence, note: String, name_nanos: i128) -> Event {
    let namespace = o
        .regarding
        .namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| CLUSTER_SCOPED_NAMESPACE.to_owned());
    let regarding_name = o.regarding.name.as_deref().unwrap_or_default();
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(regarding_name, name_nanos)),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(o.time)),
        series: None,
        reporting_controller: Some(o.reporting_controller.to_string()),
        reporting_instance: Some(o.reporting_instance.to_string()),
        action: Some(o.action.clone()),
        reason: Some(o.reason.clone()),
        regarding: Some(o.regarding.clone()),
        related: o
            .related
            .clone()
            .filter(|r| *r != ObjectReference::default()),
        note: Some(note),
        type_: Some(o.type_.as_str().to_owned()),
        ..Event::default()
    }
}

/// `<regarding name>.<nanoseconds in hex>` (client-go: `fmt.Sprintf("%v.%x", refName,
/// t.UnixNano())`), with the regarding name made a valid DNS-subdomain prefix.
pub(crate) fn event_name(regarding_name: &str, nanos: i128) -> String {
    let suffix = format!(".{:x}", nanos.max(0));
    let mut base: String = regarding_name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(MAX_NAME_LEN - suffix.len());
    let base = base
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    let base = if base.is_empty() { "event" } else { base };
    format!("{base}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::correlate::NoteKey;
    use crate::events::correlate::tests::occurrence;

    const WINDOW: Duration = Duration::from_secs(6 * 60);

    fn key(o: &Occurrence) -> EventKey {
        EventKey::new(o, NoteKey::Exact(o.note.clone()))
    }

    fn observe(cache: &mut SeriesCache, o: &Occurrence) -> Observed {
        cache.observe(key(o), o, o.note.clone())
    }

    #[test]
    fn names_follow_client_go_and_stay_valid() {
        assert_eq!(event_name("my-cm", 0x17f), "my-cm.17f");
        assert_eq!(
            event_name("system:controller:Foo", 255),
            "system-controller-foo.ff"
        );
        assert_eq!(event_name("", 1), "event.1");
        let long = "a".repeat(400);
        let name = event_name(&long, i128::from(i64::MAX));
        assert_eq!(name.len(), MAX_NAME_LEN);
        assert!(name.ends_with(".7fffffffffffffff"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_occurrence_is_created_with_every_field() {
        let mut cache = SeriesCache::new(16, WINDOW);
        let mut o = occurrence("cm", "hello");
        o.regarding.namespace = None;
        let Observed::New(job) = observe(&mut cache, &o) else {
            panic!("a first occurrence is new")
        };
        assert_eq!(job.op, Op::Create);
        let e = &job.event;
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(
            e.metadata.name.as_deref(),
            Some(event_name("cm", o.time.as_nanosecond()).as_str())
        );
        assert_eq!(e.event_time, Some(MicroTime(o.time)));
        assert_eq!(e.reason.as_deref(), Some("Synced"));
        assert_eq!(e.action.as_deref(), Some("Sync"));
        assert_eq!(e.note.as_deref(), Some("hello"));
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.reporting_controller.as_deref(), Some("example.com/ctl"));
        assert_eq!(e.reporting_instance.as_deref(), Some("ctl-0"));
        assert_eq!(e.regarding.as_ref(), Some(&o.regarding));
        assert!(e.series.is_none());
        // Nothing else to write until it repeats.
        assert!(cache.due(Instant::now()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn repeats_are_counted_and_patched_once_per_flush() {
        let mut cache = SeriesCache::new(16, WINDOW);
        let o = occurrence("cm", "hello");
        let Observed::New(create) = observe(&mut cache, &o) else {
            panic!("new")
        };
        for expected in 2..=5 {
            tokio::time::advance(Duration::from_secs(1)).await;
            let mut again = o.clone();
            again.at = Instant::now();
            again.time = Timestamp::now();
            assert!(matches!(observe(&mut cache, &again), Observed::Repeat(n) if n == expected));
        }
        // The create is still running: nothing is due for this event yet.
        assert!(cache.due(Instant::now()).is_empty());
        cache.complete(&create.key, create.id, true);

        let jobs = cache.due(Instant::now());
        assert_eq!(jobs.len(), 1);
        let patch = &jobs[0];
        assert_eq!(patch.op, Op::Patch);
        assert_eq!(patch.event.metadata.name, create.event.metadata.name);
        let series = patch.event.series.as_ref().map(|s| s.count);
        assert_eq!(series, Some(5));
        assert!(cache.due(Instant::now()).is_empty(), "one write per change");
        cache.complete(&patch.key, patch.id, true);
        assert!(cache.due(Instant::now()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_create_is_retried_as_a_create_with_its_series() {
        let mut cache = SeriesCache::new(16, WINDOW);
        let o = occurrence("cm", "hello");
        let Observed::New(create) = observe(&mut cache, &o) else {
            panic!("new")
        };
        cache.complete(&create.key, create.id, false);
        assert!(
            cache.due(Instant::now()).is_empty(),
            "a failure alone is not retried"
        );
        assert!(matches!(observe(&mut cache, &o), Observed::Repeat(2)));
        let jobs = cache.due(Instant::now());
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].op, Op::Create);
        assert_eq!(jobs[0].event.series.as_ref().map(|s| s.count), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_series_ends_after_the_window() {
        let mut cache = SeriesCache::new(16, WINDOW);
        let o = occurrence("cm", "hello");
        let Observed::New(first) = observe(&mut cache, &o) else {
            panic!("new")
        };
        cache.complete(&first.key, first.id, true);
        tokio::time::advance(WINDOW).await;
        let mut again = o.clone();
        again.at = Instant::now();
        assert!(
            matches!(observe(&mut cache, &again), Observed::Repeat(2)),
            "still within the window"
        );
        for job in cache.due(Instant::now()) {
            cache.complete(&job.key, job.id, true);
        }

        tokio::time::advance(WINDOW + Duration::from_secs(1)).await;
        assert!(cache.due(Instant::now()).is_empty());
        assert_eq!(
            cache.len(),
            0,
            "forgotten once quiet for longer than the window"
        );
        let mut later = o.clone();
        later.at = Instant::now();
        later.time = Timestamp::now();
        let Observed::New(second) = observe(&mut cache, &later) else {
            panic!("a repeat after the window starts a new event")
        };
        assert_ne!(second.event.metadata.name, first.event.metadata.name);
        // A late completion for the forgotten entry changes nothing.
        cache.complete(&first.key, first.id, true);
        assert!(cache.due(Instant::now()).is_empty());
        cache.complete(&second.key, second.id, true);
        assert!(matches!(observe(&mut cache, &later), Observed::Repeat(2)));
        assert_eq!(cache.due(Instant::now())[0].op, Op::Patch);
    }

    #[tokio::test(start_paused = true)]
    async fn names_are_unique_even_at_the_same_instant() {
        let mut cache = SeriesCache::new(16, WINDOW);
        let a = occurrence("cm", "one");
        let mut b = a.clone();
        b.note = "two".into();
        let (Observed::New(ja), Observed::New(jb)) =
            (observe(&mut cache, &a), observe(&mut cache, &b))
        else {
            panic!("two different events")
        };
        assert_ne!(ja.event.metadata.name, jb.event.metadata.name);
    }
}
