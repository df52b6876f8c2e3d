//! Adds, updates, deletes, resyncs and their merging per key.

use super::*;

#[test]
fn add_update_delete_collapse_into_one_key() {
    let f = DeltaFifo::<ConfigMap>::new();
    f.add(mk("foo", 10));
    f.update(mk("foo", 12));
    f.delete(mk("foo", 15));
    assert_eq!(f.list_keys(), ["foo"]);
    assert_eq!(f.len(), 1);
    let deltas = f.get("foo").unwrap();
    assert_eq!(deltas.len(), 3);
    assert_eq!(val(deltas.newest().unwrap().object.object()), 15);
    assert_eq!(pop_val(&f), 15);
    assert!(try_pop(&f).is_none(), "a second value");
    assert!(f.get("foo").is_none(), "item did not get removed");
}

#[test]
fn enqueueing_without_known_objects() {
    let f = DeltaFifo::<ConfigMap>::new();
    f.add(mk("foo", 10));
    f.update(mk("bar", 15));
    f.add(mk("qux", 17));
    f.delete(mk("qux", 18));
    // Not queued and nothing known: dropped.
    f.delete(mk("baz", 20));
    for expect in [10, 15, 18] {
        assert_eq!(pop_val(&f), expect);
    }
    assert!(f.is_empty());
}

#[test]
fn enqueueing_with_known_objects() {
    let f = known(&[mk("foo", 5), mk("bar", 6), mk("baz", 7)]);
    f.add(mk("foo", 10));
    f.update(mk("bar", 15));
    // Queued: "baz" is known.
    f.delete(mk("baz", 20));
    for expect in [10, 15, 20] {
        assert_eq!(pop_val(&f), expect);
    }
    assert!(f.is_empty());
}

#[test]
fn resync_skips_queued_keys() {
    // ResyncNonExisting: a queued deletion is newer than the known object.
    let f = known(&[mk("foo", 5)]);
    f.delete(mk("foo", 10));
    f.resync();
    assert_eq!(queued(&f, "foo"), [d(Deleted, mk("foo", 10))]);

    // UpdateResyncRace: the same for an update.
    let f = known(&[mk("foo", 5)]);
    f.update(mk("foo", 6));
    f.resync();
    assert_eq!(pop(&f), [d(Updated, mk("foo", 6))]);
    assert!(f.is_empty());
}

#[test]
fn resync_queues_known_objects() {
    let f = known(&[mk("foo", 5), mk("bar", 6)]);
    f.resync();
    assert_eq!(queued(&f, "foo"), [d(Sync, mk("foo", 5))]);
    assert_eq!(f.list_keys(), ["foo", "bar"]);
    // Resync does not make the queue populated.
    assert!(!f.has_synced());
    // Without known objects it does nothing.
    let f = DeltaFifo::<ConfigMap>::new();
    f.resync();
    assert!(f.is_empty());
}

#[test]
fn delete_existing_non_propagated() {
    let f = known(&[]);
    f.add(mk("foo", 5));
    f.delete(mk("foo", 6));
    let deltas = queued(&f, "foo");
    assert_eq!(deltas.len(), 2);
    assert_eq!(deltas[1].kind, Deleted);
}

#[test]
fn duplicate_deletions_collapse() {
    let obj = mk("foo", 1);
    let newer = mk("foo", 2);
    // Tombstone then real: the real object wins.
    let f = known(std::slice::from_ref(&obj));
    f.delete(DeletedFinalStateUnknown::new("foo", obj.clone()));
    f.delete(newer.clone());
    assert_eq!(queued(&f, "foo"), [d(Deleted, newer.clone())]);
    // Real then tombstone: the real object stays.
    let f = known(std::slice::from_ref(&obj));
    f.delete(newer.clone());
    f.delete(DeletedFinalStateUnknown::new("foo", obj.clone()));
    assert_eq!(queued(&f, "foo"), [d(Deleted, newer.clone())]);
    // Real then real: the first stays.
    let f = known(std::slice::from_ref(&obj));
    f.delete(obj.clone());
    f.delete(newer.clone());
    assert_eq!(queued(&f, "foo"), [d(Deleted, obj.clone())]);
    // Tombstone then tombstone: the later.
    let f = known(std::slice::from_ref(&obj));
    f.delete(DeletedFinalStateUnknown::new("foo", obj.clone()));
    f.delete(DeletedFinalStateUnknown::new("foo", newer.clone()));
    assert_eq!(queued(&f, "foo"), [tomb("foo", newer.clone())]);
    // Only the last two are compared: a deletion after an update is kept.
    let f = known(&[]);
    f.add(obj.clone());
    f.delete(obj.clone());
    f.delete(obj.clone());
    assert_eq!(
        queued(&f, "foo"),
        [d(Added, obj.clone()), d(Deleted, obj.clone())]
    );
}

#[test]
fn detect_line_jumpers() {
    let f = DeltaFifo::new();
    f.add(mk("foo", 10));
    f.add(mk("bar", 1));
    f.add(mk("foo", 11));
    f.add(mk("foo", 13));
    f.add(mk("zab", 30));
    assert_eq!(pop_val(&f), 13);
    f.add(mk("foo", 14)); // foo must not jump back in line
    assert_eq!(pop_val(&f), 1);
    assert_eq!(pop_val(&f), 30);
    assert_eq!(pop_val(&f), 14);
}

#[test]
fn key_of() {
    assert_eq!(DeltaObject::from(mk("A", 0)).key(), "A");
    let tombstone = DeltaObject::from(DeletedFinalStateUnknown::new("B", mk("other", 0)));
    assert_eq!(tombstone.key(), "B");
    let deltas = Deltas::from_vec(vec![d(Added, mk("C", 0))]).unwrap();
    assert_eq!(deltas.key(), "C");
    let deltas = Deltas::from_vec(vec![d(Added, mk("x", 0)), tomb("D", mk("x", 0))]).unwrap();
    assert_eq!(deltas.key(), "D");
    assert!(Deltas::<ConfigMap>::from_vec(vec![]).is_none());
}

/// The informer's loop: pop into an [`Indexer`] that is also the known objects.
#[test]
fn with_an_indexer_as_known_objects() {
    let store = Indexer::<ConfigMap>::new();
    let f = DeltaFifo::with_known_objects(store.clone());
    let drain = || {
        while let Some(Ok(_)) = f
            .pop(|deltas, _| {
                for delta in deltas {
                    match delta.kind {
                        Deleted => {
                            store.delete(deltas.key());
                        }
                        _ => {
                            store.add(Arc::clone(delta.object.object()));
                        }
                    }
                }
                Ok::<(), ProcessError<()>>(())
            })
            .now_or_never()
        {}
    };
    f.replace(vec![mk("a", 1), mk("b", 1)], "1");
    drain();
    assert!(f.has_synced());
    assert_eq!(store.len(), 2);

    // A relist without "b": a tombstone with the cached object.
    f.replace(vec![mk("a", 2)], "2");
    assert_eq!(queued(&f, "b"), [tomb("b", mk("b", 1))]);
    drain();
    assert_eq!(store.list_keys(), ["a"]);
    assert_eq!(val(&store.get("a").unwrap()), 2);

    // A deletion of something known is queued; of something unknown, dropped.
    f.delete(mk("a", 3));
    f.delete(mk("zzz", 3));
    assert_eq!(f.list_keys(), ["a"]);
    drain();
    assert!(store.is_empty());

    store.add(mk("c", 1));
    f.resync();
    assert_eq!(queued(&f, "c"), [d(Sync, mk("c", 1))]);
}
