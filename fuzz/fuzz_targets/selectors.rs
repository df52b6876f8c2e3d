//! Selectors from users: label selector strings (`labels::Selector::parse`), Kubernetes
//! `LabelSelector`s as JSON (`predicate::to_selector`, checked against the Kubernetes
//! semantics of matchLabels and matchExpressions), and label/field selector strings as list
//! options (the query string carries each back unchanged and nothing else).
#![no_main]

use std::collections::BTreeMap;

use ferrokube_client::ListOptions;
use ferrokube_fuzz::{Answer, assert_clear, client, paused_runtime};
use ferrokube_informer::labels::Selector;
use ferrokube_runtime::predicate::to_selector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => selector_string(rest),
        1 => label_selector(rest),
        _ => query(rest),
    }
});

/// Labels made of `k=v` pairs split at `;` (so the selector's own keys can match).
fn labels(text: &str) -> BTreeMap<String, String> {
    text.split(';')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn selector_string(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (selector, labels_text) = text.split_once('\n').unwrap_or((text, ""));
    match Selector::parse(selector) {
        Ok(parsed) => {
            let _ = parsed.matches(Some(&labels(labels_text)));
            let _ = parsed.matches(None);
            // Parsing is a function of the text.
            assert_eq!(Selector::parse(selector).ok(), Some(parsed));
        }
        Err(e) => assert_clear(&e, usize::MAX),
    }
}

fn label_selector(data: &[u8]) {
    let (json, labels_text) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], String::from_utf8_lossy(&data[i + 1..])),
        None => (data, "".into()),
    };
    let Ok(selector) = serde_json::from_slice::<LabelSelector>(json) else {
        return;
    };
    let mut labels = labels(&labels_text);
    let converted = match to_selector(&selector) {
        Ok(converted) => converted,
        Err(e) => return assert_clear(&e, usize::MAX),
    };
    // Also try the selector's own labels, so matches are not all misses.
    for (k, v) in selector.match_labels.iter().flatten().take(4) {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let expected = kubernetes_matches(&selector, &labels);
    assert_eq!(
        converted.matches(Some(&labels)),
        expected,
        "{selector:?} on {labels:?}"
    );
}

/// apimachinery's `LabelSelectorAsSelector` semantics.
fn kubernetes_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_hold = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_hold = selector.match_expressions.iter().flatten().all(|r| {
        let values = r.values.as_deref().unwrap_or_default();
        let value = labels.get(&r.key);
        match r.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("to_selector accepted operator {other:?}"),
        }
    });
    labels_hold && expressions_hold
}

fn query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (fields, labels) = text.split_once('\n').unwrap_or((text, ""));
    let options = ListOptions::default().fields(fields).labels(labels);
    paused_runtime().block_on(async {
        let client = client(Answer::ok(0, b"{}"));
        let url = client
            .get()
            .abs_path("/api/v1/pods")
            .params(options.to_query(false))
            .url();
        let (path, query) = url.split_once('?').expect("a query string");
        assert_eq!(path, "/api/v1/pods");
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            pairs,
            [
                ("labelSelector".to_owned(), labels.to_owned()),
                ("fieldSelector".to_owned(), fields.to_owned())
            ],
            "{url}"
        );
    });
}
