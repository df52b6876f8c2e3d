//! Property tests of what the informer parses from the network and from users, through its
//! public entry points: list bodies and watch streams as `ListWatch` receives them (from a
//! stand-in server that cuts the body into arbitrary chunks), and label selector strings.
//! Arbitrary bytes are the fuzz targets' job (`fuzz/`); here the inputs are well-formed, or
//! well-formed then broken in the ways a connection breaks them (a frame cut short, garbage),
//! and the decoded result is compared with what was sent.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use ferrokube_client::{Client, ListOptions};
use ferrokube_informer::decode::Decoder;
use ferrokube_informer::labels::Selector;
use ferrokube_informer::list_watch::{Event, ListWatch, ListWatchError};
use futures::StreamExt;
use http_body_util::StreamBody;
use hyper::body::Frame;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use proptest::prelude::*;
use serde_json::json;

// === a stand-in server ===

/// A client whose every request is answered 200 with `chunks` as the body. Call it inside a
/// runtime (kube's client spawns a task).
fn client(chunks: Vec<Bytes>) -> Client {
    let chunks = Arc::new(chunks);
    let service = tower::service_fn(move |_request: http::Request<kube::client::Body>| {
        let frames: Vec<_> = chunks
            .iter()
            .map(|c| Ok::<_, Infallible>(Frame::data(c.clone())))
            .collect();
        async move {
            Ok::<_, Infallible>(http::Response::new(StreamBody::new(futures::stream::iter(
                frames,
            ))))
        }
    });
    Client::from_kube(kube::Client::new(service, "default"))
}

/// `body` cut at the given sizes (cycled).
fn cut(body: &[u8], sizes: &[usize]) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut rest = body;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let n = (*size).clamp(1, rest.len());
        chunks.push(Bytes::copy_from_slice(&rest[..n]));
        rest = &rest[n..];
    }
    chunks
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// === strategies ===

fn config_map(large: bool) -> impl Strategy<Value = ConfigMap> {
    (
        "[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?",
        prop::option::of("[0-9]{1,8}"),
        prop::collection::btree_map("[a-zA-Z0-9._-]{1,12}", any::<String>(), 0..4),
        prop::option::of(prop::collection::btree_map(
            "[a-z]{1,8}",
            "[a-z0-9]{0,8}",
            0..3,
        )),
        prop::option::of(prop::collection::vec("[a-z-]{1,12}", 0..3)),
    )
        .prop_map(move |(name, rv, mut data, labels, managers)| {
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some(name);
            cm.metadata.namespace = Some("default".into());
            cm.metadata.resource_version = rv;
            cm.metadata.labels = labels;
            cm.metadata.managed_fields = managers.map(|managers| {
                managers
                    .into_iter()
                    .map(|manager| ManagedFieldsEntry {
                        manager: Some(manager),
                        operation: Some("Update".into()),
                        ..ManagedFieldsEntry::default()
                    })
                    .collect()
            });
            if large {
                data.insert("filler".into(), "x\"\\é".repeat(1_000));
            }
            cm.data = Some(data);
            cm
        })
}

fn stripped(mut cm: ConfigMap, strip: bool) -> ConfigMap {
    if strip {
        cm.metadata.managed_fields = None;
    }
    cm
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..200, 1..8)
}

// === list bodies ===

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A list body, however it is cut into chunks, decodes to the items sent, in order, with
    /// the list's metadata; large lists (past the 64 KiB batch) go through the parallel path.
    #[test]
    fn list_bodies_decode_to_what_was_sent(
        (items, large) in any::<bool>().prop_flat_map(|large| {
            let count = if large { 30..60 } else { 0..30 };
            (prop::collection::vec(config_map(large), count), Just(large))
        }),
        sizes in chunk_sizes(),
        strip in any::<bool>(),
        rv in "[0-9]{1,10}",
        continue_token in prop::option::of("[A-Za-z0-9=]{1,20}"),
    ) {
        let mut metadata = json!({"resourceVersion": rv});
        if let Some(token) = &continue_token {
            metadata["continue"] = json!(token);
        }
        let body = serde_json::to_vec(&json!({
            "kind": "ConfigMapList", "apiVersion": "v1", "metadata": metadata, "items": items,
        })).unwrap();
        prop_assert!(!large || body.len() > 64 * 1024);
        let sizes: Vec<usize> = sizes.iter().map(|s| if large { s * 400 } else { *s }).collect();
        let (meta, got) = runtime().block_on(async {
            let list_watch = ListWatch::new(
                client(cut(&body, &sizes)).all::<ConfigMap>(),
                Decoder::new(strip, None),
            );
            list_watch.list(ListOptions::default()).await
        }).unwrap();
        prop_assert_eq!(meta.resource_version, Some(rv));
        prop_assert_eq!(meta.continue_, continue_token);
        let got: Vec<ConfigMap> = got.iter().map(|cm| (**cm).clone()).collect();
        let expected: Vec<ConfigMap> = items.into_iter().map(|cm| stripped(cm, strip)).collect();
        prop_assert_eq!(got, expected);
    }

    /// A list body cut short anywhere (the connection dropped) is an error, never a shorter
    /// list taken for the whole.
    #[test]
    fn truncated_list_bodies_are_errors(
        items in prop::collection::vec(config_map(false), 1..10),
        keep in 0.0f64..1.0,
        sizes in chunk_sizes(),
    ) {
        let body = serde_json::to_vec(&json!({
            "kind": "ConfigMapList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
            "items": items,
        })).unwrap();
        // Keep at least one byte less than the whole body (trailing whitespace aside).
        let keep = ((body.len() - 1) as f64 * keep) as usize;
        let result = runtime().block_on(async {
            let list_watch = ListWatch::new(
                client(cut(&body[..keep], &sizes)).all::<ConfigMap>(),
                Decoder::new(true, None),
            );
            list_watch.list(ListOptions::default()).await
        });
        match result {
            Err(ListWatchError::Decode { source, .. }) => {
                prop_assert!(!source.to_string().is_empty());
            }
            other => prop_assert!(false, "{} of {} bytes gave {:?}", keep, body.len(), other.map(|(m, i)| (m, i.len()))),
        }
    }
}

// === watch streams ===

/// How a watch stream is broken after its good frames.
#[derive(Clone, Debug)]
enum Break {
    /// It just ends.
    None,
    /// A frame cut short (the last bytes of the stream).
    Partial(usize),
    /// A line that is not a watch event.
    Garbage(String),
}

fn frame(kind: u8, cm: &ConfigMap) -> Vec<u8> {
    let kind = ["ADDED", "MODIFIED", "DELETED"][usize::from(kind % 3)];
    serde_json::to_vec(&json!({"type": kind, "object": cm})).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The events of a watch stream, however it is cut into chunks and with blank lines
    /// between frames, are decoded in order; a frame cut short or a garbage line after them
    /// is one decode error, and the stream ends there.
    #[test]
    fn watch_streams_decode_until_they_break(
        events in prop::collection::vec((0u8..3, config_map(false), any::<bool>()), 0..20),
        bookmark in prop::option::of("[0-9]{1,8}"),
        broken in prop_oneof![
            Just(Break::None),
            (1usize..10_000).prop_map(Break::Partial),
            "[^\\n{]*".prop_filter("not blank", |s| !s.trim().is_empty()).prop_map(Break::Garbage),
            Just(Break::Garbage("<html><body>502 Bad Gateway</body></html>".into())),
            Just(Break::Garbage(r#"{"type":"ADDED"}"#.into())),
            Just(Break::Garbage(r#"{"type":"SURPRISE","object":{}}"#.into())),
        ],
        sizes in chunk_sizes(),
        strip in any::<bool>(),
    ) {
        let mut body = Vec::new();
        for (kind, cm, blank) in &events {
            body.extend(frame(*kind, cm));
            body.push(b'\n');
            if *blank {
                body.extend_from_slice(b"  \n");
            }
        }
        if let Some(rv) = &bookmark {
            let b = json!({"type": "BOOKMARK", "object": {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}});
            body.extend(serde_json::to_vec(&b).unwrap());
            body.push(b'\n');
        }
        match &broken {
            Break::None => {}
            Break::Partial(at) => {
                let whole = frame(0, &events.first().map_or_else(ConfigMap::default, |e| e.1.clone()));
                body.extend_from_slice(&whole[..at % (whole.len() - 1) + 1]);
            }
            Break::Garbage(line) => {
                body.extend_from_slice(line.as_bytes());
                body.push(b'\n');
                // Whatever follows an error is not read.
                body.extend(frame(0, &ConfigMap::default()));
                body.push(b'\n');
            }
        }
        let got: Vec<_> = runtime().block_on(async {
            let list_watch = ListWatch::new(
                client(cut(&body, &sizes)).all::<ConfigMap>(),
                Decoder::new(strip, None),
            );
            list_watch.watch(ListOptions::default()).await.unwrap().collect().await
        });
        let expected_events = events.len() + usize::from(bookmark.is_some());
        let expected_len = expected_events + usize::from(!matches!(broken, Break::None));
        prop_assert_eq!(got.len(), expected_len, "{:?}", got);
        for ((kind, cm, _), event) in events.iter().zip(&got) {
            let expected = stripped(cm.clone(), strip);
            let ok = match (kind % 3, event) {
                (0, Ok(Event::Added(o))) | (1, Ok(Event::Modified(o))) | (2, Ok(Event::Deleted(o))) => **o == expected,
                _ => false,
            };
            prop_assert!(ok, "expected kind {} {:?}, got {:?}", kind, expected, event);
        }
        if let Some(rv) = &bookmark {
            let ok = matches!(&got[events.len()], Ok(Event::Bookmark { resource_version, initial_events_end: false }) if resource_version == rv);
            prop_assert!(ok, "{:?}", got[events.len()]);
        }
        if !matches!(broken, Break::None) {
            let last = got.last().unwrap();
            prop_assert!(matches!(last, Err(ListWatchError::Decode { .. })), "{:?}", last);
            if let Err(e) = last {
                let text = e.to_string() + &std::error::Error::source(e).map(ToString::to_string).unwrap_or_default();
                // Errors quote at most a bounded start of the frame.
                prop_assert!(text.len() < 1024, "{}", text);
            }
        }
    }
}

/// A frame far larger than any chunk (a 2.5 MB object) and a list of them are decoded
/// whole: frames are not cut at a size limit, and nothing is lost between chunks.
#[test]
fn huge_frames_and_lists_decode() {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("huge".into());
    cm.data = Some(BTreeMap::from([("big".into(), "é\"\\n".repeat(1 << 19))]));
    let mut body = frame(1, &cm);
    body.push(b'\n');
    let got: Vec<_> = runtime().block_on(async {
        let list_watch = ListWatch::new(
            client(cut(&body, &[64 * 1024, 1, 7_000])).all::<ConfigMap>(),
            Decoder::new(true, None),
        );
        list_watch
            .watch(ListOptions::default())
            .await
            .unwrap()
            .collect()
            .await
    });
    assert_eq!(got.len(), 1);
    assert!(matches!(&got[0], Ok(Event::Modified(o)) if **o == cm));

    let list = serde_json::to_vec(&json!({"metadata": {}, "items": [&cm, &cm, &cm]})).unwrap();
    let (_, items) = runtime()
        .block_on(async {
            let list_watch = ListWatch::new(
                client(cut(&list, &[64 * 1024, 3])).all::<ConfigMap>(),
                Decoder::new(true, None),
            );
            list_watch.list(ListOptions::default()).await
        })
        .unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|item| **item == cm));
}

// === label selectors ===

#[derive(Clone, Debug)]
enum Requirement {
    Equals(String, String, &'static str),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

static KEYS: [&str; 5] = ["app", "tier", "example.com/env", "x", "a.b-c_d"];
static VALUES: [&str; 5] = ["web", "db", "v1.2", "A_b-C", "0"];

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS.as_slice()).prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = String> {
    prop::sample::select(VALUES.as_slice()).prop_map(str::to_owned)
}

fn requirement() -> impl Strategy<Value = Requirement> {
    prop_oneof![
        (key(), value(), prop::sample::select(vec!["=", "=="]))
            .prop_map(|(k, v, op)| Requirement::Equals(k, v, op)),
        (key(), value()).prop_map(|(k, v)| Requirement::NotEquals(k, v)),
        (key(), prop::collection::vec(value(), 1..4)).prop_map(|(k, v)| Requirement::In(k, v)),
        (key(), prop::collection::vec(value(), 1..4)).prop_map(|(k, v)| Requirement::NotIn(k, v)),
        key().prop_map(Requirement::Exists),
        key().prop_map(Requirement::DoesNotExist),
    ]
}

impl Requirement {
    fn render(&self, pad: &str) -> String {
        match self {
            Self::Equals(k, v, op) => format!("{pad}{k}{pad}{op}{pad}{v}{pad}"),
            Self::NotEquals(k, v) => format!("{pad}{k}{pad}!={pad}{v}{pad}"),
            Self::In(k, vs) => format!(
                "{pad}{k} in{pad}({pad}{}{pad}){pad}",
                vs.join(&format!("{pad},{pad}"))
            ),
            Self::NotIn(k, vs) => format!("{pad}{k} notin ({}){pad}", vs.join(",")),
            Self::Exists(k) => format!("{pad}{k}{pad}"),
            Self::DoesNotExist(k) => format!("{pad}!{k}{pad}"),
        }
    }

    /// apimachinery's semantics.
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Equals(k, v, _) => labels.get(k) == Some(v),
            Self::NotEquals(k, v) => labels.get(k) != Some(v),
            Self::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Self::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Self::Exists(k) => labels.contains_key(k),
            Self::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Selectors written in any of client-go's forms, with any spacing, parse, and match
    /// exactly the label sets Kubernetes would match.
    #[test]
    fn label_selectors_parse_and_match_as_kubernetes_does(
        requirements in prop::collection::vec(requirement(), 0..5),
        pad in prop::sample::select(vec!["", " ", "  "]),
        labels in prop::collection::btree_map(key(), value(), 0..5),
    ) {
        let text: Vec<String> = requirements.iter().map(|r| r.render(pad)).collect();
        let text = text.join(",");
        let selector = Selector::parse(&text);
        prop_assert!(selector.is_ok(), "{:?}: {:?}", text, selector);
        let selector = selector.unwrap();
        let expected = requirements.iter().all(|r| r.matches(&labels));
        prop_assert_eq!(selector.matches(Some(&labels)), expected, "{:?} on {:?}", text, labels);
        prop_assert_eq!(selector.is_empty(), requirements.is_empty());
    }

    /// Any text parses to a selector or to an error that quotes it; never a panic.
    #[test]
    fn any_text_is_a_selector_or_a_clear_error(
        text in prop_oneof![any::<String>(), "[a-z0-9 =!(),.]{0,40}", "[a-z]{1,3}( (in|notin) )?[(]?[a-z,]*[)]?"],
    ) {
        match Selector::parse(&text) {
            Ok(selector) => { let _ = selector.matches(None); }
            Err(e) => prop_assert!(e.to_string().starts_with("invalid label selector"), "{}", e),
        }
    }
}
