//! Removing `metadata.managedFields` from an object's JSON bytes before it is decoded, so the
//! (large) field-ownership tree is never built.

use std::ops::Range;

use crate::json::Scanner;

/// The bytes of `object` without `metadata.managedFields`, or `None` when it has none (or is
/// not a JSON object: the decoder then reports the real error).
pub fn strip_managed_fields(object: &[u8]) -> Option<Vec<u8>> {
    let span = managed_fields_span(object)?;
    let mut out = Vec::with_capacity(object.len() - span.len());
    out.extend_from_slice(&object[..span.start]);
    out.extend_from_slice(&object[span.end..]);
    Some(out)
}

/// The byte range to cut: the member `"managedFields": …` of the top-level `metadata`
/// object, with one adjoining comma.
fn managed_fields_span(b: &[u8]) -> Option<Range<usize>> {
    let mut s = Scanner::new(b);
    let metadata = s.find_member(b"metadata")?;
    let mut s = Scanner::at(b, metadata);
    s.find_member_span(b"managedFields")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn strip(v: &Value) -> Value {
        let bytes = serde_json::to_vec(v).unwrap();
        let out = strip_managed_fields(&bytes).unwrap_or(bytes);
        serde_json::from_slice(&out).unwrap()
    }

    fn mf() -> Value {
        json!([{"manager": "m", "fieldsV1": {"f:data": {"f:a{": {}, "f:]\"x": {}}}, "operation": "Apply"}])
    }

    #[test]
    fn removes_managed_fields_anywhere_in_metadata() {
        let cases = [
            json!({"kind": "ConfigMap", "metadata": {"name": "a", "managedFields": mf(), "uid": "u"}, "data": {"k": "v"}}),
            json!({"metadata": {"managedFields": mf(), "name": "a"}, "data": {"k": "v"}}),
            json!({"data": {"managedFields": "kept"}, "metadata": {"name": "a", "managedFields": mf()}}),
            json!({"metadata": {"managedFields": mf()}}),
        ];
        for case in cases {
            let mut expected = case.clone();
            expected["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("managedFields");
            assert_eq!(strip(&case), expected, "{case}");
        }
    }

    #[test]
    fn leaves_other_fields_alone() {
        let v = json!({"metadata": {"name": "a\"b\\", "labels": {"managedFields": "x"}}, "spec": [1, 2.5, null, true]});
        let bytes = serde_json::to_vec(&v).unwrap();
        assert!(strip_managed_fields(&bytes).is_none());
    }

    #[test]
    fn whitespace_is_tolerated() {
        let text =
            br#"{ "metadata" : { "name" : "a" , "managedFields" : [ { "x" : 1 } ] } , "b" : 2 }"#;
        let out = strip_managed_fields(text).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, json!({"metadata": {"name": "a"}, "b": 2}));
    }

    #[test]
    fn garbage_is_left_for_the_decoder() {
        for bad in [
            &b""[..],
            b"[1,2]",
            b"{\"metadata\":",
            b"{\"metadata\":{\"managedFields\":[",
            b"nul",
        ] {
            assert!(strip_managed_fields(bad).is_none());
        }
    }
}
