//! The reflector against a tiny local HTTP server that misbehaves on demand — what a real API
//! server will not do when asked.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrokube_client::Client;
use ferrokube_informer::decode::Decoder;
use ferrokube_informer::list_watch::ListWatch;
use ferrokube_informer::reflector::{Reflector, ReflectorConfig, Sink};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::ConfigMap;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

type Request = http::Request<Incoming>;

const LIST: &str = r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"10"},"items":[{"metadata":{"name":"a","namespace":"ns","resourceVersion":"9"}}]}"#;

/// A server on 127.0.0.1 answering with `handler(request)`; it counts lists and watches.
struct Mock {
    url: String,
    lists: Arc<AtomicUsize>,
    watches: Arc<AtomicUsize>,
}

impl Mock {
    async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(bool) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (lists, watches) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let handler = Arc::new(handler);
        let (l, w) = (Arc::clone(&lists), Arc::clone(&watches));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, l, w) = (Arc::clone(&handler), Arc::clone(&l), Arc::clone(&w));
                let service = hyper::service::service_fn(move |req: Request| {
                    let watch = req.uri().query().unwrap_or_default().contains("watch=true");
                    if watch { &w } else { &l }.fetch_add(1, Ordering::SeqCst);
                    let response = handler(watch);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self {
            url,
            lists,
            watches,
        }
    }

    /// A client without throttling.
    fn client(&self) -> Client {
        let config = kube::Config::new(self.url.parse().unwrap());
        Client::from_kube(kube::Client::try_from(config).unwrap())
    }
}

fn respond(code: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::from_u16(code).unwrap();
    response
}

#[derive(Default)]
struct Counter {
    replaces: AtomicUsize,
}

impl Sink<ConfigMap> for Counter {
    fn replace(&self, _: Vec<Arc<ConfigMap>>, _: String) {
        self.replaces.fetch_add(1, Ordering::SeqCst);
    }
    fn add(&self, _: Arc<ConfigMap>) {}
    fn update(&self, _: Arc<ConfigMap>) {}
    fn delete(&self, _: Arc<ConfigMap>) {}
    fn resync(&self) {}
}

/// Runs a reflector against `client` for `period` and returns the sink.
async fn run_for(client: &Client, period: Duration, errors: Arc<Mutex<Vec<String>>>) -> Counter {
    let sink = Arc::new(Counter::default());
    let config = ReflectorConfig::default().watch_error_handler(Arc::new(move |e| {
        errors.lock().push(e.to_string());
    }));
    let reflector = Reflector::new(
        "mock",
        ListWatch::new(
            client.namespaced::<ConfigMap>("ns"),
            Decoder::new(true, None),
        ),
        Arc::clone(&sink),
        config,
    );
    let cancel = CancellationToken::new();
    let task = tokio::spawn(reflector.run(cancel.clone()));
    tokio::time::sleep(period).await;
    cancel.cancel();
    task.await.unwrap();
    Arc::try_unwrap(sink).unwrap_or_else(|_| panic!("the reflector kept its sink"))
}

/// A server that ends every watch at once with an empty 200 used to get thousands of watch
/// requests a second; client-go calls that a "very short watch" and backs off.
#[tokio::test]
async fn watches_ended_at_once_are_backed_off() {
    let mock =
        Mock::start(|watch| async move { respond(200, if watch { "" } else { LIST }) }).await;
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = run_for(&mock.client(), Duration::from_secs(1), Arc::clone(&errors)).await;
    let watches = mock.watches.load(Ordering::SeqCst);
    assert!(
        (1..=4).contains(&watches),
        "{watches} watches in one second"
    );
    // client-go lists again after a very short watch (after the backoff).
    let lists = mock.lists.load(Ordering::SeqCst);
    assert!((1..=4).contains(&lists), "{lists} lists in one second");
    assert_eq!(sink.replaces.load(Ordering::SeqCst), lists);
    let errors = errors.lock();
    assert!(
        errors.iter().any(|e| e.contains("very short watch")),
        "{errors:?}"
    );
}
