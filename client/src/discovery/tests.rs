//! [`Discovery`] against a fake API server: aggregated and legacy fetches, caching,
//! invalidation, partial failures. [`FakeServer`] is shared with the RESTMapper's tests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use parking_lot::Mutex;

use super::*;

/// An API server that answers GETs from a route table and records what it was asked.
#[derive(Clone, Default)]
pub(crate) struct FakeServer {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    routes: HashMap<String, (u16, String)>,
    requests: Vec<(String, String)>,
}

impl FakeServer {
    /// A server offering aggregated discovery from the samples.
    pub(crate) fn aggregated() -> Self {
        let server = Self::default();
        server.route("/api", 200, samples::AGGREGATED_CORE);
        server.route("/apis", 200, samples::AGGREGATED_APIS);
        server
    }

    /// Answers GET `path` with `status` and `body` (replacing any earlier answer).
    pub(crate) fn route(&self, path: &str, status: u16, body: &str) {
        self.state
            .lock()
            .routes
            .insert(path.to_owned(), (status, body.to_owned()));
    }

    /// The paths requested so far, sorted.
    pub(crate) fn paths(&self) -> Vec<String> {
        let mut paths: Vec<_> = self
            .state
            .lock()
            .requests
            .iter()
            .map(|(p, _)| p.clone())
            .collect();
        paths.sort();
        paths
    }

    fn accept_headers(&self, path: &str) -> Vec<String> {
        let state = self.state.lock();
        let requests = state.requests.iter().filter(|(p, _)| p == path);
        requests.map(|(_, a)| a.clone()).collect()
    }

    /// A client whose requests this server answers.
    pub(crate) fn client(&self) -> Client {
        let server = self.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.answer(&req)) }
        });
        Client::from_kube(kube::Client::new(service, "default"))
    }

    fn answer(&self, req: &http::Request<kube::client::Body>) -> http::Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let accept = req
            .headers()
            .get(ACCEPT)
            .and_then(|a| a.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut state = self.state.lock();
        state.requests.push((path.clone(), accept));
        let (status, body) = state.routes.get(&path).cloned().unwrap_or_else(|| {
            let status = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#;
            (404, status.to_owned())
        });
        let mut response = http::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
        response
    }
}

const UNAVAILABLE: &str = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server is currently unable to handle the request","reason":"ServiceUnavailable","code":503}"#;

#[tokio::test]
async fn aggregated_discovery_is_fetched_once_and_cached() {
    let server = FakeServer::aggregated();
    let discovery = Discovery::new(server.client());
    assert!(!discovery.is_fresh());

    let groups = discovery.server_groups().await.expect("groups");
    let names: Vec<_> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["", "apps", "events.k8s.io", "example.com"]);
    assert_eq!(server.paths(), ["/api", "/apis"]);
    for path in ["/api", "/apis"] {
        assert_eq!(
            server.accept_headers(path),
            [ACCEPT_AGGREGATED_DISCOVERY_V2],
            "{path} asks for aggregated discovery"
        );
    }
    assert!(discovery.is_fresh());
    assert!(discovery.cached().is_some_and(|s| s.is_aggregated()));

    // Served from the cache, also through a clone.
    let apps = discovery
        .clone()
        .server_resources_for("apps/v1")
        .await
        .expect("apps/v1");
    assert_eq!(apps[0].resource.plural, "deployments");
    let preferred = discovery.preferred_resources().await.expect("preferred");
    assert!(preferred.iter().any(|r| r.resource.plural == "configmaps"));
    assert_eq!(server.paths().len(), 2, "no request after the first fetch");

    let missing = discovery.server_resources_for("batch/v1").await;
    assert!(
        matches!(&missing, Err(Error::GroupVersionNotFound { group_version }) if group_version == "batch/v1"),
        "{missing:?}"
    );
    let stale = discovery.server_resources_for("example.com/v1alpha1").await;
    let stale = stale.expect_err("stale group version");
    assert!(
        stale
            .to_string()
            .contains("example.com/v1alpha1 is unavailable"),
        "{stale}"
    );

    discovery.invalidate();
    assert!(!discovery.is_fresh());
    discovery.server_groups().await.expect("groups again");
    assert_eq!(
        server.paths().len(),
        4,
        "invalidate makes the next use fetch"
    );

    let before = discovery.cached().expect("cached");
    let after = discovery.refresh().await.expect("refresh");
    assert!(!Arc::ptr_eq(&before, &after));
    assert_eq!(server.paths().len(), 6, "refresh always fetches");
}

#[tokio::test]
async fn legacy_discovery_fetches_each_group_version() {
    let server = FakeServer::default();
    server.route("/api", 200, samples::LEGACY_API);
    server.route("/apis", 200, samples::LEGACY_APIS);
    server.route("/api/v1", 200, samples::LEGACY_CORE_V1);
    server.route("/apis/apps/v1", 200, samples::LEGACY_APPS_V1);
    server.route("/apis/batch/v1", 503, UNAVAILABLE);
    let discovery = Discovery::new(server.client());

    let snapshot = discovery
        .snapshot()
        .await
        .expect("partial failure is no error");
    assert!(!snapshot.is_aggregated());
    assert_eq!(
        server.paths(),
        [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps/v1",
            "/apis/batch/v1"
        ]
    );
    let core = discovery.server_resources_for("v1").await.expect("v1");
    assert!(
        core.iter()
            .any(|r| r.resource.plural == "configmaps" && r.namespaced)
    );
    assert!(
        core.iter()
            .any(|r| r.resource.plural == "namespaces" && !r.namespaced)
    );
    let apps = discovery
        .server_resources_for("apps/v1")
        .await
        .expect("apps");
    assert!(apps[0].subresource("scale").is_some());

    let batch = discovery.server_resources_for("batch/v1").await;
    match batch {
        Err(Error::GroupVersionUnavailable {
            group_version,
            reason,
        }) => {
            assert_eq!(group_version, "batch/v1");
            assert!(reason.contains("503"), "{reason}");
        }
        other => panic!("expected an unavailable group version, got {other:?}"),
    }
}

#[tokio::test]
async fn concurrent_first_uses_share_one_fetch() {
    let server = FakeServer::aggregated();
    let discovery = Discovery::new(server.client());
    let uses = (0..8).map(|_| {
        let d = discovery.clone();
        async move { d.snapshot().await }
    });
    let snapshots = futures::future::join_all(uses).await;
    let first = snapshots[0].as_ref().expect("snapshot");
    for s in &snapshots {
        assert!(Arc::ptr_eq(first, s.as_ref().expect("snapshot")));
    }
    assert_eq!(server.paths(), ["/api", "/apis"]);

    // Refreshes that saw the same snapshot share one fetch too.
    let refreshes = (0..8).map(|_| {
        let (d, seen) = (discovery.clone(), Arc::clone(first));
        async move { d.refresh_if_unchanged(&seen).await }
    });
    for r in futures::future::join_all(refreshes).await {
        assert!(!Arc::ptr_eq(first, &r.expect("refresh")));
    }
    assert_eq!(server.paths().len(), 4);
}

#[tokio::test]
async fn root_failures() {
    // A missing /api is taken as empty, as client-go does.
    let server = FakeServer::default();
    server.route("/apis", 200, samples::AGGREGATED_APIS);
    let discovery = Discovery::new(server.client());
    let groups = discovery.server_groups().await.expect("groups");
    assert_eq!(groups[0].name, "apps");

    // Any other failure is an error naming the path, with the server's answer as its cause.
    server.route("/api", 503, UNAVAILABLE);
    let err = discovery.refresh().await.expect_err("/api fails");
    assert!(
        matches!(&err, Error::Request { path, .. } if path == "/api"),
        "{err:?}"
    );
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause.is_some_and(|c| c.contains("ServiceUnavailable")),
        "{err:?}"
    );
    // The old snapshot stays cached.
    assert!(discovery.is_fresh());
}
