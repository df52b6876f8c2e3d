//! [`ListWatch`]: the list and watch calls a reflector makes, decoding as bytes arrive.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrokube_client::{Api, ListOptions, Status};
use futures::{Stream, StreamExt};
use http::Method;
use http_body_util::BodyExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::decode::frame::{Parsed, parse_frame};
use crate::decode::{DecodeError, Decoder, ParallelDecoder, split_frame};

/// Why a list or watch failed; what the reflector reports to its
/// [`WatchErrorHandler`](crate::reflector::WatchErrorHandler).
#[derive(Debug, thiserror::Error)]
pub enum ListWatchError {
    /// The request failed (transport, or a failure `Status` from the server).
    #[error("{0}")]
    Client(#[source] ferrokube_client::Error),
    /// What the server sent could not be decoded.
    #[error("decoding {url}")]
    Decode {
        /// The request that returned it.
        url: String,
        /// What was wrong.
        #[source]
        source: DecodeError,
    },
    /// The watch sent an `ERROR` event.
    #[error("watch error event: {} {}: {}", .0.code, .0.reason, .0.message)]
    WatchStatus(Box<Status>),
    /// The server closed a watch this soon after it was requested, before any event
    /// (client-go's "very short watch"); the reflector backs off before it lists again.
    #[error("very short watch: closed after {0:?} with no event")]
    VeryShortWatch(Duration),
    /// Nothing came from a watch for this long (its timeout and a grace period): the
    /// connection is presumed dead; the reflector backs off and watches again.
    #[error("watch stalled: nothing received for {0:?}")]
    Stalled(Duration),
}

impl ListWatchError {
    /// 410 Gone / `Expired` / "too old resource version": the server no longer has the
    /// resourceVersion asked for (client-go's `isExpiredError`).
    pub fn is_expired(&self) -> bool {
        match self {
            Self::Client(e) => e.is_gone(),
            Self::WatchStatus(s) => s.code == 410 || s.reason == "Expired" || s.reason == "Gone",
            _ => false,
        }
    }

    /// The server has not reached the resourceVersion asked for yet (client-go's
    /// `isTooLargeResourceVersionError`): a status cause `ResourceVersionTooLarge`, or, from
    /// API servers before 1.18.6, a `Timeout` whose cause or message says "Too large resource
    /// version".
    pub fn is_too_large_resource_version(&self) -> bool {
        const MESSAGE: &str = "Too large resource version";
        let Some(status) = self.status() else {
            return false;
        };
        let causes = status
            .details
            .as_ref()
            .map(|d| d.causes.as_slice())
            .unwrap_or_default();
        if causes.iter().any(|c| c.reason == "ResourceVersionTooLarge") {
            return true;
        }
        let timeout =
            status.reason == "Timeout" || (status.reason.is_empty() && status.code == 504);
        timeout && (causes.iter().any(|c| c.message == MESSAGE) || status.message.contains(MESSAGE))
    }

    /// The resourceVersion asked for is expired or too large: the reflector lists the latest
    /// state instead (client-go's `setIsLastSyncResourceVersionUnavailable`).
    pub fn is_resource_version_unavailable(&self) -> bool {
        self.is_expired() || self.is_too_large_resource_version()
    }

    /// 429 TooManyRequests (a refused request or an `ERROR` event): the reflector backs off
    /// and watches again, without listing.
    pub fn is_too_many_requests(&self) -> bool {
        match self {
            Self::Client(e) => e.is_too_many_requests(),
            Self::WatchStatus(s) => {
                s.reason == "TooManyRequests" || (s.reason.is_empty() && s.code == 429)
            }
            _ => false,
        }
    }

    /// The request did not reach the server, or its answer was cut off or late (a transport
    /// failure, a broken body, a client timeout): the same request can be made again.
    pub fn is_transport(&self) -> bool {
        use ferrokube_client::Error as Client;
        matches!(
            self,
            Self::Client(Client::Transport { .. } | Client::Body { .. } | Client::Timeout { .. })
        )
    }

    /// The server refused the request itself (e.g. an unsupported parameter), as opposed
    /// to a transport failure.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Client(e) => e.status(),
            Self::WatchStatus(s) => Some(s),
            _ => None,
        }
    }
}

impl From<ferrokube_client::Error> for ListWatchError {
    fn from(e: ferrokube_client::Error) -> Self {
        Self::Client(e)
    }
}

/// A decoded watch event; objects are already behind an `Arc`.
#[derive(Debug)]
pub enum Event<K> {
    /// An object was created (or, in a streaming list, is part of the initial state).
    Added(Arc<K>),
    /// An object changed.
    Modified(Arc<K>),
    /// An object was deleted (its last state).
    Deleted(Arc<K>),
    /// The collection reached `resource_version`.
    Bookmark {
        /// The bookmark's resourceVersion.
        resource_version: String,
        /// Annotated `k8s.io/initial-events-end`: a streaming list's initial state is complete.
        initial_events_end: bool,
    },
}

#[derive(Deserialize)]
struct BookmarkObject {
    metadata: BookmarkMeta,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BookmarkMeta {
    #[serde(default)]
    resource_version: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// The list and watch calls for one resource type and scope (client-go's `ListerWatcher`).
#[derive(Debug)]
#[doc(alias = "ListerWatcher")]
pub struct ListWatch<K> {
    api: Api<K>,
    decoder: Decoder<K>,
    label_selector: Option<String>,
    field_selector: Option<String>,
    metadata_only: bool,
}

/// `Accept` for metadata-only lists and watches.
const METADATA_LIST: &str =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
const METADATA_WATCH: &str =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

impl<K> Clone for ListWatch<K> {
    fn clone(&self) -> Self {
        Self {
            api: self.api.clone(),
            decoder: self.decoder.clone(),
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            metadata_only: self.metadata_only,
        }
    }
}

impl<K> ListWatch<K>
where
    K: kube::Resource + DeserializeOwned + Send + Sync + 'static,
{
    /// Lists and watches through `api` (its namespace is the scope), decoding with `decoder`.
    pub fn new(api: Api<K>, decoder: Decoder<K>) -> Self {
        Self {
            api,
            decoder,
            label_selector: None,
            field_selector: None,
            metadata_only: false,
        }
    }

    /// Asks the server for `PartialObjectMetadata` only (for `PartialObjectMeta<T>` informers).
    #[must_use]
    pub fn metadata_only(mut self, on: bool) -> Self {
        self.metadata_only = on;
        self
    }

    /// Restricts to objects matching a label selector.
    #[must_use]
    pub fn labels(mut self, selector: Option<String>) -> Self {
        self.label_selector = selector;
        self
    }

    /// Restricts to objects matching a field selector.
    #[must_use]
    pub fn fields(mut self, selector: Option<String>) -> Self {
        self.field_selector = selector;
        self
    }

    fn scoped(&self, mut options: ListOptions) -> ListOptions {
        options.label_selector.clone_from(&self.label_selector);
        options.field_selector.clone_from(&self.field_selector);
        options
    }

    /// One list call (one page when `options.limit` is set), decoded while it streams in (on
    /// the runtime's worker threads when it is large: see [`decode`](crate::decode)).
    pub async fn list(
        &self,
        options: ListOptions,
    ) -> Result<(ListMeta, Vec<Arc<K>>), ListWatchError> {
        let request = self
            .api
            .request(Method::GET)
            .params(self.scoped(options).to_query(false));
        let request = if self.metadata_only {
            request.header(http::header::ACCEPT, METADATA_LIST)
        } else {
            request
        };
        let url = request.url();
        let mut body = request.response().await?.into_inner().into_body();
        let mut decoder = ParallelDecoder::new(self.decoder.clone());
        let decode_error = |source| decode_error(&url, source);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| {
                ListWatchError::Client(ferrokube_client::Error::Body {
                    verb: Method::GET,
                    url: url.clone(),
                    source,
                })
            })?;
            if let Ok(data) = frame.into_data() {
                decoder.feed(&data).await.map_err(decode_error)?;
            }
        }
        decoder.finish().await.map_err(decode_error)
    }

    /// A watch; events are decoded one frame at a time. The stream ends after the first
    /// error, or when the server closes the watch.
    pub async fn watch(
        &self,
        options: ListOptions,
    ) -> Result<impl Stream<Item = Result<Event<K>, ListWatchError>> + Send + use<K>, ListWatchError>
    {
        let request = self
            .api
            .request(Method::GET)
            .params(self.scoped(options).to_query(true));
        let request = if self.metadata_only {
            request.header(http::header::ACCEPT, METADATA_WATCH)
        } else {
            request
        };
        let url = request.url();
        let lines = request.lines().await?;
        let decoder = self.decoder.clone();
        Ok(lines.scan(false, move |ended, line| {
            let event = if *ended {
                None
            } else {
                let event = line
                    .map_err(ListWatchError::Client)
                    .and_then(|line| decode_event(&decoder, &line, &url));
                *ended = event.is_err();
                Some(event)
            };
            std::future::ready(event)
        }))
    }
}

fn decode_event<K: DeserializeOwned>(
    decoder: &Decoder<K>,
    line: &Bytes,
    url: &str,
) -> Result<Event<K>, ListWatchError> {
    match parse_frame(decoder, line) {
        Ok(Parsed::Object(kind, object)) => Ok(object_event(kind.as_bytes(), Arc::new(object))),
        Ok(Parsed::Other(kind, object)) => other_event(kind.as_bytes(), object, url),
        // Read it again step by step, to say exactly what is wrong.
        Err(_) => decode_event_slowly(decoder, line, url),
    }
}

fn decode_event_slowly<K: DeserializeOwned>(
    decoder: &Decoder<K>,
    line: &Bytes,
    url: &str,
) -> Result<Event<K>, ListWatchError> {
    let decode_error = |source| decode_error(url, source);
    let frame = split_frame(line).map_err(decode_error)?;
    match frame.kind {
        b"ADDED" | b"MODIFIED" | b"DELETED" => {
            let what = String::from_utf8_lossy(frame.kind);
            let object = decoder
                .object(frame.object, || format!("the object of a {what} event"))
                .map_err(decode_error)?;
            Ok(object_event(frame.kind, Arc::new(object)))
        }
        other => other_event(other, frame.object, url),
    }
}

/// The event for an `ADDED`, `MODIFIED` or `DELETED` frame.
fn object_event<K>(kind: &[u8], object: Arc<K>) -> Event<K> {
    match kind {
        b"ADDED" => Event::Added(object),
        b"MODIFIED" => Event::Modified(object),
        _ => Event::Deleted(object),
    }
}

/// A `BOOKMARK`, an `ERROR` (returned as the error), or an unknown type.
fn other_event<K>(kind: &[u8], object: &[u8], url: &str) -> Result<Event<K>, ListWatchError> {
    let decode_error = |source| decode_error(url, source);
    let serde_error = |what: &'static str| {
        move |source| {
            decode_error(DecodeError::Object {
                what: format!("the object of a {what} event"),
                kind: what,
                source,
            })
        }
    };
    match kind {
        b"BOOKMARK" => {
            let b: BookmarkObject =
                serde_json::from_slice(object).map_err(serde_error("BOOKMARK"))?;
            Ok(Event::Bookmark {
                initial_events_end: b
                    .metadata
                    .annotations
                    .get(ferrokube_client::watch::INITIAL_EVENTS_END)
                    .is_some_and(|v| v == "true"),
                resource_version: b.metadata.resource_version,
            })
        }
        b"ERROR" => {
            let status: Status = serde_json::from_slice(object).map_err(serde_error("ERROR"))?;
            Err(ListWatchError::WatchStatus(Box::new(status)))
        }
        other => {
            // Quote a bounded start of it: the type comes from the server, of any length.
            let shown = String::from_utf8_lossy(&other[..other.len().min(64)]);
            let more = if other.len() > 64 { "…" } else { "" };
            Err(decode_error(DecodeError::Malformed(format!(
                "unknown watch event type {shown:?}{more}"
            ))))
        }
    }
}

/// What the server sent to `url` could not be decoded.
fn decode_error(url: &str, source: DecodeError) -> ListWatchError {
    ListWatchError::Decode {
        url: url.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn event(line: &str) -> Result<Event<ConfigMap>, ListWatchError> {
        let decoder = Decoder::new(true, None);
        decode_event(&decoder, &Bytes::copy_from_slice(line.as_bytes()), "/watch")
    }

    fn name(event: Result<Event<ConfigMap>, ListWatchError>) -> (String, String) {
        match event.unwrap() {
            Event::Added(o) => ("ADDED".into(), o.metadata.name.clone().unwrap()),
            Event::Modified(o) => ("MODIFIED".into(), o.metadata.name.clone().unwrap()),
            Event::Deleted(o) => ("DELETED".into(), o.metadata.name.clone().unwrap()),
            Event::Bookmark { .. } => ("BOOKMARK".into(), String::new()),
        }
    }

    #[test]
    fn object_events_in_either_member_order() {
        let added = r#"{"type":"ADDED","object":{"metadata":{"name":"a","managedFields":[{"manager":"m"}]}}}"#;
        match event(added).unwrap() {
            Event::Added(o) => assert!(o.metadata.managed_fields.is_none()),
            other => panic!("{other:?}"),
        }
        let reversed =
            r#"{"object":{"metadata":{"name":"b","managedFields":[]}},"type":"DELETED"}"#;
        assert_eq!(name(event(reversed)), ("DELETED".into(), "b".into()));
        let modified = r#"{"type":"MODIFIED","object":{"metadata":{"name":"c"}}}"#;
        assert_eq!(name(event(modified)), ("MODIFIED".into(), "c".into()));
    }

    #[test]
    fn bookmarks_and_errors() {
        let end = r#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9","annotations":{"k8s.io/initial-events-end":"true"}}}}"#;
        match event(end).unwrap() {
            Event::Bookmark {
                resource_version,
                initial_events_end,
            } => assert_eq!((resource_version.as_str(), initial_events_end), ("9", true)),
            other => panic!("{other:?}"),
        }
        let gone = r#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}"#;
        assert!(event(gone).unwrap_err().is_expired());
    }

    fn status(code: u16, reason: &str, message: &str, causes: &[(&str, &str)]) -> ListWatchError {
        let causes: Vec<_> = causes
            .iter()
            .map(|(reason, message)| serde_json::json!({"reason": reason, "message": message}))
            .collect();
        let status = serde_json::json!({
            "kind": "Status", "code": code, "reason": reason, "message": message,
            "details": {"causes": causes},
        });
        ListWatchError::WatchStatus(Box::new(serde_json::from_value(status).unwrap()))
    }

    #[test]
    fn unavailable_resource_versions() {
        let too_large = [
            status(504, "Timeout", "", &[("ResourceVersionTooLarge", "")]),
            status(500, "InternalError", "", &[("ResourceVersionTooLarge", "")]),
            status(504, "Timeout", "", &[("", "Too large resource version")]),
            status(504, "", "", &[("", "Too large resource version")]),
            status(
                504,
                "Timeout",
                "Too large resource version: 9, current: 5",
                &[],
            ),
        ];
        for e in &too_large {
            assert!(e.is_too_large_resource_version(), "{e:?}");
            assert!(
                e.is_resource_version_unavailable() && !e.is_expired(),
                "{e:?}"
            );
        }
        let not = [
            status(504, "Timeout", "request did not complete", &[]),
            status(500, "InternalError", "Too large resource version", &[]),
            status(429, "TooManyRequests", "", &[]),
        ];
        for e in &not {
            assert!(!e.is_resource_version_unavailable(), "{e:?}");
        }
        let gone = status(410, "Expired", "too old resource version", &[]);
        assert!(gone.is_resource_version_unavailable() && !gone.is_too_large_resource_version());
        assert!(status(429, "TooManyRequests", "", &[]).is_too_many_requests());
        assert!(status(429, "", "", &[]).is_too_many_requests());
        assert!(!status(500, "InternalError", "", &[]).is_too_many_requests());
        assert!(!gone.is_transport());
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        let bad_object = r#"{"type":"ADDED","object":{"metadata":{"name":5}}}"#;
        let err = format!("{:?}", event(bad_object).unwrap_err());
        assert!(err.contains("the object of a ADDED event"), "{err}");
        // Found by the watch_stream fuzz target: the whole type was quoted (1 KiB there,
        // any length from a server); failed before the fix.
        let long = format!(r#"{{"type":"{}","object":{{}}}}"#, "X".repeat(100_000));
        let err = event(&long).unwrap_err();
        let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(
            text.contains("unknown watch event type \"XXXX") && text.ends_with("…"),
            "{text}"
        );
        assert!(text.len() < 200, "{} bytes", text.len());
        let unknown = r#"{"type":"SURPRISE","object":{}}"#;
        assert!(
            event(unknown)
                .unwrap_err()
                .to_string()
                .contains("decoding /watch")
        );
        for garbage in [
            "<html>",
            r#"{"type":"ADDED"}"#,
            r#"{"type":"ADDED","object":{"#,
        ] {
            assert!(
                matches!(event(garbage), Err(ListWatchError::Decode { .. })),
                "{garbage}"
            );
        }
    }
}
