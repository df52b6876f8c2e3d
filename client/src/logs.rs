//! Pod logs: [`LogOptions`] with every field of `PodLogOptions`, and
//! [`Api::logs`] / [`Api::log_stream`] on the `pods/log` subresource.
//!
//! ```no_run
//! use ferrokube_client::{Client, LogOptions};
//! use futures::TryStreamExt;
//! use k8s_openapi::api::core::v1::Pod;
//!
//! # async fn demo(client: Client) -> Result<(), ferrokube_client::Error> {
//! let pods = client.namespaced::<Pod>("default");
//! let options = LogOptions::default().container("app").tail_lines(10).follow(true);
//! let mut lines = std::pin::pin!(pods.log_stream("web-0", &options).await?);
//! while let Some(line) = lines.try_next().await? {
//!     println!("{}", String::from_utf8_lossy(&line));
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http::Method;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::Api;
use crate::error::Result;
use crate::request::Request;

/// A timeout that never elapses: a followed log lasts as long as the container runs.
const FOLLOW_TIMEOUT: Duration = Duration::MAX;

/// Which of a container's output streams to return (`PodLogOptions.stream`; needs the
/// `PodLogsQuerySplitStreams` feature gate on the server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output and standard error, interleaved (the default).
    All,
    /// Standard output only.
    Stdout,
    /// Standard error only.
    Stderr,
}

impl LogStream {
    /// The value the API expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "All",
            Self::Stdout => "Stdout",
            Self::Stderr => "Stderr",
        }
    }
}

/// `corev1.PodLogOptions`: which container's log, from when, how much, and whether to follow.
/// The server validates combinations (e.g. only one of `since_seconds` and `since_time`).
#[derive(Clone, Debug, Default, PartialEq)]
#[doc(alias = "PodLogOptions")]
#[must_use]
pub struct LogOptions {
    /// The container; may be omitted when the pod has a single container.
    pub container: Option<String>,
    /// Keep streaming as the container writes, until it stops or the connection closes.
    pub follow: bool,
    /// The log of the previous (terminated) instance of the container.
    pub previous: bool,
    /// Only lines from this many seconds ago (at least 1).
    pub since_seconds: Option<i64>,
    /// Only lines from this time on (sent as RFC 3339, whole seconds).
    pub since_time: Option<Time>,
    /// Prefix every line with an RFC 3339 timestamp.
    pub timestamps: bool,
    /// Only the last this many lines.
    pub tail_lines: Option<i64>,
    /// Stop after this many bytes (at least 1; the last line may be cut).
    pub limit_bytes: Option<i64>,
    /// Do not verify the kubelet's serving certificate (the logs may come from anyone).
    pub insecure_skip_tls_verify_backend: bool,
    /// Which output stream to return.
    pub stream: Option<LogStream>,
}

impl LogOptions {
    /// Sets the container.
    pub fn container(mut self, container: impl Into<String>) -> Self {
        self.container = Some(container.into());
        self
    }

    /// Follows the log.
    pub fn follow(mut self, on: bool) -> Self {
        self.follow = on;
        self
    }

    /// Reads the previous instance's log.
    pub fn previous(mut self, on: bool) -> Self {
        self.previous = on;
        self
    }

    /// Only lines newer than `age`, rounded up to whole seconds (as `kubectl logs --since`).
    pub fn since(mut self, age: Duration) -> Self {
        let whole = age.as_secs() + u64::from(age.subsec_nanos() > 0);
        self.since_seconds = Some(i64::try_from(whole).unwrap_or(i64::MAX));
        self
    }

    /// Only lines from `time` on.
    pub fn since_time(mut self, time: impl Into<Time>) -> Self {
        self.since_time = Some(time.into());
        self
    }

    /// Prefixes lines with timestamps.
    pub fn timestamps(mut self, on: bool) -> Self {
        self.timestamps = on;
        self
    }

    /// Only the last `lines` lines.
    pub fn tail_lines(mut self, lines: i64) -> Self {
        self.tail_lines = Some(lines);
        self
    }

    /// At most `bytes` bytes.
    pub fn limit_bytes(mut self, bytes: i64) -> Self {
        self.limit_bytes = Some(bytes);
        self
    }

    /// Skips verification of the kubelet's certificate.
    pub fn insecure_skip_tls_verify_backend(mut self, on: bool) -> Self {
        self.insecure_skip_tls_verify_backend = on;
        self
    }

    /// Selects an output stream.
    pub fn stream(mut self, stream: LogStream) -> Self {
        self.stream = Some(stream);
        self
    }

    /// The query parameters, with the API's names; unset and `false` fields are left out.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(c) = &self.container {
            q.push(("container", c.clone()));
        }
        let flag = |q: &mut Vec<_>, name, on: bool| {
            if on {
                q.push((name, "true".to_owned()));
            }
        };
        flag(&mut q, "follow", self.follow);
        flag(&mut q, "previous", self.previous);
        if let Some(s) = self.since_seconds {
            q.push(("sinceSeconds", s.to_string()));
        }
        if let Some(t) = &self.since_time {
            q.push(("sinceTime", rfc3339_seconds(t.0)));
        }
        flag(&mut q, "timestamps", self.timestamps);
        if let Some(n) = self.tail_lines {
            q.push(("tailLines", n.to_string()));
        }
        if let Some(n) = self.limit_bytes {
            q.push(("limitBytes", n.to_string()));
        }
        flag(
            &mut q,
            "insecureSkipTLSVerifyBackend",
            self.insecure_skip_tls_verify_backend,
        );
        if let Some(s) = self.stream {
            q.push(("stream", s.as_str().to_owned()));
        }
        q
    }
}

/// `metav1.Time`'s query form: RFC 3339 in UTC, truncated to whole seconds.
fn rfc3339_seconds(time: Timestamp) -> String {
    Timestamp::from_second(time.as_second()).map_or_else(|_| time.to_string(), |t| t.to_string())
}

// === impl Api<Pod> ===

impl Api<Pod> {
    fn log_request(&self, name: &str, options: &LogOptions) -> Request {
        let request = self
            .object_request(Method::GET, name)
            .subresource("log")
            .params(options.to_query());
        if options.follow {
            request.timeout(FOLLOW_TIMEOUT)
        } else {
            request
        }
    }

    /// A container's log, read to its end (with `follow`, until the server closes it).
    #[doc(alias = "GetLogs")]
    pub async fn logs(&self, name: &str, options: &LogOptions) -> Result<Bytes> {
        self.log_request(name, options).bytes().await
    }

    /// A container's log, line by line as the server sends it (without the `\n`; blank lines
    /// are skipped). With `follow`, the stream lasts until the server closes it and no
    /// client timeout applies.
    pub async fn log_stream(
        &self,
        name: &str,
        options: &LogOptions,
    ) -> Result<impl Stream<Item = Result<Bytes>> + Send + use<>> {
        self.log_request(name, options).lines().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_uses_the_api_name() {
        let since: Timestamp = "2024-06-01T12:30:45.75Z".parse().unwrap();
        let q = LogOptions::default()
            .container("app")
            .follow(true)
            .previous(true)
            .since(Duration::from_millis(1500))
            .since_time(since)
            .timestamps(true)
            .tail_lines(10)
            .limit_bytes(4096)
            .insecure_skip_tls_verify_backend(true)
            .stream(LogStream::Stderr)
            .to_query();
        let expected = [
            ("container", "app"),
            ("follow", "true"),
            ("previous", "true"),
            ("sinceSeconds", "2"),
            ("sinceTime", "2024-06-01T12:30:45Z"),
            ("timestamps", "true"),
            ("tailLines", "10"),
            ("limitBytes", "4096"),
            ("insecureSkipTLSVerifyBackend", "true"),
            ("stream", "Stderr"),
        ];
        let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(q, expected);
    }

    #[test]
    fn defaults_send_nothing() {
        assert!(LogOptions::default().to_query().is_empty());
        let off = LogOptions::default()
            .follow(false)
            .timestamps(false)
            .to_query();
        assert!(off.is_empty(), "{off:?}");
        let whole = LogOptions::default()
            .since(Duration::from_secs(60))
            .to_query();
        assert_eq!(whole, [("sinceSeconds", "60".to_owned())]);
    }

    #[tokio::test]
    async fn url_is_the_log_subresource() {
        let config =
            crate::Config::from_kube(kube::Config::new("http://127.0.0.1:1".parse().unwrap()));
        let client = config.build().unwrap();
        let pods = client.namespaced::<Pod>("ns");
        let options = LogOptions::default().container("c").tail_lines(5);
        let url = pods.log_request("p", &options).url();
        assert_eq!(
            url,
            "/api/v1/namespaces/ns/pods/p/log?container=c&tailLines=5"
        );
    }
}
