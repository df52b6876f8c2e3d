//! Property tests of how failure answers become errors: a `Status` body of any content, or a
//! body that is not a `Status` (an HTML page from a proxy, plain text, nothing), with any
//! failure code, is an `Error::Api` carrying what the server said — and the `is_*` helpers and
//! `retry_after` answer as client-go's do.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use ferrokube_client::{Client, Error, Status};
use http_body_util::Full;
use proptest::prelude::*;
use serde_json::json;

/// A client whose every request is answered with `code` and `body`.
fn client(code: u16, body: Vec<u8>) -> Client {
    let body = Bytes::from(body);
    let service = tower::service_fn(move |_request: http::Request<kube::client::Body>| {
        let mut response = http::Response::new(Full::new(body.clone()));
        *response.status_mut() = http::StatusCode::from_u16(code).unwrap();
        async move { Ok::<_, Infallible>(response) }
    });
    Client::from_kube(kube::Client::new(service, "default"))
}

fn fail(code: u16, body: Vec<u8>) -> Error {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            client(code, body)
                .get()
                .abs_path("/api/v1/namespaces/ns/pods/p")
                .bytes()
                .await
        })
        .expect_err("a failure code is an error")
}

const REASONS: [&str; 11] = [
    "",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "Expired",
    "Forbidden",
    "Unauthorized",
    "Invalid",
    "TooManyRequests",
    "Timeout",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A `Status` body is kept as the server sent it (its code, or the HTTP code when it has
    /// none); the helpers follow its reason, or its code when it has no reason.
    #[test]
    fn status_bodies_become_api_errors(
        http_code in 400u16..600,
        body_code in prop_oneof![Just(0u16), 400u16..600],
        reason in prop::sample::select(REASONS.as_slice()),
        message in any::<String>(),
        retry_after_seconds in prop::option::of(0u32..100),
    ) {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": message, "reason": reason, "code": body_code,
        });
        if let Some(secs) = retry_after_seconds {
            status["details"] = json!({"retryAfterSeconds": secs});
        }
        let err = fail(http_code, serde_json::to_vec(&status).unwrap());
        let Error::Api(api) = &err else {
            return Err(TestCaseError::fail(format!("not an API error: {err:?}")));
        };
        let code = if body_code == 0 && reason.is_empty() {
            // Neither a code nor a reason: not taken as a Status; the body is the message.
            prop_assert_eq!(api.status.code, http_code);
            return Ok(());
        } else if body_code == 0 { http_code } else { body_code };
        prop_assert_eq!(api.status.code, code);
        prop_assert_eq!(&api.status.reason, reason);
        prop_assert_eq!(&api.status.message, &message);
        let by = |r: &str, c: u16| reason == r || (reason.is_empty() && code == c);
        prop_assert_eq!(err.is_not_found(), by("NotFound", 404));
        prop_assert_eq!(err.is_conflict(), by("Conflict", 409));
        prop_assert_eq!(err.is_already_exists(), by("AlreadyExists", 409));
        prop_assert_eq!(err.is_gone(), by("Gone", 410) || by("Expired", 410));
        prop_assert_eq!(err.is_forbidden(), by("Forbidden", 403));
        prop_assert_eq!(err.is_unauthorized(), by("Unauthorized", 401));
        prop_assert_eq!(err.is_invalid(), by("Invalid", 422));
        prop_assert_eq!(err.is_too_many_requests(), by("TooManyRequests", 429));
        prop_assert_eq!(err.is_timeout(), by("Timeout", 504));
        let expected = retry_after_seconds
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s.into()));
        prop_assert_eq!(err.retry_after(), expected);
        let text = err.to_string();
        prop_assert!(text.starts_with("GET /api/v1/namespaces/ns/pods/p: "), "{}", text);
    }

    /// A body that is not a `Status` becomes one: the HTTP code, its reason without spaces,
    /// and the start of the body (at most 512 bytes) as the message.
    #[test]
    fn other_bodies_become_synthesized_statuses(
        http_code in prop::sample::select(vec![400u16, 401, 403, 404, 409, 410, 422, 500, 502, 503, 504, 599]),
        body in prop_oneof![
            any::<Vec<u8>>(),
            ".{0,2000}".prop_map(String::into_bytes),
            Just(b"<html><body><h1>502 Bad Gateway</h1></body></html>".to_vec()),
            Just(b"{\"kind\":\"Status\"}".to_vec()),
            Just(Vec::new()),
        ],
    ) {
        let err = fail(http_code, body.clone());
        let status: &Status = err.status().expect("an API error");
        prop_assert_eq!(status.code, http_code);
        let shown = String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_owned();
        if !shown.is_empty() && serde_json::from_slice::<Status>(&body).is_err() {
            prop_assert_eq!(&status.message, &shown);
        }
        prop_assert!(!status.reason.contains(' '));
        prop_assert!(!status.message.is_empty());
        prop_assert!(status.message.len() <= 512 * 3, "{}", status.message.len());
    }
}
