//! Property tests of `predicate::to_selector`: any valid Kubernetes `LabelSelector`
//! (matchLabels and matchExpressions, empty values included) converts to a selector that
//! matches exactly the label sets apimachinery's `LabelSelectorAsSelector` matches; invalid
//! keys, values and operators are errors naming them.

use std::collections::BTreeMap;

use ferrokube_runtime::predicate::{Error, to_selector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use proptest::prelude::*;

static KEYS: [&str; 5] = ["app", "tier", "example.com/env", "a.b-c_d", "X9"];
static VALUES: [&str; 5] = ["", "web", "v1.2", "A_b-C", "0"];
static OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS.as_slice()).prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = String> {
    prop::sample::select(VALUES.as_slice()).prop_map(str::to_owned)
}

fn requirement() -> impl Strategy<Value = LabelSelectorRequirement> {
    (
        key(),
        prop::sample::select(OPERATORS.as_slice()),
        prop::collection::vec(value(), 1..4),
    )
        .prop_map(|(key, operator, values)| LabelSelectorRequirement {
            key,
            operator: operator.to_owned(),
            values: matches!(operator, "In" | "NotIn").then_some(values),
        })
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    (
        prop::option::of(prop::collection::btree_map(key(), value(), 0..3)),
        prop::option::of(prop::collection::vec(requirement(), 0..4)),
    )
        .prop_map(|(match_labels, match_expressions)| LabelSelector {
            match_labels,
            match_expressions,
        })
}

/// apimachinery's semantics.
fn kubernetes_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().flatten().all(|r| {
            let values = r.values.as_deref().unwrap_or_default();
            let value = labels.get(&r.key);
            match r.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                _ => value.is_none(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn valid_selectors_match_as_kubernetes_does(
        selector in selector(),
        labels in prop::collection::btree_map(key(), value(), 0..5),
    ) {
        let in_with_empty_among_several = selector.match_expressions.iter().flatten().any(|r| {
            let values = r.values.as_deref().unwrap_or_default();
            r.operator == "In" && values.len() > 1 && values.iter().any(String::is_empty)
        });
        match to_selector(&selector) {
            Ok(converted) => {
                prop_assert!(!in_with_empty_among_several, "{:?}", selector);
                prop_assert_eq!(
                    converted.matches(Some(&labels)),
                    kubernetes_matches(&selector, &labels),
                    "{:?} on {:?}", selector, labels
                );
                prop_assert_eq!(
                    converted.matches(None),
                    kubernetes_matches(&selector, &BTreeMap::new())
                );
            }
            // The one documented limitation: `In` with an empty value among several.
            Err(Error::EmptyValueInSet { .. }) => prop_assert!(in_with_empty_among_several),
            Err(e) => prop_assert!(false, "{:?} refused: {}", selector, e),
        }
    }

    #[test]
    fn invalid_keys_values_and_operators_are_named(
        bad in prop_oneof![
            "[a-z]{0,3}[ ,()=!/][a-z]{0,3}",
            "-[a-z]{1,5}",
            "[a-z]{64,70}",
        ],
        place in 0u8..3,
    ) {
        let mut selector = LabelSelector::default();
        match place {
            0 => selector.match_labels = Some(BTreeMap::from([(bad.clone(), "v".to_owned())])),
            1 => selector.match_labels = Some(BTreeMap::from([("k".to_owned(), bad.clone())])),
            _ => selector.match_expressions = Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: bad.clone(),
                values: None,
            }]),
        }
        match to_selector(&selector) {
            // A key like "a/b" can be valid.
            Ok(_) => prop_assert!(place == 0 && bad.contains('/')),
            Err(e) => prop_assert!(e.to_string().contains(&format!("{bad:?}")), "{}", e),
        }
    }
}
