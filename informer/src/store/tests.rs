//! Ports of client-go's `thread_safe_store_test.go`, `index_test.go` and `store_test.go`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

use super::*;

/// A ConfigMap `namespace/name` with a `val` annotation and `labels`.
pub(super) fn cm(namespace: Option<&str>, name: &str, val: &str) -> Arc<ConfigMap> {
    Arc::new(ConfigMap {
        metadata: ObjectMeta {
            namespace: namespace.map(str::to_owned),
            name: Some(name.to_owned()),
            annotations: Some(BTreeMap::from([("val".to_owned(), val.to_owned())])),
            ..Default::default()
        },
        ..Default::default()
    })
}

fn val(obj: &ConfigMap) -> String {
    obj.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("val").cloned())
        .unwrap_or_default()
}

/// Index by the whole `val` annotation.
pub(super) fn by_val() -> IndexFunc<ConfigMap> {
    Arc::new(|obj: &ConfigMap| vec![val(obj)])
}

/// Index by each comma-separated part of the `val` annotation (client-go's multi-value
/// test indexer).
pub(super) fn by_part() -> IndexFunc<ConfigMap> {
    Arc::new(|obj: &ConfigMap| val(obj).split(',').map(str::to_owned).collect())
}

fn set(index: &Indexer<ConfigMap>, name: &str, value: &str) -> Option<BTreeSet<String>> {
    let inner = index.inner.read();
    inner.indices.raw()[name]
        .get(value)
        .map(|keys| keys.iter().map(|k| k.to_string()).collect())
}

fn names(objs: &[Arc<ConfigMap>]) -> BTreeSet<String> {
    objs.iter().map(|o| object_key(&**o)).collect()
}

fn strs<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn delete_removes_empty_sets_from_index() {
    let store = Indexer::with_indexers([("test", by_val())]).unwrap();
    store.add(cm(None, "testKey", "testKey"));
    assert_eq!(set(&store, "test", "testKey"), Some(strs(["testKey"])));
    store.delete("testKey");
    assert_eq!(set(&store, "test", "testKey"), None);
    assert!(store.list_index_values("test").is_empty());
}

#[test]
fn add_keeps_non_empty_set_after_delete_from_index() {
    let store = Indexer::with_indexers([("test", by_val())]).unwrap();
    store.add(cm(None, "retain", "testIndex"));
    store.add(cm(None, "delete", "testIndex"));
    assert_eq!(
        set(&store, "test", "testIndex"),
        Some(strs(["delete", "retain"]))
    );
    store.delete("delete");
    assert_eq!(set(&store, "test", "testIndex"), Some(strs(["retain"])));
}

#[test]
fn indexing_functions_with_multiple_values() {
    let store = Indexer::with_indexers([("test", by_part())]).unwrap();
    let check = |value: &str, keys: &[&str]| {
        let got = set(&store, "test", value).unwrap_or_default();
        let want: BTreeSet<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        assert_eq!(got, want, "value {value}");
    };
    store.add(cm(None, "key1", "foo"));
    store.add(cm(None, "key2", "bar"));
    check("foo", &["key1"]);
    check("bar", &["key2"]);

    store.update(cm(None, "key2", "foo,bar"));
    check("foo", &["key1", "key2"]);
    check("bar", &["key2"]);

    store.update(cm(None, "key1", "foo,bar"));
    check("foo", &["key1", "key2"]);
    check("bar", &["key1", "key2"]);

    store.add(cm(None, "key3", "foo,bar,baz"));
    check("foo", &["key1", "key2", "key3"]);
    check("bar", &["key1", "key2", "key3"]);
    check("baz", &["key3"]);

    store.update(cm(None, "key1", "foo"));
    check("foo", &["key1", "key2", "key3"]);
    check("bar", &["key2", "key3"]);
    check("baz", &["key3"]);

    store.update(cm(None, "key2", "bar"));
    check("foo", &["key1", "key3"]);
    check("bar", &["key2", "key3"]);
    check("baz", &["key3"]);

    store.delete("key1");
    check("foo", &["key3"]);
    check("bar", &["key2", "key3"]);
    check("baz", &["key3"]);

    store.delete("key3");
    check("foo", &[]);
    check("bar", &["key2"]);
    check("baz", &[]);
    assert_eq!(
        store
            .list_index_values("test")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        strs(["bar"])
    );
}

#[test]
fn update_moves_only_changed_values() {
    let store = Indexer::with_indexers([("test", by_part())]).unwrap();
    store.add(cm(None, "k", "a,b"));
    store.add(cm(None, "other", "b"));
    store.update(cm(None, "k", "b,c"));
    assert_eq!(set(&store, "test", "a"), None);
    assert_eq!(set(&store, "test", "b"), Some(strs(["k", "other"])));
    assert_eq!(set(&store, "test", "c"), Some(strs(["k"])));
    // Duplicate values in one object count once.
    store.update(cm(None, "k", "c,c"));
    assert_eq!(set(&store, "test", "b"), Some(strs(["other"])));
    store.delete("k");
    assert_eq!(set(&store, "test", "c"), None);
}

#[test]
fn get_index_func_values() {
    let store = Indexer::with_indexers([("testmodes", by_val())]).unwrap();
    store.add(cm(None, "one", "bar"));
    store.add(cm(None, "two", "bar"));
    store.add(cm(None, "tre", "biz"));
    let values: BTreeSet<_> = store.list_index_values("testmodes").into_iter().collect();
    assert_eq!(values, strs(["bar", "biz"]));
    assert!(store.list_index_values("missing").is_empty());
}

#[test]
fn multi_index_keys() {
    let store = Indexer::with_indexers([("byUser", by_part())]).unwrap();
    store.add(cm(None, "one", "ernie,bert"));
    store.add(cm(None, "two", "bert,oscar"));
    store.add(cm(None, "tre", "ernie,elmo"));
    let expected = [
        ("ernie", strs(["one", "tre"])),
        ("bert", strs(["one", "two"])),
        ("elmo", strs(["tre"])),
        ("oscar", strs(["two"])),
        ("elmo1", strs([])),
    ];
    for (user, want) in &expected {
        assert_eq!(
            &names(&store.by_index("byUser", user).unwrap()),
            want,
            "{user}"
        );
        let keys = store.index_keys("byUser", user).unwrap();
        assert_eq!(
            keys,
            want.iter().cloned().collect::<Vec<_>>(),
            "sorted keys"
        );
    }

    store.delete("tre");
    assert_eq!(
        names(&store.by_index("byUser", "ernie").unwrap()),
        strs(["one"])
    );
    assert!(store.by_index("byUser", "elmo").unwrap().is_empty());

    store.update(cm(None, "two", "oscar"));
    assert_eq!(
        names(&store.by_index("byUser", "bert").unwrap()),
        strs(["one"])
    );
}

#[test]
fn unknown_index_is_an_error() {
    let store = Indexer::<ConfigMap>::new();
    let err = Error::IndexNotFound {
        name: "nope".into(),
    };
    assert_eq!(store.by_index("nope", "x").unwrap_err(), err);
    assert_eq!(store.index_keys("nope", "x").unwrap_err(), err);
    assert_eq!(store.index("nope", &cm(None, "a", "b")).unwrap_err(), err);
}

#[test]
fn store_add_update_delete_list_replace() {
    let store = Indexer::<ConfigMap>::new();
    let foo = cm(Some("ns"), "foo", "bar");
    assert!(store.add(Arc::clone(&foo)).is_none());
    // Never deep-copied: reads hand out the stored Arc.
    assert!(Arc::ptr_eq(&store.get("ns/foo").unwrap(), &foo));
    assert!(Arc::ptr_eq(
        &store.get_by_namespace_name(Some("ns"), "foo").unwrap(),
        &foo
    ));

    let old = store.update(cm(Some("ns"), "foo", "baz")).unwrap();
    assert!(Arc::ptr_eq(&old, &foo));
    assert_eq!(val(&store.get("ns/foo").unwrap()), "baz");
    assert_eq!(val(&store.delete("ns/foo").unwrap()), "baz");
    assert!(store.get("ns/foo").is_none());
    assert!(store.delete("ns/foo").is_none());
    assert!(store.is_empty());

    store.add(cm(None, "a", "b"));
    store.add(cm(None, "c", "d"));
    store.add(cm(None, "e", "e"));
    let vals: BTreeSet<_> = store.list().iter().map(|o| val(o)).collect();
    assert_eq!(vals, strs(["b", "d", "e"]));
    assert_eq!(store.len(), 3);
    assert!(store.contains_key("c"));

    store.replace([cm(None, "foo", "foo"), cm(Some("x"), "bar", "bar")]);
    let vals: BTreeSet<_> = store.list().iter().map(|o| val(o)).collect();
    assert_eq!(vals, strs(["foo", "bar"]));
    let keys: BTreeSet<_> = store.list_keys().into_iter().collect();
    assert_eq!(keys, strs(["foo", "x/bar"]));
    assert!(store.get_by_namespace_name(None, "foo").is_some());
}

#[test]
fn index_finds_objects_sharing_a_value() {
    let store = Indexer::with_indexers([("by_val", by_val())]).unwrap();
    store.add(cm(None, "a", "b"));
    store.add(cm(None, "c", "b"));
    store.add(cm(None, "e", "f"));
    store.add(cm(None, "g", "h"));
    for (value, want) in [
        ("b", strs(["a", "c"])),
        ("f", strs(["e"])),
        ("h", strs(["g"])),
    ] {
        let found = store.index("by_val", &cm(None, "", value)).unwrap();
        assert_eq!(names(&found), want, "{value}");
    }
    // Multi-valued: the union, without duplicates.
    let multi = Indexer::with_indexers([("p", by_part())]).unwrap();
    multi.add(cm(None, "x", "1,2"));
    multi.add(cm(None, "y", "2,3"));
    multi.add(cm(None, "z", "4"));
    let found = multi.index("p", &cm(None, "", "1,2,3")).unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(names(&found), strs(["x", "y"]));
}

#[test]
fn namespace_index_is_built_in() {
    let store = Indexer::<ConfigMap>::new();
    assert_eq!(store.index_names(), [NAMESPACE_INDEX]);
    store.add(cm(Some("a"), "one", ""));
    store.add(cm(Some("a"), "two", ""));
    store.add(cm(Some("b"), "one", ""));
    store.add(cm(None, "cluster", ""));
    assert_eq!(
        store.index_keys(NAMESPACE_INDEX, "a").unwrap(),
        ["a/one", "a/two"]
    );
    assert_eq!(store.index_keys(NAMESPACE_INDEX, "b").unwrap(), ["b/one"]);
    // client-go's MetaNamespaceIndexFunc: cluster-scoped objects under "".
    assert_eq!(store.index_keys(NAMESPACE_INDEX, "").unwrap(), ["cluster"]);
    store.delete("b/one");
    let values: BTreeSet<_> = store
        .list_index_values(NAMESPACE_INDEX)
        .into_iter()
        .collect();
    assert_eq!(values, strs(["", "a"]));
}

#[test]
fn add_indexers_after_data_exists_reindexes() {
    let store = Indexer::<ConfigMap>::new();
    store.add(cm(Some("ns"), "one", "x,y"));
    store.add(cm(Some("ns"), "two", "y"));
    store.add_indexers([("parts", by_part())]).unwrap();
    assert_eq!(store.index_keys("parts", "x").unwrap(), ["ns/one"]);
    assert_eq!(
        store.index_keys("parts", "y").unwrap(),
        ["ns/one", "ns/two"]
    );
    // The new index is maintained from then on.
    store.update(cm(Some("ns"), "two", "z"));
    store.add(cm(Some("ns"), "three", "x"));
    assert_eq!(store.index_keys("parts", "y").unwrap(), ["ns/one"]);
    assert_eq!(
        store.index_keys("parts", "x").unwrap(),
        ["ns/one", "ns/three"]
    );
    assert_eq!(store.index_keys("parts", "z").unwrap(), ["ns/two"]);
    // The namespace index was left alone.
    assert_eq!(store.index_keys(NAMESPACE_INDEX, "ns").unwrap().len(), 3);
}

#[test]
fn add_indexers_conflicts_add_nothing() {
    let store = Indexer::<ConfigMap>::new();
    let conflict = |name: &str| Error::IndexConflict { name: name.into() };
    assert_eq!(
        store.add_indexers([(NAMESPACE_INDEX, by_val())]),
        Err(conflict(NAMESPACE_INDEX))
    );
    assert_eq!(
        store.add_indexers([("a", by_val()), ("b", by_val()), ("a", by_part())]),
        Err(conflict("a"))
    );
    assert_eq!(store.index_names(), [NAMESPACE_INDEX]);
    store.add_indexers([("a", by_val())]).unwrap();
    assert_eq!(
        store.add_indexers([("b", by_val()), ("a", by_val())]),
        Err(conflict("a"))
    );
    let mut names = store.index_names();
    names.sort();
    assert_eq!(names, ["a", NAMESPACE_INDEX]);
    assert!(Indexer::with_indexers([("x", by_val()), ("x", by_val())]).is_err());
}

#[test]
fn replace_rebuilds_indices() {
    let store = Indexer::with_indexers([("v", by_val())]).unwrap();
    store.add(cm(Some("a"), "gone", "old"));
    store.add(cm(Some("a"), "kept", "old"));
    store.replace([cm(Some("a"), "kept", "new"), cm(Some("b"), "fresh", "new")]);
    assert!(store.index_keys("v", "old").unwrap().is_empty());
    assert_eq!(store.index_keys("v", "new").unwrap(), ["a/kept", "b/fresh"]);
    assert_eq!(store.index_keys(NAMESPACE_INDEX, "a").unwrap(), ["a/kept"]);
    assert_eq!(store.list_index_values("v"), ["new"]);
    // The later of two items with one key wins.
    store.replace([cm(None, "d", "1"), cm(None, "d", "2")]);
    assert_eq!(store.len(), 1);
    assert_eq!(store.index_keys("v", "2").unwrap(), ["d"]);
    assert!(store.index_keys("v", "1").unwrap().is_empty());
}

#[test]
fn clones_share_one_store_across_threads() {
    let store = Indexer::with_indexers([("v", by_val())]).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let name = format!("t{t}-{i}");
                    store.add(cm(Some("ns"), &name, &format!("v{}", i % 3)));
                    if i % 2 == 0 {
                        store.delete(&format!("ns/{name}"));
                    }
                    let _ = store.by_index("v", "v1");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(store.len(), 4 * 100);
    let total: usize = ["v0", "v1", "v2"]
        .iter()
        .map(|v| store.index_keys("v", v).unwrap().len())
        .sum();
    assert_eq!(total, 400);
    assert_eq!(store.index_keys(NAMESPACE_INDEX, "ns").unwrap().len(), 400);
}
