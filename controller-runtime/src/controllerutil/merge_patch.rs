//! The RFC 7386 JSON merge patch between two documents (controller-runtime's
//! `client.MergeFrom`, without its optimistic lock).

use serde_json::{Map, Value};

/// The [RFC 7386](https://www.rfc-editor.org/rfc/rfc7386) JSON merge patch that turns
/// `before` into `after`, or `None` when there is nothing to change.
///
/// Objects are compared key by key, recursively: a changed or added key carries its new
/// value, a removed key is `null`, an unchanged key is left out. Anything else — arrays
/// included — is replaced whole when it differs. A key holding `null` counts as absent (a
/// merge patch cannot set `null`), so `{"a": null}` and `{}` are equal.
///
/// ```
/// use ferrokube_runtime::controllerutil::merge_patch;
/// use serde_json::json;
///
/// let before = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}, "data": {"x": "1"}});
/// let after = json!({"metadata": {"labels": {"app": "web", "team": "a"}}, "data": {"x": "1"}});
/// assert_eq!(
///     merge_patch(&before, &after),
///     Some(json!({"metadata": {"labels": {"team": "a", "tier": null}}}))
/// );
/// assert_eq!(merge_patch(&after, &after), None);
/// ```
pub fn merge_patch(before: &Value, after: &Value) -> Option<Value> {
    match (before, after) {
        (Value::Object(before), Value::Object(after)) => {
            diff_objects(before, after).map(Value::Object)
        }
        _ if before == after => None,
        _ => Some(after.clone()),
    }
}

fn diff_objects(
    before: &Map<String, Value>,
    after: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    let mut patch = Map::new();
    for (key, new) in after {
        let old = before.get(key).filter(|v| !v.is_null());
        match (old, new) {
            (None, Value::Null) => {}
            (Some(_), Value::Null) => {
                patch.insert(key.clone(), Value::Null);
            }
            (None, new) => {
                patch.insert(key.clone(), new.clone());
            }
            (Some(old), new) => {
                if let Some(change) = merge_patch(old, new) {
                    patch.insert(key.clone(), change);
                }
            }
        }
    }
    for (key, old) in before {
        if !old.is_null() && !after.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    (!patch.is_empty()).then_some(patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7386's MergePatch, to check that a diff turns `before` into `after`.
    fn apply(target: &Value, patch: &Value) -> Value {
        let Value::Object(patch) = patch else {
            return patch.clone();
        };
        let mut target = match target {
            Value::Object(t) => t.clone(),
            _ => Map::new(),
        };
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                let merged = apply(target.get(key).unwrap_or(&Value::Null), value);
                target.insert(key.clone(), merged);
            }
        }
        Value::Object(target)
    }

    /// `value` without the object keys that hold `null` (what a merge patch can express).
    fn without_nulls(value: &Value) -> Value {
        match value {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), without_nulls(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn round_trips(before: &Value, after: &Value) {
        let patched = match merge_patch(before, after) {
            Some(patch) => apply(before, &patch),
            None => before.clone(),
        };
        assert_eq!(
            without_nulls(&patched),
            without_nulls(after),
            "before {before}, after {after}, patch {:?}",
            merge_patch(before, after)
        );
    }

    #[test]
    fn equal_documents_need_no_patch() {
        for v in [
            json!(null),
            json!(1),
            json!("s"),
            json!([1, 2]),
            json!({}),
            json!({"a": {"b": [1, {"c": null}]}}),
        ] {
            assert_eq!(merge_patch(&v, &v), None, "{v}");
        }
    }

    #[test]
    fn changed_added_and_removed_keys() {
        let before = json!({"a": 1, "b": "x", "c": true});
        let after = json!({"a": 2, "c": true, "d": [1]});
        assert_eq!(
            merge_patch(&before, &after),
            Some(json!({"a": 2, "b": null, "d": [1]}))
        );
        round_trips(&before, &after);
    }

    #[test]
    fn nested_objects_carry_only_their_changes() {
        let before = json!({
            "metadata": {"name": "n", "labels": {"a": "1", "b": "2"}, "annotations": {"x": "y"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c"}]}}}
        });
        let after = json!({
            "metadata": {"name": "n", "labels": {"a": "1", "b": "3"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c"}], "hostNetwork": true}}}
        });
        assert_eq!(
            merge_patch(&before, &after),
            Some(json!({
                "metadata": {"labels": {"b": "3"}, "annotations": null},
                "spec": {"template": {"spec": {"hostNetwork": true}}}
            }))
        );
        round_trips(&before, &after);
    }

    #[test]
    fn arrays_are_replaced_whole() {
        let before = json!({"list": [1, 2, 3], "objs": [{"a": 1}, {"b": 2}]});
        let after = json!({"list": [1, 2], "objs": [{"a": 1}, {"b": 3}]});
        assert_eq!(
            merge_patch(&before, &after),
            Some(json!({"list": [1, 2], "objs": [{"a": 1}, {"b": 3}]}))
        );
        let emptied = json!({"list": [], "objs": [{"a": 1}, {"b": 2}]});
        assert_eq!(merge_patch(&before, &emptied), Some(json!({"list": []})));
        round_trips(&before, &after);
        round_trips(&before, &emptied);
    }

    #[test]
    fn null_counts_as_absent() {
        assert_eq!(merge_patch(&json!({"a": null}), &json!({})), None);
        assert_eq!(merge_patch(&json!({}), &json!({"a": null})), None);
        assert_eq!(
            merge_patch(&json!({"a": null}), &json!({"a": 1})),
            Some(json!({"a": 1}))
        );
        assert_eq!(
            merge_patch(&json!({"a": 1}), &json!({"a": null})),
            Some(json!({"a": null}))
        );
        assert_eq!(
            merge_patch(&json!({"a": {"b": 1}}), &json!({"a": {"b": null}})),
            Some(json!({"a": {"b": null}}))
        );
    }

    #[test]
    fn type_changes_replace_the_value() {
        // Scalar to object: the new object, whole.
        assert_eq!(
            merge_patch(&json!({"a": 1}), &json!({"a": {"b": 2}})),
            Some(json!({"a": {"b": 2}}))
        );
        // Object to scalar or array.
        assert_eq!(
            merge_patch(&json!({"a": {"b": 2}}), &json!({"a": "s"})),
            Some(json!({"a": "s"}))
        );
        assert_eq!(
            merge_patch(&json!({"a": {"b": 2}}), &json!({"a": [2]})),
            Some(json!({"a": [2]}))
        );
        // Number kinds: 1 and 1.0 differ in JSON, so a re-serialization is a change.
        assert_eq!(merge_patch(&json!(1), &json!(1.0)), Some(json!(1.0)));
        // Top-level non-objects are replaced whole.
        assert_eq!(
            merge_patch(&json!([1]), &json!({"a": 1})),
            Some(json!({"a": 1}))
        );
        assert_eq!(
            merge_patch(&json!({"a": 1}), &json!(null)),
            Some(json!(null))
        );
        for (before, after) in [
            (json!({"a": 1}), json!({"a": {"b": 2}})),
            (json!({"a": {"b": 2}}), json!({"a": "s"})),
            (json!({"a": {"b": {"c": 1}}}), json!({"a": {"b": 1}})),
            (json!({"a": [1]}), json!({"a": {"x": [1]}})),
        ] {
            round_trips(&before, &after);
        }
    }

    #[test]
    fn new_subtrees_keep_their_content() {
        let before = json!({"metadata": {"name": "n"}});
        let after =
            json!({"metadata": {"name": "n", "labels": {"a": "1"}}, "status": {"ready": true}});
        assert_eq!(
            merge_patch(&before, &after),
            Some(json!({"metadata": {"labels": {"a": "1"}}, "status": {"ready": true}}))
        );
        round_trips(&before, &after);
    }

    /// A small deterministic generator (xorshift), to round-trip many random documents
    /// without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        fn value(&mut self, depth: u32) -> Value {
            let kinds = if depth == 0 { 4 } else { 6 };
            match self.next(kinds) {
                0 => Value::Null,
                1 => json!(self.next(3)),
                2 => json!(["a", "b", "c"][self.next(3) as usize]),
                3 => json!(self.next(2) == 0),
                4 => Value::Array((0..self.next(3)).map(|_| self.value(depth - 1)).collect()),
                _ => self.object(depth - 1),
            }
        }

        fn object(&mut self, depth: u32) -> Value {
            let mut m = Map::new();
            for key in ["k", "l", "m", "n"] {
                if self.next(3) != 0 {
                    m.insert(key.to_owned(), self.value(depth));
                }
            }
            Value::Object(m)
        }

        /// `v` with a few random edits, so pairs share structure.
        fn mutate(&mut self, v: &Value, depth: u32) -> Value {
            match v {
                Value::Object(m) if self.next(4) != 0 => {
                    let mut m = m.clone();
                    for key in ["k", "l", "m", "n"] {
                        match self.next(5) {
                            0 => {
                                m.remove(key);
                            }
                            1 => {
                                m.insert(key.to_owned(), self.value(depth));
                            }
                            2 => {
                                if let Some(child) = m.get(key).cloned() {
                                    let edited = self.mutate(&child, depth.saturating_sub(1));
                                    m.insert(key.to_owned(), edited);
                                }
                            }
                            _ => {}
                        }
                    }
                    Value::Object(m)
                }
                _ if self.next(2) == 0 => v.clone(),
                _ => self.value(depth),
            }
        }
    }

    #[test]
    fn random_documents_round_trip() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5000 {
            let before = rng.object(3);
            let after = rng.mutate(&before, 3);
            round_trips(&before, &after);
            // And no patch exactly when equal (up to nulls).
            let equal = without_nulls(&before) == without_nulls(&after);
            assert_eq!(
                merge_patch(&before, &after).is_none(),
                equal,
                "{before} → {after}"
            );
        }
    }
}
