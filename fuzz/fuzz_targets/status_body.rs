//! Failure answers: any status code from 400 to 599, an optional `Retry-After` header of any
//! text and any body, answered to a request through the client. The request fails with
//! `Error::Api` carrying a `Status` whose code is set, every `is_*` helper and `retry_after`
//! answer without panicking, and the message is a sentence naming the request.
#![no_main]

use ferrokube_client::Error;
use ferrokube_fuzz::{Answer, client, paused_runtime};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, header_len, rest @ ..] = data else {
        return;
    };
    let code = 400 + u16::from_le_bytes([*a, *b]) % 200;
    let header_len = usize::from(*header_len).min(rest.len());
    let (header, body) = rest.split_at(header_len);
    let mut headers = Vec::new();
    if !header.is_empty()
        && let Ok(value) = http::HeaderValue::from_bytes(header)
    {
        headers.push((http::header::RETRY_AFTER, value));
    }
    let answer = Answer {
        status: code,
        headers,
        chunks: ferrokube_fuzz::chunks(*b, body),
    };
    paused_runtime().block_on(async {
        let client = client(answer);
        let err = client
            .get()
            .abs_path("/api/v1/namespaces/default/pods/x")
            .bytes()
            .await
            .expect_err("a failure status is an error");
        let Error::Api(api) = &err else {
            panic!("a failure answer is Error::Api, got {err:?}");
        };
        assert_ne!(api.status.code, 0, "the status code is set");
        let _ = (
            err.is_not_found(),
            err.is_conflict(),
            err.is_already_exists(),
            err.is_gone(),
            err.is_forbidden(),
            err.is_unauthorized(),
            err.is_invalid(),
            err.is_too_many_requests(),
            err.is_timeout(),
            err.retry_after(),
        );
        let text = err.to_string();
        assert!(
            text.starts_with("GET /api/v1/namespaces/default/pods/x: "),
            "{text}"
        );
    });
});
