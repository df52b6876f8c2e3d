//! An in-memory Lease API for the elector's tests: GET, POST and PUT of Leases with
//! resourceVersion checks (409 AlreadyExists / Conflict), and, per client, a link that can
//! fail (503) or hang, to cut a candidate off from the "API server".

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::client::Body;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::client::Client;

const PREFIX: &str = "/apis/coordination.k8s.io/v1/namespaces/";

/// The shared "API server".
#[derive(Clone, Default)]
pub(super) struct FakeLeases {
    store: Arc<Mutex<Store>>,
}

#[derive(Default)]
struct Store {
    leases: BTreeMap<String, Value>,
    version: u64,
    requests: Vec<(Method, String)>,
}

/// How a client reaches the fake server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Link {
    Up = 0,
    /// Every request gets a 503.
    Failing = 1,
    /// Every request hangs forever.
    Hanging = 2,
}

/// Switches one client's [`Link`].
#[derive(Clone, Default)]
pub(super) struct LinkSwitch(Arc<AtomicU8>);

impl LinkSwitch {
    pub(super) fn set(&self, link: Link) {
        self.0.store(link as u8, Ordering::SeqCst);
    }

    fn get(&self) -> Link {
        match self.0.load(Ordering::SeqCst) {
            1 => Link::Failing,
            2 => Link::Hanging,
            _ => Link::Up,
        }
    }
}

impl FakeLeases {
    /// A client of this server, with its own link.
    pub(super) fn client(&self) -> (Client, LinkSwitch) {
        let link = LinkSwitch::default();
        let (store, switch) = (Arc::clone(&self.store), link.clone());
        let service = tower::service_fn(move |request: Request<Body>| {
            let (store, link) = (Arc::clone(&store), switch.get());
            async move { Ok::<_, Infallible>(handle(&store, link, request).await) }
        });
        (
            Client::from_kube(kube::Client::new(service, "default")),
            link,
        )
    }

    /// The Lease `name`, as stored.
    pub(super) fn lease(&self, name: &str) -> Option<Lease> {
        let store = self.store.lock();
        let value = store.leases.get(name)?.clone();
        serde_json::from_value(value).ok()
    }

    /// Writes a Lease directly, as another client (a Go replica) would; bumps its version.
    pub(super) fn write(&self, lease: &Lease) {
        let mut store = self.store.lock();
        let mut value = serde_json::to_value(lease).unwrap_or_default();
        store.version += 1;
        value["metadata"]["resourceVersion"] = json!(store.version.to_string());
        let name = lease.metadata.name.clone().unwrap_or_default();
        store.leases.insert(name, value);
    }

    /// How many requests of `method` were served.
    pub(super) fn count(&self, method: &Method) -> usize {
        let store = self.store.lock();
        store.requests.iter().filter(|(m, _)| m == method).count()
    }
}

async fn handle(store: &Mutex<Store>, link: Link, request: Request<Body>) -> Response<Body> {
    match link {
        Link::Up => {}
        Link::Failing => return status(503, "ServiceUnavailable", "the link is down"),
        Link::Hanging => std::future::pending().await,
    }
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return status(400, "BadRequest", &e.to_string()),
    };
    let path = parts.uri.path().to_owned();
    let segments: Vec<&str> = path
        .strip_prefix(PREFIX)
        .map(|rest| rest.split('/').collect())
        .unwrap_or_default();
    let mut store = store.lock();
    store.requests.push((parts.method.clone(), path.clone()));
    match (&parts.method, segments.as_slice()) {
        (&Method::GET, [_ns, "leases", name]) => match store.leases.get(*name) {
            Some(lease) => ok(lease),
            None => status(404, "NotFound", &format!("leases \"{name}\" not found")),
        },
        (&Method::POST, [_ns, "leases"]) => {
            let Ok(mut lease) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "not JSON");
            };
            let name = lease["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if store.leases.contains_key(&name) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("leases \"{name}\" already exists"),
                );
            }
            store.version += 1;
            lease["metadata"]["resourceVersion"] = json!(store.version.to_string());
            store.leases.insert(name, lease.clone());
            ok(&lease)
        }
        (&Method::PUT, [_ns, "leases", name]) => {
            let Ok(mut lease) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "not JSON");
            };
            let Some(stored) = store.leases.get(*name) else {
                return status(404, "NotFound", &format!("leases \"{name}\" not found"));
            };
            if stored["metadata"]["resourceVersion"] != lease["metadata"]["resourceVersion"] {
                return status(409, "Conflict", "the object has been modified");
            }
            store.version += 1;
            lease["metadata"]["resourceVersion"] = json!(store.version.to_string());
            store.leases.insert((*name).to_owned(), lease.clone());
            ok(&lease)
        }
        _ => status(405, "MethodNotAllowed", &format!("{} {path}", parts.method)),
    }
}

fn ok(value: &Value) -> Response<Body> {
    respond(StatusCode::OK, value)
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    respond(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &body,
    )
}

fn respond(code: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string().into_bytes()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
