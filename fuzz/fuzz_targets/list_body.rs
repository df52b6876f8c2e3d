//! List bodies: any bytes, cut into any chunks, as the answer to the informer's list
//! (`ListWatch::list`: the streaming item scanner, simd-json with serde_json as the
//! reference, decoding on several tasks once the body is larger than a batch). It never
//! panics, errors are sentences no longer than linear in the input, and whatever serde_json
//! reads as a list of ConfigMaps the informer reads the same (items without `managedFields`
//! when they are stripped).
//! One seed bit turns an input of 64 bytes or more into one item repeated past 64 KiB, to take
//! the parallel path.
#![no_main]

use ferrokube_client::ListOptions;
use ferrokube_fuzz::{Answer, assert_clear, client, threaded_runtime};
use ferrokube_informer::decode::Decoder;
use ferrokube_informer::list_watch::ListWatch;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use libfuzzer_sys::fuzz_target;

#[derive(serde::Deserialize)]
struct Reference {
    #[serde(default)]
    metadata: ListMeta,
    items: Vec<ConfigMap>,
}

/// As in `watch_stream`: a bounded message, plus what serde quotes from the input.
const MAX_ERROR: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let strip = seed & 0x40 == 0;
    let body = if seed & 0x80 != 0 && input.len() >= 64 {
        // One item, repeated to more than a 64 KiB batch.
        let copies = 70_000 / input.len() + 1;
        let mut body = br#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":["#.to_vec();
        for n in 0..copies {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(input);
        }
        body.extend_from_slice(b"]}");
        body
    } else {
        input.to_vec()
    };
    threaded_runtime().block_on(async {
        let client = client(Answer::ok(seed & 0x3f, &body));
        let list_watch = ListWatch::new(client.all::<ConfigMap>(), Decoder::new(strip, None));
        let got = list_watch.list(ListOptions::default()).await;
        if let Err(e) = &got {
            assert_clear(e, MAX_ERROR + 6 * body.len());
        }
        if let Ok(reference) = serde_json::from_slice::<Reference>(&body) {
            let (metadata, items) = match got {
                Ok(got) => got,
                Err(e) => panic!("serde_json reads the list, the informer says {e:?}"),
            };
            assert_eq!(metadata, reference.metadata);
            let expected: Vec<ConfigMap> = reference
                .items
                .into_iter()
                .map(|mut item| {
                    if strip {
                        item.metadata.managed_fields = None;
                    }
                    item
                })
                .collect();
            let items: Vec<&ConfigMap> = items.iter().map(|item| &**item).collect();
            assert_eq!(items, expected.iter().collect::<Vec<_>>());
        }
    });
});
