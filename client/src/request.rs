//! The raw request builder: verb, namespace, resource, subresource, name, query, headers,
//! body, timeout → a decoded value, bytes, a line stream or a watch stream. Every other client
//! in this crate builds its requests here, so URLs are built in one place.

use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::Client;
use crate::error::{ApiError, Error, Result, Status};
use crate::watch::{self, WatchEvent};

/// How many times a 429/5xx answer with `Retry-After` is retried (client-go's maximum).
pub const MAX_RETRY_AFTER_RETRIES: u32 = 10;

/// Up to this fraction of a `Retry-After` delay is added at random before the retry.
///
/// client-go waits exactly the delay the server asked for. An overloaded API server answers
/// every request it turns away at one moment with the same `Retry-After: 1`, so without jitter
/// all of them come back together one second later, collide again, and a request can use up
/// its ten retries in a herd that never disperses: the caller gets a 429. With jitter the
/// herd spreads over half a second and the retries succeed.
pub const RETRY_AFTER_JITTER: f64 = 0.5;

/// A request being built; finish it with [`decode`](Self::decode), [`bytes`](Self::bytes),
/// [`lines`](Self::lines), [`watch`](Self::watch) or [`response`](Self::response).
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct Request {
    client: Client,
    verb: Method,
    path: Path,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Option<Bytes>,
    timeout: Option<Duration>,
    error: Option<Error>,
}

#[derive(Debug, Default)]
struct Path {
    absolute: Option<String>,
    group: String,
    version: String,
    namespace: Option<String>,
    resource: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

impl Request {
    pub(crate) fn new(client: Client, verb: Method) -> Self {
        let timeout = client.default_timeout();
        Self {
            client,
            verb,
            path: Path {
                version: "v1".to_owned(),
                ..Path::default()
            },
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: None,
            timeout,
            error: None,
        }
    }

    /// The API group and version (`""`, `"v1"` for the core group).
    pub fn group_version(mut self, group: &str, version: &str) -> Self {
        self.path.group = group.to_owned();
        self.path.version = version.to_owned();
        self
    }

    /// The namespace (`None` or empty: cluster-scoped or all namespaces).
    pub fn namespace(mut self, namespace: Option<&str>) -> Self {
        self.path.namespace = namespace.filter(|n| !n.is_empty()).map(str::to_owned);
        self
    }

    /// The resource's plural name, e.g. `pods`.
    pub fn resource(mut self, plural: &str) -> Self {
        self.path.resource = Some(plural.to_owned());
        self
    }

    /// The object name.
    pub fn name(mut self, name: &str) -> Self {
        if name.is_empty() {
            self.fail("an object name must not be empty");
        }
        self.path.name = Some(name.to_owned());
        self
    }

    /// The subresource, e.g. `status`, `scale`, `log`.
    pub fn subresource(mut self, subresource: &str) -> Self {
        self.path.subresource = Some(subresource.to_owned());
        self
    }

    /// A path outside the resource tree, e.g. `/version`, `/readyz`, `/apis`.
    pub fn abs_path(mut self, path: &str) -> Self {
        self.path.absolute = Some(path.to_owned());
        self
    }

    /// A query parameter.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((key.into(), value.into()));
        self
    }

    /// Several query parameters.
    pub fn params<K: Into<String>, V: Into<String>>(
        mut self,
        params: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.query
            .extend(params.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// A request header.
    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        match HeaderValue::from_str(value) {
            Ok(v) => {
                self.headers.insert(name, v);
            }
            Err(_) => self.fail(&format!("header {name} has an invalid value")),
        }
        self
    }

    /// A raw body with its content type.
    pub fn body(mut self, body: impl Into<Bytes>, content_type: &'static str) -> Self {
        self.body = Some(body.into());
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        self
    }

    /// A JSON body.
    pub fn json<T: Serialize + ?Sized>(self, body: &T) -> Self {
        self.json_as(body, "application/json")
    }

    /// A body serialized as JSON, sent with another content type (e.g. a patch type).
    pub fn json_as<T: Serialize + ?Sized>(self, body: &T, content_type: &'static str) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.body(bytes, content_type),
            Err(e) => {
                let mut this = self;
                this.fail(&format!("body cannot be serialized: {e}"));
                this
            }
        }
    }

    /// The timeout for getting the response (and, for non-streaming calls, its body);
    /// overrides the client's default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn fail(&mut self, message: &str) {
        if self.error.is_none() {
            self.error = Some(Error::InvalidRequest(message.to_owned()));
        }
    }

    /// The path and query this request goes to.
    pub fn url(&self) -> String {
        let p = &self.path;
        let mut url = match &p.absolute {
            Some(path) => path.clone(),
            None => {
                let mut url = if p.group.is_empty() {
                    format!("/api/{}", p.version)
                } else {
                    format!("/apis/{}/{}", p.group, p.version)
                };
                for (segment, value) in [
                    ("namespaces/", &p.namespace),
                    ("", &p.resource),
                    ("", &p.name),
                    ("", &p.subresource),
                ] {
                    if let Some(v) = value {
                        url.push('/');
                        url.push_str(segment);
                        url.extend(form_urlencoded::byte_serialize(v.as_bytes()));
                    }
                }
                url
            }
        };
        if !self.query.is_empty() {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &self.query {
                q.append_pair(k, v);
            }
            url.push('?');
            url.push_str(&q.finish());
        }
        url
    }

    /// Sends the request and returns the response once its status is a success (after
    /// retrying `Retry-After` answers). Failures carry the server's `Status`.
    pub async fn response(self) -> Result<Response> {
        let timeout = self.timeout;
        let verb = self.verb.clone();
        let url = self.url();
        match timeout {
            Some(t) => tokio::time::timeout(t, self.execute(url.clone()))
                .await
                .map_err(|_| Error::Timeout {
                    verb,
                    url,
                    after: t,
                })?,
            None => self.execute(url).await,
        }
    }

    async fn execute(self, url: String) -> Result<Response> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut attempt = 0;
        loop {
            let mut builder = http::Request::builder().method(self.verb.clone()).uri(&url);
            if let Some(h) = builder.headers_mut() {
                h.extend(self.headers.clone());
            }
            let body = self.body.clone().map_or_else(Body::empty, Body::from);
            let request = builder
                .body(body)
                .map_err(|e| Error::InvalidRequest(format!("{url}: {e}")))?;
            let response =
                self.client
                    .kube()
                    .send(request)
                    .await
                    .map_err(|source| Error::Transport {
                        verb: self.verb.clone(),
                        url: url.clone(),
                        source,
                    })?;
            let status = response.status();
            if status.is_success() {
                return Ok(Response {
                    verb: self.verb,
                    url,
                    inner: response,
                });
            }
            let retry_after = retry_after(response.headers());
            let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            if let (true, Some(delay)) = (retryable, retry_after)
                && attempt < MAX_RETRY_AFTER_RETRIES
            {
                attempt += 1;
                let delay = retry_after_delay(delay);
                tracing::debug!(%url, %status, ?delay, attempt, "server asked to retry later");
                tokio::time::sleep(delay).await;
                continue;
            }
            return Err(api_error(self.verb, url, response, retry_after).await);
        }
    }

    /// Sends the request and decodes the JSON response body.
    pub async fn decode<T: DeserializeOwned>(self) -> Result<T> {
        let response = self.read().await?;
        response.decode()
    }

    /// Sends the request and decodes the response body, leaving `metadata.managedFields` out
    /// while parsing (cheaper, and the way informer caches hold objects).
    pub async fn decode_without_managed_fields<T: DeserializeOwned>(self) -> Result<T> {
        let response = self.read().await?;
        response.decode_without_managed_fields()
    }

    /// Sends the request and returns the whole response body.
    pub async fn bytes(self) -> Result<Bytes> {
        Ok(self.read().await?.bytes)
    }

    /// Sends the request and reads the body within the timeout.
    async fn read(self) -> Result<FullResponse> {
        let timeout = self.timeout;
        let verb = self.verb.clone();
        let url = self.url();
        let work = async {
            let response = self.execute(url.clone()).await?;
            response.collect().await
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, work)
                .await
                .map_err(|_| Error::Timeout {
                    verb,
                    url,
                    after: t,
                })?,
            None => work.await,
        }
    }

    /// Sends the request and streams the body line by line (without the `\n`).
    pub async fn lines(self) -> Result<impl Stream<Item = Result<Bytes>> + Send + use<>> {
        let response = self.response().await?;
        Ok(response.lines())
    }

    /// Sends a watch request (add `watch=true` yourself, or use [`Client::watch_request`])
    /// and decodes each frame as a [`WatchEvent`].
    ///
    /// [`Client::watch_request`]: crate::Client
    pub async fn watch<T: DeserializeOwned + Send + 'static>(
        self,
    ) -> Result<impl Stream<Item = Result<WatchEvent<T>>> + Send + use<T>> {
        let response = self.response().await?;
        let (verb, url) = (response.verb.clone(), response.url.clone());
        Ok(watch::decode_events(response.lines(), verb, url))
    }
}

/// A successful response whose body has not been read.
#[derive(Debug)]
pub struct Response {
    verb: Method,
    url: String,
    inner: http::Response<Body>,
}

impl Response {
    /// The HTTP response (status, headers, streaming body).
    pub fn into_inner(self) -> http::Response<Body> {
        self.inner
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// Streams the body line by line.
    pub fn lines(self) -> impl Stream<Item = Result<Bytes>> + Send + use<> {
        watch::lines(self.inner.into_body(), self.verb, self.url)
    }

    /// Reads the whole body.
    async fn collect(self) -> Result<FullResponse> {
        let bytes = self
            .inner
            .into_body()
            .collect()
            .await
            .map_err(|source| Error::Body {
                verb: self.verb.clone(),
                url: self.url.clone(),
                source,
            })?
            .to_bytes();
        Ok(FullResponse {
            verb: self.verb,
            url: self.url,
            bytes,
        })
    }
}

struct FullResponse {
    verb: Method,
    url: String,
    bytes: Bytes,
}

impl FullResponse {
    fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.bytes).map_err(|source| self.decode_error::<T>(source))
    }

    fn decode_without_managed_fields<T: DeserializeOwned>(&self) -> Result<T> {
        let mut de = serde_json::Deserializer::from_slice(&self.bytes);
        T::deserialize(crate::skip::SkipManagedFields::new(&mut de))
            .and_then(|value| de.end().map(|()| value))
            .map_err(|source| self.decode_error::<T>(source))
    }

    fn decode_error<T>(&self, source: serde_json::Error) -> Error {
        Error::Decode {
            verb: self.verb.clone(),
            url: self.url.clone(),
            what: std::any::type_name::<T>(),
            source,
        }
    }
}

/// The wait before retrying an answer that asked for `asked`: at least that, plus up to
/// [`RETRY_AFTER_JITTER`] of it at random.
fn retry_after_delay(asked: Duration) -> Duration {
    // The jitter alone (at most half the wait) cannot overflow; `asked.mul_f64(1.5)` can, for
    // a Retry-After of more than ~2^63 seconds.
    asked.saturating_add(asked.mul_f64(rand::random::<f64>() * RETRY_AFTER_JITTER))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// Turns a failure response into an [`Error::Api`], reading its `Status` body when there is
/// one and synthesising one from the code otherwise (as client-go's
/// `newUnstructuredResponseError`).
async fn api_error(
    verb: Method,
    url: String,
    response: http::Response<Body>,
    retry_after: Option<Duration>,
) -> Error {
    let code = response.status();
    let bytes = match response.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(source) => return Error::Body { verb, url, source },
    };
    let status = match serde_json::from_slice::<Status>(&bytes) {
        Ok(s) if s.code != 0 || !s.reason.is_empty() => s,
        _ => {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
                .trim()
                .to_owned();
            let reason = code
                .canonical_reason()
                .unwrap_or("Unknown")
                .replace(' ', "");
            let message = if text.is_empty() {
                format!("the server responded with {code}")
            } else {
                text
            };
            Status::failure(&message, &reason)
        }
    };
    let status = if status.code == 0 {
        status.with_code(code.as_u16())
    } else {
        status
    };
    Error::Api(Box::new(ApiError {
        verb,
        url,
        status,
        retry_after,
    }))
}

impl Client {
    /// A request with any verb.
    pub fn request(&self, verb: Method) -> Request {
        Request::new(self.clone(), verb)
    }

    /// A GET request.
    pub fn get(&self) -> Request {
        self.request(Method::GET)
    }

    /// A POST request.
    pub fn post(&self) -> Request {
        self.request(Method::POST)
    }

    /// A PUT request.
    pub fn put(&self) -> Request {
        self.request(Method::PUT)
    }

    /// A PATCH request.
    pub fn patch(&self) -> Request {
        self.request(Method::PATCH)
    }

    /// A DELETE request.
    pub fn delete(&self) -> Request {
        self.request(Method::DELETE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_waits_at_least_the_delay_asked_plus_jitter() {
        let asked = Duration::from_secs(1);
        let delays: Vec<Duration> = (0..1000).map(|_| retry_after_delay(asked)).collect();
        let (min, max) = (
            delays.iter().min().copied().unwrap_or_default(),
            delays.iter().max().copied().unwrap_or_default(),
        );
        assert!(min >= asked, "{min:?} is shorter than Retry-After");
        assert!(max <= asked.mul_f64(1.0 + RETRY_AFTER_JITTER), "{max:?}");
        // Spread over most of the jitter window (the chance of less is below 1000 × 0.6^999).
        assert!(max - min >= Duration::from_millis(300), "{min:?}..{max:?}");
        assert_eq!(retry_after_delay(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_huge_retry_after_is_waited_not_a_panic() {
        // Found by the status_body fuzz target (`Retry-After: 4141414141414141415`): the
        // jittered wait overflowed `Duration` and panicked before the fix.
        for secs in [4_141_414_141_414_141_415, u64::MAX] {
            let asked = Duration::from_secs(secs);
            assert!(retry_after_delay(asked) >= asked);
        }
    }
}
