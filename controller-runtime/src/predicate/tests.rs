//! Predicate unit tests.

use super::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::{ApiResource, DynamicObject, PartialObjectMetaExt};

fn cm(generation: Option<i64>, rv: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("cm".into());
    cm.metadata.namespace = Some("default".into());
    cm.metadata.generation = generation;
    cm.metadata.resource_version = Some(rv.into());
    cm
}

fn with_labels(pairs: &[(&str, &str)]) -> ConfigMap {
    let mut cm = cm(Some(1), "1");
    cm.metadata.labels = Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    cm
}

fn with_annotations(pairs: &[(&str, &str)]) -> ConfigMap {
    let mut cm = cm(Some(1), "1");
    cm.metadata.annotations = Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    cm
}

/// Asserts create and delete pass (the update predicates' contract).
fn passes_create_and_delete<P: Predicate<ConfigMap>>(p: &P) {
    let o = cm(None, "");
    assert!(p.create(&o));
    assert!(p.delete(&o));
}

#[test]
fn generation_changed_passes_spec_changes_only() {
    let p = generation_changed();
    passes_create_and_delete(&p);
    let old = cm(Some(1), "10");
    assert!(p.update(&old, &cm(Some(2), "11")));
    assert!(!p.update(&old, &cm(Some(1), "11")), "status write");
    assert!(!p.update(&old, &old), "resync");
    assert!(!p.update(&cm(None, "1"), &cm(None, "2")), "no generation");
    assert!(!p.update(&cm(None, "1"), &cm(Some(0), "2")), "unset is 0");
    assert!(p.update(&cm(None, "1"), &cm(Some(1), "2")));
}

#[test]
fn resource_version_changed_skips_resyncs() {
    let p = resource_version_changed();
    passes_create_and_delete(&p);
    let old = cm(Some(1), "10");
    assert!(p.update(&old, &cm(Some(1), "11")));
    assert!(!p.update(&old, &old), "resync");
    let mut unset = cm(Some(1), "");
    unset.metadata.resource_version = None;
    assert!(!p.update(&unset, &cm(Some(1), "")), "unset is \"\"");
    assert!(p.update(&unset, &old));
}

#[test]
fn labels_changed_compares_label_maps() {
    let p = labels_changed();
    passes_create_and_delete(&p);
    let a = with_labels(&[("app", "web")]);
    assert!(!p.update(&a, &a), "resync");
    assert!(!p.update(&a, &with_labels(&[("app", "web")])));
    assert!(p.update(&a, &with_labels(&[("app", "db")])));
    assert!(p.update(&a, &with_labels(&[("app", "web"), ("x", "y")])));
    assert!(p.update(&a, &cm(Some(1), "1")), "labels removed");
    assert!(
        !p.update(&cm(Some(1), "1"), &with_labels(&[])),
        "none equals empty"
    );
    assert!(!p.update(&with_annotations(&[("a", "b")]), &cm(Some(1), "2")));
}

#[test]
fn annotations_changed_compares_annotation_maps() {
    let p = annotations_changed();
    passes_create_and_delete(&p);
    let a = with_annotations(&[("note", "x")]);
    assert!(!p.update(&a, &a), "resync");
    assert!(p.update(&a, &with_annotations(&[("note", "y")])));
    assert!(p.update(&cm(Some(1), "1"), &a));
    assert!(!p.update(&cm(Some(1), "1"), &with_annotations(&[])));
    assert!(!p.update(&with_labels(&[("a", "b")]), &cm(Some(1), "2")));
}

#[test]
fn label_selector_filters_all_events_by_labels() {
    let p = label_selector(Selector::parse("app=web").unwrap());
    let web = with_labels(&[("app", "web")]);
    let db = with_labels(&[("app", "db")]);
    let none = cm(Some(1), "1");
    assert!(p.create(&web) && p.delete(&web));
    assert!(!p.create(&db) && !p.delete(&db) && !p.create(&none));
    assert!(p.update(&db, &web), "the new object decides");
    assert!(!p.update(&web, &db));
    assert!(p.update(&web, &web));
    let everything = label_selector(Selector::everything());
    assert!(everything.create(&none) && everything.update(&none, &none));

    let from_k8s = label_selector_from(&LabelSelector {
        match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
        match_expressions: None,
    })
    .unwrap();
    assert_eq!(from_k8s, p);
    assert!(from_k8s.create(&web) && !from_k8s.create(&db));
    let invalid = LabelSelector {
        match_labels: Some([("app".to_owned(), "not valid".to_owned())].into()),
        match_expressions: None,
    };
    assert!(matches!(
        MatchingLabels::try_from(&invalid),
        Err(Error::InvalidValue { .. })
    ));
}

#[test]
fn from_fn_asks_about_the_new_object_of_updates() {
    let p = from_fn(|cm: &ConfigMap| cm.metadata.generation == Some(2));
    let one = cm(Some(1), "1");
    let two = cm(Some(2), "2");
    assert!(!p.create(&one) && p.create(&two));
    assert!(!p.delete(&one) && p.delete(&two));
    assert!(p.update(&one, &two) && !p.update(&two, &one));
}

#[test]
fn funcs_pass_events_without_a_closure() {
    let everything = from_fns::<ConfigMap>();
    let o = cm(Some(1), "1");
    assert!(everything.create(&o) && everything.update(&o, &o) && everything.delete(&o));

    let p = from_fns::<ConfigMap>()
        .on_create(|_| false)
        .on_update(|old, new| old.metadata.resource_version != new.metadata.resource_version);
    assert!(!p.create(&o));
    assert!(!p.update(&o, &o));
    assert!(p.update(&o, &cm(Some(1), "2")));
    assert!(p.delete(&o), "no delete closure");
    let p = p.on_delete(|_| false);
    assert!(!p.delete(&o));
    assert_eq!(
        format!("{p:?}"),
        "Funcs { create: true, update: true, delete: true }"
    );
}

fn yes() -> Funcs<ConfigMap> {
    from_fns()
}

fn no() -> Funcs<ConfigMap> {
    from_fns()
        .on_create(|_| false)
        .on_update(|_, _| false)
        .on_delete(|_| false)
}

fn check(p: &impl Predicate<ConfigMap>, expected: bool) {
    let o = cm(Some(1), "1");
    assert_eq!(p.create(&o), expected, "create");
    assert_eq!(p.update(&o, &o), expected, "update");
    assert_eq!(p.delete(&o), expected, "delete");
}

#[test]
fn and_or_not_combine() {
    check(&and(yes(), yes()), true);
    check(&and(yes(), no()), false);
    check(&and(no(), yes()), false);
    check(&or(no(), no()), false);
    check(&or(no(), yes()), true);
    check(&or(yes(), no()), true);
    check(&not(yes()), false);
    check(&not(no()), true);
    check(&yes().and(no()), false);
    check(&no().or(yes()), true);
    check(&no().not(), true);
    check(&yes().and(yes()).and(no().not()), true);
}

#[test]
fn combinators_short_circuit() {
    let panics = from_fns::<ConfigMap>()
        .on_create(|_| panic!("asked"))
        .on_update(|_, _| panic!("asked"))
        .on_delete(|_| panic!("asked"));
    let shared = Arc::new(panics);
    check(&and(no(), Arc::clone(&shared)), false);
    check(&or(yes(), Arc::clone(&shared)), true);
    check(
        &all(vec![no().boxed(), Box::new(Arc::clone(&shared))]),
        false,
    );
    check(&any(vec![yes().boxed(), Box::new(shared)]), true);
}

#[test]
fn all_and_any_fold_many() {
    check(&all(vec![yes().boxed(), yes().boxed()]), true);
    check(&all(vec![yes().boxed(), no().boxed()]), false);
    check(&all::<ConfigMap>(Vec::new()), true);
    check(&any(vec![no().boxed(), yes().boxed()]), true);
    check(&any(vec![no().boxed(), no().boxed()]), false);
    check(&any::<ConfigMap>(Vec::new()), false);
}

#[test]
fn combined_metadata_predicates_on_updates() {
    let p = generation_changed().or(labels_changed());
    let base = with_labels(&[("app", "web")]);
    assert!(!p.update(&base, &base), "resync");
    let mut relabeled = with_labels(&[("app", "db")]);
    relabeled.metadata.resource_version = Some("2".into());
    assert!(p.update(&base, &relabeled));
    let mut bumped = base.clone();
    bumped.metadata.generation = Some(2);
    assert!(p.update(&base, &bumped));
    // `not` of an update predicate also flips creates and deletes.
    let n = not(generation_changed());
    assert!(!n.create(&base) && !n.delete(&base));
    assert!(n.update(&base, &base));
}

#[test]
fn metadata_predicates_are_event_filters() {
    use crate::controller::EventFilter;

    let filter: Box<dyn EventFilter> = Box::new(
        generation_changed()
            .or(labels_changed())
            .and(not(label_selector(Selector::parse("skip").unwrap()))),
    );
    let base = with_labels(&[("app", "web")]).metadata;
    let mut bumped = base.clone();
    bumped.generation = Some(2);
    let mut relabeled = base.clone();
    relabeled.labels = Some([("app".to_owned(), "db".to_owned())].into());
    let mut skipped = bumped.clone();
    skipped.labels = Some([("skip".to_owned(), String::new())].into());
    assert!(EventFilter::create(&*filter, &base));
    assert!(!EventFilter::create(&*filter, &skipped));
    assert!(!EventFilter::update(&*filter, &base, &base), "resync");
    assert!(EventFilter::update(&*filter, &base, &bumped));
    assert!(EventFilter::update(&*filter, &base, &relabeled));
    assert!(!EventFilter::update(&*filter, &base, &skipped));
    assert!(EventFilter::delete(&*filter, &base));
    assert!(!EventFilter::delete(&*filter, &skipped));

    let rv: &dyn EventFilter = &resource_version_changed();
    let mut rv2 = base.clone();
    rv2.resource_version = Some("2".into());
    assert!(!rv.update(&base, &base) && rv.update(&base, &rv2));
    let annotations: &dyn EventFilter = &annotations_changed();
    let mut annotated = base.clone();
    annotated.annotations = Some([("a".to_owned(), "b".to_owned())].into());
    assert!(!annotations.update(&base, &base) && annotations.update(&base, &annotated));
}

#[test]
fn predicates_work_for_dynamic_and_metadata_objects() {
    let ar = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let mut old = DynamicObject::new("w", &ar);
    old.metadata.generation = Some(1);
    let mut new = old.clone();
    new.metadata.generation = Some(2);
    let p: Box<dyn Predicate<DynamicObject>> = generation_changed().boxed();
    assert!(p.update(&old, &new) && !p.update(&old, &old));

    let meta = with_labels(&[("app", "web")])
        .metadata
        .into_response_partial::<ConfigMap>();
    let p = label_selector(Selector::parse("app").unwrap()).and(labels_changed());
    assert!(p.create(&meta) && !p.update(&meta, &meta));
}
