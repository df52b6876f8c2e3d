//! `Config::with_request_metrics`: every request a client makes (typed, dynamic, raw, watch, retries)
//! is reported once with its status code, method and host; requests without an answer as
//! `<error>`. Against a tiny local HTTP server.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ferrokube_client::metrics::{ERROR_CODE, RequestMetrics};
use ferrokube_client::{Config, ListOptions};
use futures::StreamExt;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::{ApiResource, GroupVersionKind};
use parking_lot::Mutex;

const CM_JSON: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"ns","resourceVersion":"7"},"data":{"k":"v"}}"#;
const NOT_FOUND_JSON: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \"gone\" not found","reason":"NotFound","code":404}"#;
const WATCH_EVENT: &str = concat!(
    r#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"ns","resourceVersion":"7"}}}"#,
    "\n"
);

/// Every report, as `METHOD host code`.
#[derive(Default)]
struct Recorded(Mutex<Vec<String>>);

impl RequestMetrics for Recorded {
    fn request_done(&self, method: &str, host: &str, code: &str) {
        self.0.lock().push(format!("{method} {host} {code}"));
    }
}

impl Recorded {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock())
    }
}

fn respond(code: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    response
}

/// Serves the few answers the test needs on 127.0.0.1; returns its address.
async fn start_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let throttled = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let throttled = Arc::clone(&throttled);
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let path = req.uri().path().to_owned();
                let query = req.uri().query().unwrap_or_default().to_owned();
                let response = match (req.method().as_str(), path.as_str()) {
                    (_, "/api/v1/namespaces/ns/configmaps") if query.contains("watch") => {
                        respond(200, WATCH_EVENT)
                    }
                    ("GET", "/api/v1/namespaces/ns/configmaps/cm") => respond(200, CM_JSON),
                    ("DELETE", "/api/v1/namespaces/ns/configmaps/gone") => {
                        respond(404, NOT_FOUND_JSON)
                    }
                    ("GET", "/busy") => {
                        // 429 with Retry-After: 0 once, then OK: the retry is its own request.
                        if throttled.fetch_add(1, Ordering::SeqCst) == 0 {
                            let mut response = respond(429, "");
                            response
                                .headers_mut()
                                .insert(header::RETRY_AFTER, "0".parse().unwrap());
                            response
                        } else {
                            respond(200, "{}")
                        }
                    }
                    ("GET", "/raw") => respond(200, "raw"),
                    _ => respond(500, ""),
                };
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

fn config(url: &str, recorded: &Arc<Recorded>) -> Config {
    Config::from_kube(kube::Config::new(url.parse().unwrap()))
        .with_qps(-1.0)
        .with_request_metrics(recorded.clone())
}

#[tokio::test]
async fn every_request_is_reported_with_its_code() {
    let addr = start_server().await;
    let recorded = Arc::new(Recorded::default());
    let client = config(&format!("http://{addr}"), &recorded)
        .build()
        .unwrap();
    let host = addr.to_string();

    // Typed.
    let configmaps = client.namespaced::<ConfigMap>("ns");
    configmaps.get("cm").await.unwrap();
    assert!(
        configmaps
            .delete("gone", &Default::default())
            .await
            .is_err()
    );
    assert_eq!(
        recorded.take(),
        [format!("GET {host} 200"), format!("DELETE {host} 404")]
    );

    // Dynamic.
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
    client
        .dynamic(&resource, Some("ns"))
        .get("cm")
        .await
        .unwrap();
    assert_eq!(recorded.take(), [format!("GET {host} 200")]);

    // Raw, with a retried 429: both attempts count.
    client.get().abs_path("/raw").bytes().await.unwrap();
    client.get().abs_path("/busy").bytes().await.unwrap();
    assert_eq!(
        recorded.take(),
        [
            format!("GET {host} 200"),
            format!("GET {host} 429"),
            format!("GET {host} 200"),
        ]
    );

    // Watch: counted once, when the answer's headers arrive.
    let events: Vec<_> = configmaps
        .watch(&ListOptions::default())
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(recorded.take(), [format!("GET {host} 200")]);
}

#[tokio::test]
async fn a_request_without_an_answer_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let recorded = Arc::new(Recorded::default());
    let client = config(&format!("http://{addr}"), &recorded)
        .build()
        .unwrap();
    let err = client
        .namespaced::<ConfigMap>("ns")
        .get("cm")
        .await
        .unwrap_err();
    assert!(err.status().is_none(), "{err:?}");
    assert_eq!(recorded.take(), [format!("GET {addr} {ERROR_CODE}")]);
}
