//! Relists: `Replaced` deltas, inferred deletions, and `has_synced`.

use super::*;

#[test]
fn replace_with_delete_delta_in() {
    // kubernetes#83810: a relist must not be swallowed by a queued deletion.
    let (old, new) = (mk("foo", 1), mk("foo", 2));
    let f = known(std::slice::from_ref(&old));
    f.delete(old.clone());
    f.replace(vec![new.clone()], "");
    assert_eq!(pop(&f), [d(Deleted, old), d(Replaced, new)]);
}

#[test]
fn replace_makes_deletions_for_objects_only_in_queue() {
    let obj = mk("foo", 2);
    let obj_v2 = mk("foo", 3);
    type Ops = Box<dyn Fn(&DeltaFifo<ConfigMap>)>;
    let table: Vec<(&str, Ops, Vec<Delta<ConfigMap>>)> = vec![
        (
            "added object should be deleted on replace",
            Box::new({
                let obj = obj.clone();
                move |f| {
                    f.add(obj.clone());
                    f.replace(vec![], "0");
                }
            }),
            vec![d(Added, obj.clone()), tomb("foo", obj.clone())],
        ),
        (
            "replaced object should have only a single delete",
            Box::new({
                let obj = obj.clone();
                move |f| {
                    f.add(obj.clone());
                    f.replace(vec![obj.clone()], "0");
                    f.replace(vec![], "0");
                }
            }),
            vec![
                d(Added, obj.clone()),
                d(Replaced, obj.clone()),
                tomb("foo", obj.clone()),
            ],
        ),
        (
            "deleted object should have only a single delete",
            Box::new({
                let obj = obj.clone();
                move |f| {
                    f.add(obj.clone());
                    f.delete(obj.clone());
                    f.replace(vec![], "0");
                }
            }),
            vec![d(Added, obj.clone()), d(Deleted, obj.clone())],
        ),
        (
            "replaced twice then deleted has a single delete",
            Box::new({
                let obj = obj.clone();
                move |f| {
                    f.add(obj.clone());
                    f.replace(vec![obj.clone()], "0");
                    f.replace(vec![obj.clone()], "0");
                    f.replace(vec![], "0");
                }
            }),
            vec![
                d(Added, obj.clone()),
                d(Replaced, obj.clone()),
                d(Replaced, obj.clone()),
                tomb("foo", obj.clone()),
            ],
        ),
        (
            "added objects should have a single delete on multiple replaces",
            Box::new({
                let obj = obj.clone();
                move |f| {
                    f.add(obj.clone());
                    f.replace(vec![], "0");
                    f.replace(vec![], "1");
                }
            }),
            vec![d(Added, obj.clone()), tomb("foo", obj.clone())],
        ),
        (
            "added and deleted and added object should be deleted",
            Box::new({
                let (obj, obj_v2) = (obj.clone(), obj_v2.clone());
                move |f| {
                    f.add(obj.clone());
                    f.delete(obj.clone());
                    f.add(obj_v2.clone());
                    f.replace(vec![], "0");
                }
            }),
            vec![
                d(Added, obj.clone()),
                d(Deleted, obj.clone()),
                d(Added, obj_v2.clone()),
                tomb("foo", obj_v2.clone()),
            ],
        ),
    ];
    for (name, ops, expected) in table {
        for f in [known(&[]), DeltaFifo::new()] {
            ops(&f);
            assert_eq!(pop(&f), expected, "{name} ({f:?})");
            assert!(f.is_empty(), "{name}: no extra deltas");
            assert!(f.state.lock().items.is_empty());
        }
    }
}

#[test]
fn add_then_replace() {
    let f = DeltaFifo::<ConfigMap>::new();
    f.add(mk("foo", 10));
    f.replace(vec![mk("foo", 15)], "0");
    assert_eq!(pop_val(&f), 15);
    assert!(try_pop(&f).is_none());
    assert!(f.get("foo").is_none());
}

#[test]
fn replace_makes_deletions() {
    let initial = || [mk("foo", 5), mk("bar", 6), mk("baz", 7)];

    // With a queued deletion.
    let f = known(&initial());
    f.delete(mk("baz", 10));
    f.replace(vec![mk("foo", 5)], "0");
    assert_eq!(pop(&f), [d(Deleted, mk("baz", 10))]);
    assert_eq!(pop(&f), [d(Replaced, mk("foo", 5))]);
    // Not queued, not listed: a tombstone with the known object.
    assert_eq!(pop(&f), [tomb("bar", mk("bar", 6))]);
    assert!(f.is_empty());

    // With a queued add instead.
    let f = known(&initial());
    f.add(mk("baz", 10));
    f.replace(vec![mk("foo", 5)], "0");
    assert_eq!(
        pop(&f),
        [d(Added, mk("baz", 10)), tomb("baz", mk("baz", 10))]
    );
    assert_eq!(pop(&f), [d(Replaced, mk("foo", 5))]);
    assert_eq!(pop(&f), [tomb("bar", mk("bar", 6))]);

    // Deleted and recreated in the queue, then deleted by a relist: the newest queued
    // object, not the known one.
    let f = known(&initial());
    f.delete(mk("bar", 6));
    f.add(mk("bar", 100));
    f.replace(vec![mk("foo", 5)], "0");
    assert_eq!(
        pop(&f),
        [
            d(Deleted, mk("bar", 6)),
            d(Added, mk("bar", 100)),
            tomb("bar", mk("bar", 100)),
        ]
    );
    assert_eq!(pop(&f), [d(Replaced, mk("foo", 5))]);
    assert_eq!(pop(&f), [tomb("baz", mk("baz", 7))]);

    // Relisted first: the deletion carries the relisted version.
    let f = known(&initial());
    f.replace(vec![mk("bar", 100), mk("foo", 5)], "0");
    f.replace(vec![mk("foo", 5)], "0");
    assert_eq!(
        pop(&f),
        [d(Replaced, mk("bar", 100)), tomb("bar", mk("bar", 100))]
    );
    assert_eq!(
        pop(&f),
        [d(Replaced, mk("foo", 5)), d(Replaced, mk("foo", 5))]
    );
    assert_eq!(pop(&f), [tomb("baz", mk("baz", 7))]);

    // Without known objects.
    let f = DeltaFifo::new();
    f.add(mk("baz", 10));
    f.replace(vec![mk("foo", 5)], "0");
    assert_eq!(
        pop(&f),
        [d(Added, mk("baz", 10)), tomb("baz", mk("baz", 10))]
    );
    assert_eq!(pop(&f), [d(Replaced, mk("foo", 5))]);
    assert!(f.is_empty());
}

#[test]
fn replace_makes_deletions_replaced() {
    let f = known(&[mk("foo", 5), mk("bar", 6), mk("baz", 7)]);
    f.delete(mk("baz", 10));
    f.replace(vec![mk("foo", 6)], "0");
    assert_eq!(pop(&f), [d(Deleted, mk("baz", 10))]);
    assert_eq!(pop(&f), [d(Replaced, mk("foo", 6))]);
    assert_eq!(pop(&f), [tomb("bar", mk("bar", 6))]);
}

#[test]
fn replace_of_a_tombstoned_key_unwraps_the_tombstone() {
    let f = DeltaFifo::new();
    f.add(mk("foo", 1));
    f.delete(DeletedFinalStateUnknown::new("foo", mk("foo", 2)));
    f.replace(vec![], "0");
    let deltas = pop(&f);
    // The second tombstone holds the object, not a tombstone of a tombstone.
    assert_eq!(deltas, [d(Added, mk("foo", 1)), tomb("foo", mk("foo", 2))]);
}

#[test]
fn has_synced_correct_on_deletion() {
    let f = known(&[mk("foo", 5), mk("bar", 6), mk("baz", 7)]);
    f.replace(vec![mk("foo", 5)], "0");
    let expected = [
        vec![d(Replaced, mk("foo", 5))],
        vec![tomb("bar", mk("bar", 6))],
        vec![tomb("baz", mk("baz", 7))],
    ];
    for want in expected {
        assert!(!f.has_synced());
        let (deltas, initial) = try_pop2(&f).unwrap();
        assert_eq!(deltas.into_vec(), want);
        assert!(initial, "initial list item");
    }
    assert!(f.has_synced());
    f.add(mk("late", 1));
    let (_, initial) = try_pop2(&f).unwrap();
    assert!(!initial);
}

#[test]
fn has_synced() {
    type Action = fn(&DeltaFifo<ConfigMap>);
    let add_a: Action = |f| f.add(mk("a", 1));
    let replace0: Action = |f| f.replace(vec![], "0");
    let replace2: Action = |f| f.replace(vec![mk("a", 1), mk("b", 2)], "0");
    let replace_dup: Action = |f| f.replace(vec![mk("a", 1), mk("a", 2)], "0");
    let delete_a: Action = |f| f.delete(mk("a", 1));
    let pop1: Action = |f| {
        try_pop(f).unwrap();
    };
    let cases: Vec<(Vec<Action>, bool)> = vec![
        (vec![], false),
        (vec![add_a], true),
        (vec![replace0], true),
        (vec![replace2], false),
        (vec![replace2, pop1], false),
        (vec![replace2, pop1, pop1], true),
        // Duplicate keys in one list (a broken server) count once.
        (vec![replace_dup, pop1], true),
        // Only the first replace counts.
        (vec![replace0, replace2], true),
        // A delete makes the queue populated even when dropped.
        (vec![delete_a], true),
    ];
    for (i, (actions, want)) in cases.into_iter().enumerate() {
        let f = DeltaFifo::new();
        for action in actions {
            action(&f);
        }
        assert_eq!(f.has_synced(), want, "case {i}");
    }
}
