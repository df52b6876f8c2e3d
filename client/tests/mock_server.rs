//! The request layer against a tiny local HTTP server that misbehaves on demand: `Retry-After`,
//! broken bodies, garbage, slowness, refused connections, expired credentials, log streams and
//! an exec websocket — what a real API server will not do when asked.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrokube_client::exec::exit_code;
use ferrokube_client::{Client, Config, Error, ExecOptions, ListOptions, LogOptions, WatchEvent};
use futures::{SinkExt, StreamExt, TryStreamExt};
use http::{Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

type Body = UnsyncBoxBody<Bytes, std::io::Error>;
type Request = http::Request<Incoming>;

const CM_URL: &str = "/api/v1/namespaces/ns/configmaps/cm";
const CM_JSON: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"ns"},"data":{"k":"v"}}"#;

/// A running mock: its base URL and the requests it saw (`METHOD path?query`).
struct Mock {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Mock {
    /// Serves `handler(n, request)` for the n-th request (from 0) on 127.0.0.1.
    async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(usize, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let count = Arc::new(AtomicUsize::new(0));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, count, log) =
                    (Arc::clone(&handler), Arc::clone(&count), Arc::clone(&log));
                let service = hyper::service::service_fn(move |req: Request| {
                    log.lock().push(format!("{} {}", req.method(), req.uri()));
                    let response = handler(count.fetch_add(1, Ordering::SeqCst), req);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades(),
                );
            }
        });
        Self { url, seen }
    }

    fn client(&self) -> Client {
        self.config().build().unwrap()
    }

    fn config(&self) -> Config {
        Config::from_kube(kube::Config::new(self.url.parse().unwrap())).with_qps(-1.0)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().clone()
    }
}

fn respond(code: u16, body: impl Into<Bytes>) -> Response<Body> {
    let body = Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(code).unwrap();
    response
}

fn with_header(
    mut response: Response<Body>,
    name: header::HeaderName,
    value: &str,
) -> Response<Body> {
    response.headers_mut().insert(name, value.parse().unwrap());
    response
}

/// A chunked body sending `chunks` with `gap` between them, then failing if `fail` (the
/// server then drops the connection mid-body).
fn chunked(chunks: Vec<&'static str>, gap: Duration, fail: bool) -> Response<Body> {
    let frames = futures::stream::iter(chunks)
        .then(move |c| async move {
            tokio::time::sleep(gap).await;
            Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(c.as_bytes())))
        })
        .chain(futures::stream::iter(
            fail.then(|| Err(std::io::Error::other("server died"))),
        ));
    Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)))
}

fn status_json(code: u16, reason: &str, message: &str) -> String {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
    .to_string()
}

fn configmaps(client: &Client) -> ferrokube_client::Api<ConfigMap> {
    client.namespaced::<ConfigMap>("ns")
}

// === Retry-After ===

#[tokio::test]
async fn too_many_requests_with_retry_after_is_retried() {
    let mock = Mock::start(|n, _| async move {
        if n == 0 {
            let body = status_json(429, "TooManyRequests", "slow down");
            with_header(respond(429, body), header::RETRY_AFTER, "1")
        } else {
            respond(200, CM_JSON)
        }
    })
    .await;
    let start = Instant::now();
    let cm = configmaps(&mock.client()).get("cm").await.unwrap();
    let took = start.elapsed();
    assert_eq!(cm.metadata.name.as_deref(), Some("cm"));
    assert!(
        took >= Duration::from_secs(1),
        "retried after only {took:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(
        mock.seen(),
        [format!("GET {CM_URL}"), format!("GET {CM_URL}")]
    );
}

/// Requests turned away together with `Retry-After: 1` come back spread out, not in a herd
/// that collides again (with client-go's exact wait they all came back within milliseconds).
#[tokio::test]
async fn simultaneous_429s_are_retried_at_different_times() {
    const CLIENTS: usize = 8;
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let log = Arc::clone(&arrivals);
    let mock = Mock::start(move |n, _| {
        if n >= CLIENTS {
            log.lock().push(Instant::now());
        }
        async move {
            if n < CLIENTS {
                let body = status_json(429, "TooManyRequests", "slow down");
                with_header(respond(429, body), header::RETRY_AFTER, "1")
            } else {
                respond(200, CM_JSON)
            }
        }
    })
    .await;
    let clients: Vec<Client> = (0..CLIENTS).map(|_| mock.client()).collect();
    let gets = clients
        .iter()
        .map(|c| async move { configmaps(c).get("cm").await });
    for got in futures::future::join_all(gets).await {
        assert_eq!(got.unwrap().metadata.name.as_deref(), Some("cm"));
    }
    let arrivals = arrivals.lock().clone();
    assert_eq!(arrivals.len(), CLIENTS, "one retry each");
    let (first, last) = (
        arrivals.iter().min().unwrap(),
        arrivals.iter().max().unwrap(),
    );
    // Uniform over half a second: all eight within 50 ms has a chance of about 8 × 0.1^7.
    assert!(
        *last - *first >= Duration::from_millis(50),
        "the retries came back together, within {:?}",
        *last - *first
    );
}

#[tokio::test]
async fn unavailable_with_retry_after_gives_up_after_ten_retries() {
    // Retry-After: 0 keeps the test fast; the last answer asks for 7 s, which the error keeps.
    let mock = Mock::start(|n, _| async move {
        let wait = if n < 10 { "0" } else { "7" };
        with_header(respond(503, ""), header::RETRY_AFTER, wait)
    })
    .await;
    let err = configmaps(&mock.client()).get("cm").await.unwrap_err();
    assert_eq!(mock.seen().len(), 11, "1 try + 10 retries");
    let status = err.status().expect("an API error");
    assert_eq!(
        (status.code, status.reason.as_str()),
        (503, "ServiceUnavailable")
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(!err.is_too_many_requests() && !err.is_not_found());
    assert!(err.to_string().contains(CM_URL), "{err}");
}

#[tokio::test]
async fn too_many_requests_gives_up_with_its_status() {
    let mock = Mock::start(|_, _| async {
        let body = status_json(429, "TooManyRequests", "storage is busy");
        with_header(respond(429, body), header::RETRY_AFTER, "0")
    })
    .await;
    let err = configmaps(&mock.client()).get("cm").await.unwrap_err();
    assert_eq!(mock.seen().len(), 11);
    assert!(err.is_too_many_requests(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::ZERO));
    assert!(err.to_string().contains("storage is busy"), "{err}");
}

#[tokio::test]
async fn unavailable_without_retry_after_is_not_retried() {
    let mock = Mock::start(|_, _| async { respond(503, "") }).await;
    let err = configmaps(&mock.client()).get("cm").await.unwrap_err();
    assert_eq!(mock.seen().len(), 1);
    assert_eq!(err.status().map(|s| s.code), Some(503));
    assert_eq!(err.retry_after(), None);
}

// === bodies ===

#[tokio::test]
async fn truncated_json_is_a_decode_error_naming_the_url() {
    let mock = Mock::start(|_, _| async { respond(200, &CM_JSON[..40]) }).await;
    let err = configmaps(&mock.client()).get("cm").await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains(CM_URL), "{err}");
}

#[tokio::test]
async fn without_managed_fields_leaves_them_out_of_returned_objects() {
    const WITH_MANAGED: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"ns","managedFields":[{"manager":"kubectl","operation":"Update"}]},"data":{"a":"b"}}"#;
    let mock = Mock::start(|_, _| async { respond(200, WITH_MANAGED) }).await;
    let full = configmaps(&mock.client()).get("cm").await.unwrap();
    assert_eq!(full.metadata.managed_fields.map(|m| m.len()), Some(1));
    let api = configmaps(&mock.client()).without_managed_fields();
    let lean = api.get("cm").await.unwrap();
    assert!(lean.metadata.managed_fields.is_none());
    assert_eq!(lean.data.unwrap()["a"], "b");
    let patched = api
        .patch_status(
            "cm",
            &ferrokube_client::Patch::Merge(serde_json::json!({})),
            &Default::default(),
        )
        .await
        .unwrap();
    assert!(patched.metadata.managed_fields.is_none());
}

#[tokio::test]
async fn garbage_on_a_server_error_becomes_a_status_with_the_text() {
    let mock = Mock::start(|_, _| async { respond(500, "<html>upstream exploded</html>") }).await;
    let err = configmaps(&mock.client()).get("cm").await.unwrap_err();
    let Error::Api(api) = &err else {
        panic!("expected an API error, got {err:?}")
    };
    assert_eq!(api.status.code, 500);
    assert_eq!(api.status.reason, "InternalServerError");
    assert!(api.status.message.contains("upstream exploded"), "{err}");
    assert_eq!(mock.seen().len(), 1);
}

#[tokio::test]
async fn expired_token_is_unauthorized_naming_the_url() {
    let mock = Mock::start(|_, _| async {
        respond(401, status_json(401, "Unauthorized", "Unauthorized"))
    })
    .await;
    let err = configmaps(&mock.client()).get("cm").await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert!(!err.is_forbidden());
    assert!(err.to_string().contains(CM_URL), "{err}");
}

// === watch ===

const ADDED: &str = concat!(
    r#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","#,
    r#""metadata":{"name":"cm","namespace":"ns","resourceVersion":"7"}}}"#,
    "\n"
);

#[tokio::test]
async fn watch_dying_mid_frame_yields_the_good_event_then_an_error() {
    let mock = Mock::start(|_, _| async {
        chunked(vec![ADDED, &ADDED[..30]], Duration::from_millis(20), true)
    })
    .await;
    let api = configmaps(&mock.client());
    let mut events = std::pin::pin!(api.watch(&ListOptions::default()).await.unwrap());
    match events.next().await {
        Some(Ok(WatchEvent::Added(cm))) => {
            assert_eq!(cm.metadata.resource_version.as_deref(), Some("7"));
        }
        other => panic!("expected the ADDED event, got {other:?}"),
    }
    match events.next().await {
        Some(Err(e @ (Error::Body { .. } | Error::Decode { .. }))) => {
            assert!(
                e.to_string().contains("/api/v1/namespaces/ns/configmaps"),
                "{e}"
            );
        }
        other => panic!("expected a body or decode error, got {other:?}"),
    }
    assert!(
        events.next().await.is_none(),
        "the stream goes on after an error"
    );
    assert_eq!(
        mock.seen(),
        ["GET /api/v1/namespaces/ns/configmaps?watch=true"]
    );
}

#[tokio::test]
async fn garbage_watch_frame_is_a_decode_error() {
    let mock = Mock::start(|_, _| async {
        chunked(
            vec!["this is not a watch event\n", ADDED],
            Duration::ZERO,
            false,
        )
    })
    .await;
    let api = configmaps(&mock.client());
    let events: Vec<_> = api
        .watch(&ListOptions::default())
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(events.len(), 1, "nothing after the error: {events:?}");
    let Err(err) = &events[0] else {
        panic!("expected an error, got {events:?}")
    };
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("watch event"), "{err}");
}

// === time ===

#[tokio::test]
async fn slow_server_times_out() {
    let mock = Mock::start(|_, _| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        respond(200, "{}")
    })
    .await;
    let start = Instant::now();
    let err = mock
        .client()
        .get()
        .abs_path("/slow")
        .timeout(Duration::from_millis(200))
        .bytes()
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, Error::Timeout { .. }) && err.is_timeout(),
        "{err:?}"
    );
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(err.to_string().contains("/slow"), "{err}");
}

#[tokio::test]
async fn unreachable_server_is_a_transport_error_naming_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}").parse().unwrap();
    let client = Config::from_kube(kube::Config::new(url))
        .with_qps(-1.0)
        .build()
        .unwrap();
    let err = configmaps(&client).get("cm").await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains(CM_URL), "{err}");
    assert!(err.status().is_none());
}

// === logs ===

#[tokio::test]
async fn logs_send_the_options_and_return_the_body() {
    let mock = Mock::start(|_, _| async { respond(200, "line 1\nline 2\n") }).await;
    let pods = mock.client().namespaced::<Pod>("ns");
    let options = LogOptions::default()
        .container("app")
        .tail_lines(2)
        .timestamps(true);
    let body = pods.logs("web", &options).await.unwrap();
    assert_eq!(body, "line 1\nline 2\n");
    assert_eq!(
        mock.seen(),
        ["GET /api/v1/namespaces/ns/pods/web/log?container=app&timestamps=true&tailLines=2"]
    );
}

#[tokio::test]
async fn followed_log_streams_lines_until_the_server_closes() {
    let mock = Mock::start(|_, _| async {
        chunked(
            vec!["first\nsec", "ond\n", "third\n"],
            Duration::from_millis(150),
            false,
        )
    })
    .await;
    // A client timeout shorter than the log: follow must not be cut by it.
    let client = mock
        .config()
        .with_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let pods = client.namespaced::<Pod>("ns");
    let follow = LogOptions::default().follow(true);
    let start = Instant::now();
    let mut lines = std::pin::pin!(pods.log_stream("web", &follow).await.unwrap());
    let mut got = Vec::new();
    while let Some(line) = lines.try_next().await.unwrap() {
        got.push((String::from_utf8_lossy(&line).into_owned(), start.elapsed()));
    }
    let text: Vec<_> = got.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(text, ["first", "second", "third"]);
    assert!(
        got[0].1 < got[2].1 - Duration::from_millis(100),
        "lines arrived at once: {got:?}"
    );

    // The whole body too: `logs` with follow outlives the 100 ms timeout...
    let all = pods.logs("web", &follow).await.unwrap();
    assert_eq!(all, "first\nsecond\nthird\n");
    // ...which does apply without follow.
    let err = pods.logs("web", &LogOptions::default()).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(
        mock.seen()[0],
        "GET /api/v1/namespaces/ns/pods/web/log?follow=true"
    );
}

// === exec ===

/// Answers a websocket upgrade with `v5.channel.k8s.io`, then plays `frames` and closes.
fn websocket(mut req: Request, frames: Vec<Vec<u8>>) -> Response<Body> {
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let protocols = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|p| p.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Some(key) = key.filter(|_| protocols.contains("v5.channel.k8s.io")) else {
        return respond(400, "not a v5 websocket upgrade");
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let io = TokioIo::new(upgrade.await.unwrap());
        let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        for frame in frames {
            ws.send(Message::binary(frame)).await.unwrap();
        }
        ws.close(None).await.unwrap();
        while ws.next().await.is_some() {}
    });
    let mut response = respond(101, "");
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, "Upgrade".parse().unwrap());
    headers.insert(header::UPGRADE, "websocket".parse().unwrap());
    let accept = derive_accept_key(key.as_bytes());
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept.parse().unwrap());
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        "v5.channel.k8s.io".parse().unwrap(),
    );
    response
}

#[tokio::test]
async fn exec_runs_over_a_websocket() {
    let mock = Mock::start(|_, req| async move {
        let status = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"2"}]}}"#;
        let frames = vec![
            vec![1],
            vec![2],
            b"\x01hello\n".to_vec(),
            b"\x02warning\n".to_vec(),
            [&[3u8][..], status].concat(),
        ];
        websocket(req, frames)
    })
    .await;
    let pods = mock.client().namespaced::<Pod>("ns");
    let options = ExecOptions::default().container("app");
    let mut process = pods.exec("web", ["ls", "-l"], &options).await.unwrap();
    let (mut out, mut err) = (process.stdout().unwrap(), process.stderr().unwrap());
    let (mut o, mut e) = (String::new(), String::new());
    out.read_to_string(&mut o).await.unwrap();
    err.read_to_string(&mut e).await.unwrap();
    assert_eq!((o.as_str(), e.as_str()), ("hello\n", "warning\n"));
    let status = process.join().await.unwrap().expect("an exit status");
    assert_eq!(exit_code(&status), Some(2));
    assert_eq!(
        mock.seen(),
        [
            "GET /api/v1/namespaces/ns/pods/web/exec?stdout=true&stderr=true&container=app&command=ls&command=-l"
        ]
    );
}

#[tokio::test]
async fn exec_in_a_missing_pod_is_not_found() {
    let mock = Mock::start(|_, _| async {
        respond(
            404,
            status_json(404, "NotFound", r#"pods "gone" not found"#),
        )
    })
    .await;
    let pods = mock.client().namespaced::<Pod>("ns");
    let err = pods
        .exec("gone", ["true"], &ExecOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains("/pods/gone/exec?"), "{err}");
}
