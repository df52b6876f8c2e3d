//! Property test: after any sequence of operations the indices equal the indices recomputed
//! from scratch, hold no empty value sets, and the store equals a plain map model.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use proptest::prelude::*;

use super::tests::{by_part, by_val, cm};
use super::*;

#[derive(Debug, Clone)]
enum Op {
    Add(Obj),
    Delete { ns: u8, name: u8 },
    Replace(Vec<Obj>),
    AddIndexer(u8),
}

#[derive(Debug, Clone)]
struct Obj {
    ns: u8,
    name: u8,
    val: String,
}

fn namespace(ns: u8) -> Option<&'static str> {
    [None, Some("a"), Some("b")][usize::from(ns % 3)]
}

fn build(o: &Obj) -> Arc<ConfigMap> {
    cm(namespace(o.ns), &format!("n{}", o.name), &o.val)
}

/// A third index whose values depend on the name, to mix with the annotation-based ones.
fn by_name_len() -> IndexFunc<ConfigMap> {
    Arc::new(|obj: &ConfigMap| {
        let name = obj.metadata.name.clone().unwrap_or_default();
        vec![name.len().to_string(), name]
    })
}

fn indexer_named(i: u8) -> (&'static str, IndexFunc<ConfigMap>) {
    match i % 3 {
        0 => ("by-val", by_val()),
        1 => ("by-part", by_part()),
        _ => ("by-name", by_name_len()),
    }
}

fn obj() -> impl Strategy<Value = Obj> {
    (0u8..3, 0u8..5, "[abc](,[abc]){0,3}").prop_map(|(ns, name, val)| Obj { ns, name, val })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => obj().prop_map(Op::Add),
        3 => (0u8..3, 0u8..5).prop_map(|(ns, name)| Op::Delete { ns, name }),
        1 => prop::collection::vec(obj(), 0..6).prop_map(Op::Replace),
        1 => (0u8..3).prop_map(Op::AddIndexer),
    ]
}

type Recomputed = BTreeMap<String, BTreeSet<String>>;

fn check(store: &Indexer<ConfigMap>, model: &BTreeMap<String, Arc<ConfigMap>>) {
    let keys: BTreeSet<String> = store.list_keys().into_iter().collect();
    assert_eq!(keys, model.keys().cloned().collect::<BTreeSet<_>>());
    assert_eq!(store.len(), model.len());
    for (key, obj) in model {
        let stored = store.get(key);
        assert!(stored.is_some_and(|s| Arc::ptr_eq(&s, obj)), "{key}");
    }

    let inner = store.inner.read();
    for (name, func) in inner.indices.funcs() {
        let mut want = Recomputed::new();
        for (key, obj) in model {
            for value in func(obj) {
                want.entry(value).or_default().insert(key.clone());
            }
        }
        let raw = &inner.indices.raw()[name];
        assert!(
            raw.values().all(|keys| !keys.is_empty()),
            "empty set in {name}"
        );
        let got: Recomputed = raw
            .iter()
            .map(|(v, keys)| (v.clone(), keys.iter().map(|k| k.to_string()).collect()))
            .collect();
        assert_eq!(got, want, "index {name}");
    }
    let names = inner.indices.names();
    drop(inner);

    // The same through the public API.
    for name in names {
        let values: BTreeSet<String> = store.list_index_values(&name).into_iter().collect();
        for value in &values {
            let by_index: BTreeSet<String> = store
                .by_index(&name, value)
                .unwrap()
                .iter()
                .map(|o| object_key(&**o))
                .collect();
            let keys = store.index_keys(&name, value).unwrap();
            assert!(!keys.is_empty());
            assert_eq!(by_index, keys.into_iter().collect::<BTreeSet<_>>());
        }
    }
}

proptest! {
    #[test]
    fn indices_always_match_a_recomputation(
        initial in prop::option::of(0u8..3),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let store = Indexer::with_indexers(initial.map(indexer_named)).unwrap();
        let mut model = BTreeMap::new();
        for op in ops {
            match op {
                Op::Add(o) => {
                    let obj = build(&o);
                    let key = object_key(&*obj);
                    let old = store.add(Arc::clone(&obj));
                    let expected_old = model.insert(key, obj);
                    prop_assert_eq!(old.is_some(), expected_old.is_some());
                    if let (Some(a), Some(b)) = (old, expected_old) {
                        prop_assert!(Arc::ptr_eq(&a, &b));
                    }
                }
                Op::Delete { ns, name } => {
                    let key = namespace_name_key(namespace(ns), &format!("n{name}"));
                    let old = store.delete(&key);
                    prop_assert_eq!(old.is_some(), model.remove(&key).is_some());
                }
                Op::Replace(objs) => {
                    let objs: Vec<_> = objs.iter().map(build).collect();
                    store.replace(objs.iter().cloned());
                    model = objs.into_iter().map(|o| (object_key(&*o), o)).collect();
                }
                Op::AddIndexer(i) => {
                    let (name, func) = indexer_named(i);
                    let existed = store.index_names().iter().any(|n| n == name);
                    let added = store.add_indexers([(name, func)]);
                    prop_assert_eq!(added.is_err(), existed);
                }
            }
            check(&store, &model);
        }
    }
}
