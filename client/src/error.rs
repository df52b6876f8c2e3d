//! The client's error type: API failures carry the server's `Status`.

use std::time::Duration;

pub use kube::core::Status;

use crate::config::ConfigError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server answered with a failure `Status`.
    #[error("{0}")]
    Api(Box<ApiError>),

    /// The request did not get a response: connection refused, TLS failure, auth plugin error…
    #[error("{verb} {url}: request failed")]
    Transport {
        /// HTTP method.
        verb: http::Method,
        /// Request path and query.
        url: String,
        /// What kube's transport reported.
        #[source]
        source: kube::Error,
    },

    /// The response body could not be read to its end (connection dropped mid-body).
    #[error("{verb} {url}: reading the response body")]
    Body {
        /// HTTP method.
        verb: http::Method,
        /// Request path and query.
        url: String,
        /// What the transport reported.
        #[source]
        source: kube::Error,
    },

    /// The response was not the JSON that was expected.
    #[error("{verb} {url}: decoding a {what}")]
    Decode {
        /// HTTP method.
        verb: http::Method,
        /// Request path and query.
        url: String,
        /// The type being decoded.
        what: &'static str,
        /// Where serde stopped.
        #[source]
        source: serde_json::Error,
    },

    /// No response within the configured timeout.
    #[error("{verb} {url}: no response within {after:?}")]
    Timeout {
        /// HTTP method.
        verb: http::Method,
        /// Request path and query.
        url: String,
        /// The timeout that elapsed.
        after: Duration,
    },

    /// The client configuration could not be loaded or used.
    #[error("client configuration")]
    Config(#[source] ConfigError),

    /// The request could not be built from what the caller gave.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// A `Result` with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure `Status` from the API server, with the request it answered.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP method of the request.
    pub verb: http::Method,
    /// Path and query of the request.
    pub url: String,
    /// The server's `Status` (code, reason, message, details).
    pub status: Status,
    /// The delay the server asked for with a `Retry-After` header.
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.status;
        write!(f, "{} {}: {} {}", self.verb, self.url, s.code, s.reason)?;
        if !s.message.is_empty() {
            write!(f, ": {}", s.message)?;
        }
        Ok(())
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

// === impl Error ===

impl Error {
    /// The server's `Status`, if the server answered with a failure.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Api(e) => Some(&e.status),
            _ => None,
        }
    }

    /// client-go's `reasonAndCodeForError` check: the reason matches, or the server gave no
    /// reason and the code matches.
    fn has_reason(&self, reason: &str, code: u16) -> bool {
        self.status()
            .is_some_and(|s| s.reason == reason || (s.reason.is_empty() && s.code == code))
    }

    /// 404 NotFound.
    pub fn is_not_found(&self) -> bool {
        self.has_reason("NotFound", 404)
    }

    /// 409 AlreadyExists (a create of an existing name).
    pub fn is_already_exists(&self) -> bool {
        self.has_reason("AlreadyExists", 409)
    }

    /// 409 Conflict (a stale resourceVersion on update).
    pub fn is_conflict(&self) -> bool {
        self.has_reason("Conflict", 409)
    }

    /// 410 Gone or `Expired`: the resourceVersion is too old; relist.
    pub fn is_gone(&self) -> bool {
        self.has_reason("Gone", 410) || self.has_reason("Expired", 410)
    }

    /// 403 Forbidden.
    pub fn is_forbidden(&self) -> bool {
        self.has_reason("Forbidden", 403)
    }

    /// 401 Unauthorized (missing or expired credentials).
    pub fn is_unauthorized(&self) -> bool {
        self.has_reason("Unauthorized", 401)
    }

    /// 422 Invalid: the object failed validation.
    pub fn is_invalid(&self) -> bool {
        self.has_reason("Invalid", 422)
    }

    /// 429 TooManyRequests.
    pub fn is_too_many_requests(&self) -> bool {
        self.has_reason("TooManyRequests", 429)
    }

    /// The server timed out (`Timeout`, 504) or the client's own timeout elapsed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. }) || self.has_reason("Timeout", 504)
    }

    /// The delay the server suggested before retrying (`Retry-After` header or
    /// `details.retryAfterSeconds`), as client-go's `SuggestsClientDelay`.
    pub fn retry_after(&self) -> Option<Duration> {
        let Self::Api(e) = self else { return None };
        e.retry_after.or_else(|| {
            let secs = e.status.details.as_ref()?.retry_after_seconds;
            (secs > 0).then(|| Duration::from_secs(u64::from(secs)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str) -> Error {
        let mut status = Status::failure("boom", reason);
        status.code = code;
        Error::Api(Box::new(ApiError {
            verb: http::Method::GET,
            url: "/api/v1/pods".into(),
            status,
            retry_after: None,
        }))
    }

    #[test]
    fn reasons_and_codes() {
        assert!(api(404, "NotFound").is_not_found());
        assert!(api(404, "").is_not_found());
        assert!(!api(404, "Other").is_not_found());
        assert!(api(409, "AlreadyExists").is_already_exists());
        assert!(!api(409, "AlreadyExists").is_conflict());
        assert!(api(409, "Conflict").is_conflict());
        assert!(api(410, "Expired").is_gone());
        assert!(api(410, "").is_gone());
        assert!(api(403, "Forbidden").is_forbidden());
        assert!(api(401, "Unauthorized").is_unauthorized());
        assert!(api(422, "Invalid").is_invalid());
        assert!(api(429, "TooManyRequests").is_too_many_requests());
        assert!(api(504, "Timeout").is_timeout());
    }

    #[test]
    fn message_names_request_and_status() {
        let text = api(404, "NotFound").to_string();
        assert_eq!(text, "GET /api/v1/pods: 404 NotFound: boom");
    }
}
