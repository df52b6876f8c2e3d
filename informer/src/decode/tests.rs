use super::*;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde_json::json;

fn list_json(n: usize) -> Vec<u8> {
    let items: Vec<_> = (0..n)
        .map(|i| {
            json!({"metadata": {"name": format!("cm-{i}"), "namespace": "ns", "resourceVersion": i.to_string(),
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:data": {}}}]},
                "data": {"k": "v\"}]"}})
        })
        .collect();
    serde_json::to_vec(&json!({"kind": "ConfigMapList", "apiVersion": "v1",
        "metadata": {"resourceVersion": "777", "continue": "tok"}, "items": items}))
    .unwrap()
}

fn decode_in_chunks(
    body: &[u8],
    chunk: usize,
    strip: bool,
) -> Result<(ListMeta, Vec<Arc<ConfigMap>>), DecodeError> {
    let mut d = ListDecoder::<ConfigMap>::new(Decoder::new(strip, None));
    for c in body.chunks(chunk) {
        d.feed(c)?;
    }
    d.finish()
}

#[test]
fn decodes_lists_split_anywhere() {
    let body = list_json(7);
    for chunk in [1, 2, 3, 7, 64, 1000, body.len()] {
        let (meta, items) = decode_in_chunks(&body, chunk, true).unwrap();
        assert_eq!(meta.resource_version.as_deref(), Some("777"));
        assert_eq!(meta.continue_.as_deref(), Some("tok"));
        assert_eq!(items.len(), 7, "chunk {chunk}");
        assert_eq!(items[3].metadata.name.as_deref(), Some("cm-3"));
        assert!(items[3].metadata.managed_fields.is_none());
        assert_eq!(items[3].data.as_ref().unwrap()["k"], "v\"}]");
    }
    let (_, kept) = decode_in_chunks(&body, 5, false).unwrap();
    assert_eq!(
        kept[0].metadata.managed_fields.as_ref().map(Vec::len),
        Some(1)
    );
}

#[test]
fn empty_and_null_items() {
    let (meta, items) = decode_in_chunks(
        br#"{"metadata":{"resourceVersion":"5"},"items":[]}"#,
        3,
        true,
    )
    .unwrap();
    assert_eq!(
        (meta.resource_version.as_deref(), items.len()),
        (Some("5"), 0)
    );
    let (_, items) = decode_in_chunks(br#"{"metadata":{},"items":null}"#, 3, true).unwrap();
    assert!(items.is_empty());
}

#[test]
fn truncated_and_garbage_bodies_are_errors() {
    let body = list_json(3);
    let err = decode_in_chunks(&body[..body.len() - 10], 16, true).unwrap_err();
    assert!(err.to_string().contains("ended early"), "{err}");
    assert!(decode_in_chunks(b"<html>oops</html>", 4, true).is_err());
    let bad_item = br#"{"items":[{"metadata":{"name":5}}]}"#;
    let err = decode_in_chunks(bad_item, 100, true).unwrap_err();
    assert!(err.to_string().contains("list item 0"), "{err}");
}

#[test]
fn splits_watch_frames() {
    let line = br#"{"type":"ADDED","object":{"metadata":{"name":"a"}}}"#;
    let f = split_frame(line).unwrap();
    assert_eq!(f.kind, b"ADDED");
    assert_eq!(f.object, br#"{"metadata":{"name":"a"}}"#);
    let reversed = br#"{"object":{"kind":"Status"},"type":"ERROR"}"#;
    assert_eq!(split_frame(reversed).unwrap().kind, b"ERROR");
    for bad in [
        &b"garbage"[..],
        b"{\"type\":\"ADDED\"}",
        b"{\"type\":\"ADDED\",\"object\":{",
    ] {
        assert!(split_frame(bad).is_err());
    }
}

#[test]
fn transform_is_applied() {
    let d = Decoder::<ConfigMap>::new(
        true,
        Some(Arc::new(|mut cm: ConfigMap| {
            cm.data = None;
            cm
        })),
    );
    let cm = d
        .object(
            br#"{"metadata":{"name":"a"},"data":{"x":"y"}}"#,
            String::new,
        )
        .unwrap();
    assert!(cm.data.is_none());
}

fn pod_json(i: usize) -> serde_json::Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": format!("p-{i}"), "namespace": "ns", "resourceVersion": "12",
            "labels": {"app": "x", "escaped\"key": "tab\there", "unicode": "ü→\u{1F600}"},
            "annotations": {"a": "\\back\\slash\n"},
            "managedFields": [{"manager": "m", "operation": "Update", "fieldsV1": {"f:spec": {"k:{\"name\":\"app\"}": {}}}}],
            "creationTimestamp": "2026-11-22T11:36:33Z", "generation": 3},
        "spec": {
            "containers": [
                {"name": "app", "image": "i:1", "args": ["--a", "--b"],
                 "env": (0..6).map(|k| json!({"name": format!("E{k}"), "value": format!("v{k}")})).collect::<Vec<_>>(),
                 "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 10}},
                {"name": "side", "image": "s:2"}
            ],
            "tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 300}],
            "terminationGracePeriodSeconds": 30, "enableServiceLinks": true,
            "securityContext": {"runAsUser": -1, "fsGroup": 9_007_199_254_740_993_i64}
        },
        "status": {"phase": "Pending", "unknownField": [1, 2.5, null, {"x": [true]}]}
    })
}

#[test]
fn fast_path_matches_serde_json_and_sizes_vectors_exactly() {
    use k8s_openapi::api::core::v1::Pod;
    let items: Vec<_> = (0..5).map(pod_json).collect();
    let body =
        serde_json::to_vec(&json!({"metadata": {"resourceVersion": "1"}, "items": items})).unwrap();
    for strip in [true, false] {
        let mut d = ListDecoder::<Pod>::new(Decoder::new(strip, None));
        for c in body.chunks(333) {
            d.feed(c).unwrap();
        }
        let (_, pods) = d.finish().unwrap();
        assert_eq!(pods.len(), 5);
        for (i, pod) in pods.iter().enumerate() {
            let mut expected: Pod = serde_json::from_value(pod_json(i)).unwrap();
            if strip {
                expected.metadata.managed_fields = None;
            }
            assert_eq!(**pod, expected, "item {i}, strip {strip}");
        }
        let env = pods[0].spec.as_ref().unwrap().containers[0]
            .env
            .as_ref()
            .unwrap();
        assert_eq!((env.len(), env.capacity()), (6, 6));
    }
}

#[test]
fn types_only_serde_json_takes_still_decode() {
    use crate::compact::Compact;
    let body = list_json(4);
    let mut d = ListDecoder::<Compact<ConfigMap>>::new(Decoder::new(true, None));
    d.feed(&body).unwrap();
    let (_, items) = d.finish().unwrap();
    assert_eq!(items.len(), 4);
    assert!(!items[2].json().contains("managedFields"));
    assert_eq!(
        items[2].decode().unwrap().metadata.name.as_deref(),
        Some("cm-2")
    );
}

#[test]
fn deeply_nested_items_are_refused_not_overflowed() {
    use kube::api::DynamicObject;
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let body = format!(
        r#"{{"items":[{{"apiVersion":"v1","kind":"X","metadata":{{"name":"a"}},"spec":{deep}}}]}}"#
    );
    let mut d = ListDecoder::<DynamicObject>::new(Decoder::new(true, None));
    let err = d.feed(body.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("list item 0"), "{err}");
}

async fn decode_in_parallel<K: serde::de::DeserializeOwned + Send + Sync + 'static>(
    body: &[u8],
    batch_bytes: usize,
    tasks: usize,
) -> Result<(ListMeta, Vec<Arc<K>>), DecodeError> {
    let mut d = ParallelDecoder::with(Decoder::<K>::new(true, None), batch_bytes, tasks);
    for c in body.chunks(100) {
        d.feed(c).await?;
    }
    d.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_decoding_keeps_list_order() {
    let body = list_json(300);
    for tasks in [1, 2, 3] {
        let (meta, items) = decode_in_parallel::<ConfigMap>(&body, 512, tasks)
            .await
            .unwrap();
        assert_eq!(meta.resource_version.as_deref(), Some("777"));
        let names: Vec<_> = items.iter().map(|i| i.metadata.name.clone()).collect();
        let expected: Vec<_> = (0..300).map(|i| Some(format!("cm-{i}"))).collect();
        assert_eq!(names, expected, "{tasks} tasks");
        assert!(items.iter().all(|i| i.metadata.managed_fields.is_none()));
    }
    let empty = decode_in_parallel::<ConfigMap>(b"{\"items\":[]}", 0, 2).await;
    assert!(empty.unwrap().1.is_empty());
}

#[test]
fn decoding_tasks_follow_the_runtime() {
    let decoder = || Decoder::<ConfigMap>::new(true, None);
    let single = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    single.block_on(async { assert_eq!(ParallelDecoder::new(decoder()).tasks(), 1) });
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .build()
        .unwrap();
    multi.block_on(async { assert_eq!(ParallelDecoder::new(decoder()).tasks(), 3) });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_decoding_reports_the_first_bad_item() {
    let mut items: Vec<_> = (0..400)
        .map(|i| json!({"metadata": {"name": format!("cm-{i}")}}))
        .collect();
    items[120] = json!({"metadata": {"name": 120}});
    items[330] = json!({"metadata": {"name": 330}});
    let body = serde_json::to_vec(&json!({"metadata": {}, "items": items})).unwrap();
    for tasks in [1, 2, 4] {
        let err = decode_in_parallel::<ConfigMap>(&body, 300, tasks)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("list item 120"), "{tasks} tasks: {err}");
    }
    let body = list_json(300);
    let cut = decode_in_parallel::<ConfigMap>(&body[..body.len() - 3], 512, 2).await;
    assert!(cut.unwrap_err().to_string().contains("ended early"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_only_serde_json_takes_decode_in_parallel() {
    use crate::compact::Compact;
    let body = list_json(200);
    let items = decode_in_parallel::<Compact<ConfigMap>>(&body, 400, 2)
        .await
        .unwrap()
        .1;
    assert_eq!(items.len(), 200);
    assert_eq!(
        items[150].decode().unwrap().metadata.name.as_deref(),
        Some("cm-150")
    );
}

#[test]
fn an_item_spread_over_many_chunks_is_not_rescanned_per_chunk() {
    // Found by the list_body fuzz target (an item spread over thousands of chunks took 18 s):
    // every chunk rescanned the incomplete item from its start, quadratic in its size. Before
    // the fix this 350 KB body fed in 100-byte chunks cost 612 MB of rescanning.
    let big = "x\\\"".repeat(70_000);
    let body = serde_json::to_vec(&json!({"metadata": {"resourceVersion": "5"},
        "items": [{"metadata": {"name": "big"}, "data": {"k": big}}, {"metadata": {"name": "small"}}]}))
    .unwrap();
    let mut scanner = super::list::ListScanner::new(true);
    for c in body.chunks(100) {
        scanner.feed(c).unwrap();
    }
    let (meta, batch) = scanner.finish().unwrap();
    assert_eq!(meta.resource_version.as_deref(), Some("5"));
    let items = batch
        .unwrap()
        .decode::<ConfigMap>(&Decoder::new(true, None), &mut super::fast::FastPath::new())
        .unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].data.as_ref().unwrap()["k"].len(), 3 * 70_000);
    assert!(
        scanner.rescanned <= 4 * body.len(),
        "{} bytes rescanned for a body of {}",
        scanner.rescanned,
        body.len()
    );
}
