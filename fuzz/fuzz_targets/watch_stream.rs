//! Watch streams: any bytes, cut into any chunks, as the body of a watch — through the
//! client's `Request::watch` (kube's `WatchEvent`) and the informer's `ListWatch::watch` (the
//! one-pass frame parser that skips `managedFields`). Neither panics; each stream ends at its
//! first error, which reads as a sentence no longer than linear in the input; and where the
//! client decodes an object event, the informer decodes the same event with the same object.
#![no_main]

use ferrokube_client::ListOptions;
use ferrokube_client::watch::WatchEvent;
use ferrokube_fuzz::{Answer, assert_clear, client, paused_runtime};
use ferrokube_informer::decode::Decoder;
use ferrokube_informer::list_watch::{Event, ListWatch};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use libfuzzer_sys::fuzz_target;

/// Our errors quote at most 120 bytes of a frame (64 of an unknown type), plus the URL; serde's
/// can quote a value from the input, escaped (`{:?}` of bytes lost to UTF-8: up to 6 bytes
/// each). So an error never grows faster than the input.
const MAX_ERROR: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let strip = seed & 0x80 == 0;
    paused_runtime().block_on(async {
        let client = client(Answer::ok(seed & 0x7f, body));

        let stream = client
            .get()
            .abs_path("/api/v1/configmaps")
            .param("watch", "true")
            .watch::<ConfigMap>()
            .await
            .expect("a 200 answer starts a watch");
        let plain: Vec<_> = stream.collect().await;
        ends_at_first_error(&plain);
        for e in plain.iter().filter_map(|e| e.as_ref().err()) {
            assert_clear(e, MAX_ERROR + 6 * body.len());
        }

        let list_watch = ListWatch::new(client.all::<ConfigMap>(), Decoder::new(strip, None));
        let stream = list_watch
            .watch(ListOptions::default())
            .await
            .expect("a 200 answer starts a watch");
        let informer: Vec<_> = stream.collect().await;
        ends_at_first_error(&informer);
        for e in informer.iter().filter_map(|e| e.as_ref().err()) {
            assert_clear(e, MAX_ERROR + 6 * body.len());
        }

        // Same frames, same events (the informer ends at an ERROR event, kube yields it).
        for (n, (plain, informer)) in plain.iter().zip(&informer).enumerate() {
            let (expected, kind) = match plain {
                Ok(WatchEvent::Added(o)) => (o, "ADDED"),
                Ok(WatchEvent::Modified(o)) => (o, "MODIFIED"),
                Ok(WatchEvent::Deleted(o)) => (o, "DELETED"),
                Ok(WatchEvent::Bookmark(b)) => {
                    match informer {
                        Ok(Event::Bookmark {
                            resource_version, ..
                        }) => assert_eq!(resource_version, &b.metadata.resource_version),
                        other => panic!("frame {n}: kube read a bookmark, the informer {other:?}"),
                    }
                    continue;
                }
                Ok(WatchEvent::Error(status)) => {
                    let informer = informer.as_ref().err().and_then(|e| e.status());
                    assert_eq!(
                        informer.map(|s| (s.code, &s.reason, &s.message)),
                        Some((status.code, &status.reason, &status.message)),
                        "frame {n}"
                    );
                    break;
                }
                Err(_) => break,
            };
            let (got, got_kind) = match informer {
                Ok(Event::Added(o)) => (o, "ADDED"),
                Ok(Event::Modified(o)) => (o, "MODIFIED"),
                Ok(Event::Deleted(o)) => (o, "DELETED"),
                other => panic!("frame {n}: kube read {kind} {expected:?}, the informer {other:?}"),
            };
            let mut expected = expected.clone();
            if strip {
                expected.metadata.managed_fields = None;
            }
            assert_eq!((kind, &expected), (got_kind, &**got), "frame {n}");
        }
    });
});

fn ends_at_first_error<T, E>(events: &[Result<T, E>]) {
    if let Some(first) = events.iter().position(Result::is_err) {
        assert_eq!(first + 1, events.len(), "events after an error");
    }
}
