//! What the fuzz targets share: a [`ferrokube_client::Client`] whose "server" is a tower
//! service answering every request with the fuzzer's bytes, delivered in fuzzer-chosen chunks,
//! and a paused-clock runtime to drive it (so `Retry-After` sleeps cost nothing).

use std::convert::Infallible;
use std::sync::{Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use http_body_util::StreamBody;

/// A canned answer: status, headers and a body split into chunks as it would arrive.
#[derive(Clone, Debug)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The body, chunk by chunk.
    pub chunks: Vec<Bytes>,
}

impl Answer {
    /// A 200 answer whose body is `data` cut into chunks: `seed` picks the chunk sizes (1 to
    /// 64 bytes, cycling), so frames and list items straddle chunk boundaries everywhere.
    pub fn ok(seed: u8, data: &[u8]) -> Self {
        Self {
            status: 200,
            headers: vec![(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )],
            chunks: chunks(seed, data),
        }
    }
}

/// `data` cut into chunks whose sizes cycle through a sequence derived from `seed`; seed 0
/// keeps the body in one chunk.
pub fn chunks(seed: u8, data: &[u8]) -> Vec<Bytes> {
    if seed == 0 {
        return vec![Bytes::copy_from_slice(data)];
    }
    let mut out = Vec::new();
    let mut rest = data;
    let mut size = usize::from(seed % 64) + 1;
    while !rest.is_empty() {
        let n = size.min(rest.len());
        out.push(Bytes::copy_from_slice(&rest[..n]));
        rest = &rest[n..];
        size = (size * 7 + 3) % 64 + 1;
    }
    out
}

/// The answer the next requests get.
static ANSWER: Mutex<Option<Answer>> = Mutex::new(None);

/// A client whose requests get `answer` (until the next call). The client is made once, in
/// the runtime of the first call (kube's client spawns its buffer task there), and reused: a
/// target uses one runtime.
pub fn client(answer: Answer) -> ferrokube_client::Client {
    static CLIENT: OnceLock<ferrokube_client::Client> = OnceLock::new();
    *ANSWER.lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
    CLIENT
        .get_or_init(|| {
            let service = tower::service_fn(|_request: http::Request<kube::client::Body>| {
                let answer = ANSWER
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
                    .expect("an answer is set before a request");
                async move {
                    let frames = answer
                        .chunks
                        .into_iter()
                        .map(|chunk| Ok::<_, Infallible>(http_body::Frame::data(chunk)));
                    let mut response =
                        http::Response::new(StreamBody::new(futures::stream::iter(frames)));
                    *response.status_mut() =
                        http::StatusCode::from_u16(answer.status).unwrap_or(http::StatusCode::OK);
                    response.headers_mut().extend(answer.headers);
                    Ok::<_, Infallible>(response)
                }
            });
            ferrokube_client::Client::from_kube(kube::Client::new(service, "default"))
        })
        .clone()
}

/// A single-threaded runtime with a paused clock (timers fire at once), shared by the runs of
/// a target.
pub fn paused_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a tokio runtime")
    })
}

/// A runtime with two workers, so large list bodies are decoded on several tasks as in a
/// real controller.
pub fn threaded_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// Panics unless an error reads as a sentence: its message not empty, and the message with its
/// causes at most `max` bytes (errors about large input quote a bounded part of it).
pub fn assert_clear(error: &dyn std::error::Error, max: usize) {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    assert!(
        !error.to_string().trim().is_empty(),
        "an empty error message"
    );
    assert!(
        text.len() <= max,
        "an error message of {} bytes: {}",
        text.len(),
        &text[..text.floor_char_boundary(300)]
    );
}
