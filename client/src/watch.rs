//! Line framing of streamed bodies and decoding of watch frames.

use bytes::{Bytes, BytesMut};
use futures::Stream;
use http::Method;
use http_body_util::BodyExt;
use kube::client::Body;
use serde::de::DeserializeOwned;

pub use kube::core::WatchEvent;
pub use kube::core::watch::{Bookmark, BookmarkMeta};

use crate::error::{Error, Result};

/// The bookmark annotation that ends the initial events of a streaming list.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

struct LineState {
    body: Body,
    buf: BytesMut,
    scanned: usize,
    done: bool,
    verb: Method,
    url: String,
}

/// Splits a streamed body at `\n`; the final line is yielded even without one. A body that
/// fails mid-stream yields one [`Error::Body`] and ends.
pub(crate) fn lines(
    body: Body,
    verb: Method,
    url: String,
) -> impl Stream<Item = Result<Bytes>> + Send {
    let state = LineState {
        body,
        buf: BytesMut::new(),
        scanned: 0,
        done: false,
        verb,
        url,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &st.buf[st.scanned..]) {
                let mut line = st.buf.split_to(st.scanned + i + 1);
                st.scanned = 0;
                line.truncate(line.len() - 1);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some((Ok(line.freeze()), st));
            }
            st.scanned = st.buf.len();
            if st.done {
                if st.buf.iter().all(u8::is_ascii_whitespace) {
                    return None;
                }
                st.scanned = 0;
                return Some((Ok(st.buf.split().freeze()), st));
            }
            match st.body.frame().await {
                None => st.done = true,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        st.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(source)) => {
                    st.done = true;
                    st.buf.clear();
                    st.scanned = 0;
                    let err = Error::Body {
                        verb: st.verb.clone(),
                        url: st.url.clone(),
                        source,
                    };
                    return Some((Err(err), st));
                }
            }
        }
    })
}

/// Decodes each line as a watch event. The stream ends after the first error (a broken
/// connection or a frame that is not a watch event), as client-go's `StreamWatcher` does.
pub(crate) fn decode_events<T, S>(
    lines: S,
    verb: Method,
    url: String,
) -> impl Stream<Item = Result<WatchEvent<T>>> + Send
where
    T: DeserializeOwned + Send + 'static,
    S: Stream<Item = Result<Bytes>> + Send,
{
    use futures::StreamExt;
    lines.scan(false, move |ended, line| {
        if *ended {
            return std::future::ready(None);
        }
        let event = line.and_then(|line| {
            serde_json::from_slice::<WatchEvent<T>>(&line).map_err(|source| Error::Decode {
                verb: verb.clone(),
                url: url.clone(),
                what: "watch event",
                source,
            })
        });
        *ended = event.is_err();
        std::future::ready(Some(event))
    })
}

/// Whether a bookmark ends the initial events of a streaming list.
pub fn is_initial_events_end(bookmark: &Bookmark) -> bool {
    bookmark
        .metadata
        .annotations
        .get(INITIAL_EVENTS_END)
        .is_some_and(|v| v == "true")
}
