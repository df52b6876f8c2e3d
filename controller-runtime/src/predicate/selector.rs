//! Kubernetes `LabelSelector`s (`matchLabels` + `matchExpressions`) as the informer's
//! [`Selector`] (apimachinery's `LabelSelectorAsSelector`), validated as the API server does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::informer::labels::{self, Selector};

/// A Kubernetes `LabelSelector` that [`to_selector`] rejects.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A label key is not a qualified name (`[prefix/]name`, the name at most 63 characters of
    /// alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric; the prefix a DNS
    /// subdomain).
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A label value is not at most 63 characters of alphanumerics, `-`, `_` and `.`, starting
    /// and ending alphanumeric (or empty).
    #[error("invalid value {value:?} for label key {key:?}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// A `matchExpressions` operator other than `In`, `NotIn`, `Exists` and `DoesNotExist`.
    #[error("unknown operator {operator:?} for label key {key:?}")]
    UnknownOperator {
        /// The key.
        key: String,
        /// The operator.
        operator: String,
    },
    /// `In` or `NotIn` without values.
    #[error("operator {operator} for label key {key:?} needs at least one value")]
    MissingValues {
        /// The key.
        key: String,
        /// The operator.
        operator: &'static str,
    },
    /// `Exists` or `DoesNotExist` with values.
    #[error("operator {operator} for label key {key:?} takes no values")]
    UnexpectedValues {
        /// The key.
        key: String,
        /// The operator.
        operator: &'static str,
    },
    /// `In` with several values one of which is empty: valid in Kubernetes, but the informer's
    /// selector syntax has no way to write an empty value in a set.
    #[error("operator In for label key {key:?}: an empty value among several is not supported")]
    EmptyValueInSet {
        /// The key.
        key: String,
    },
    /// The informer's selector parser rejected the converted selector.
    #[error("cannot parse the converted label selector")]
    Parse(#[source] labels::ParseError),
}

/// Converts a Kubernetes `LabelSelector` to the informer's [`Selector`] (apimachinery's
/// `LabelSelectorAsSelector`): every `matchLabels` pair and every `matchExpressions`
/// requirement must hold. Keys, values and operators are validated as the API server does; the
/// empty selector matches everything.
pub fn to_selector(selector: &LabelSelector) -> Result<Selector, Error> {
    let mut terms: Vec<String> = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        validate_key(key)?;
        validate_value(key, value)?;
        terms.push(format!("{key}={value}"));
    }
    for requirement in selector.match_expressions.iter().flatten() {
        let key = &requirement.key;
        validate_key(key)?;
        let values = requirement.values.as_deref().unwrap_or_default();
        for value in values {
            validate_value(key, value)?;
        }
        let needs_values = |operator: &'static str| {
            if values.is_empty() {
                Err(Error::MissingValues {
                    key: key.clone(),
                    operator,
                })
            } else {
                Ok(())
            }
        };
        let takes_no_values = |operator: &'static str| {
            if values.is_empty() {
                Ok(())
            } else {
                Err(Error::UnexpectedValues {
                    key: key.clone(),
                    operator,
                })
            }
        };
        match requirement.operator.as_str() {
            "In" => {
                needs_values("In")?;
                if let [value] = values {
                    // `key=` keeps an empty value, which `key in ()` would drop.
                    terms.push(format!("{key}={value}"));
                } else if values.iter().any(String::is_empty) {
                    return Err(Error::EmptyValueInSet { key: key.clone() });
                } else {
                    terms.push(format!("{key} in ({})", values.join(",")));
                }
            }
            "NotIn" => {
                needs_values("NotIn")?;
                // `key notin (a,b)` is `key!=a,key!=b`, which also keeps empty values.
                terms.extend(values.iter().map(|value| format!("{key}!={value}")));
            }
            "Exists" => {
                takes_no_values("Exists")?;
                terms.push(key.clone());
            }
            "DoesNotExist" => {
                takes_no_values("DoesNotExist")?;
                terms.push(format!("!{key}"));
            }
            other => {
                return Err(Error::UnknownOperator {
                    key: key.clone(),
                    operator: other.to_owned(),
                });
            }
        }
    }
    Selector::parse(&terms.join(",")).map_err(Error::Parse)
}

/// A label key: `[prefix/]name` (apimachinery's `IsQualifiedName`).
fn validate_key(key: &str) -> Result<(), Error> {
    let invalid = |reason| Error::InvalidKey {
        key: key.to_owned(),
        reason,
    };
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(invalid("the prefix is empty"));
        }
        if !is_dns_subdomain(prefix) {
            return Err(invalid("the prefix is not a DNS subdomain"));
        }
    }
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name.len() > 63 {
        return Err(invalid("the name is longer than 63 characters"));
    }
    if !is_label_name(name) {
        return Err(invalid(
            "the name must be alphanumerics, '-', '_' or '.', starting and ending alphanumeric",
        ));
    }
    Ok(())
}

/// A label value (apimachinery's `IsValidLabelValue`): empty, or a label name.
fn validate_value(key: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || (value.len() <= 63 && is_label_name(value)) {
        Ok(())
    } else {
        Err(Error::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`
fn is_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated lowercase labels.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let bytes = label.as_bytes();
            match (bytes.first(), bytes.last()) {
                (Some(first), Some(last)) => {
                    (first.is_ascii_lowercase() || first.is_ascii_digit())
                        && (last.is_ascii_lowercase() || last.is_ascii_digit())
                        && bytes
                            .iter()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                }
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    fn expressions(reqs: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_labels: None,
            match_expressions: Some(reqs),
        }
    }

    #[test]
    fn label_selectors_convert_every_operator() {
        let selector = LabelSelector {
            match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
            match_expressions: Some(vec![
                requirement("tier", "In", &["front", "edge"]),
                requirement("env", "NotIn", &["dev", "test"]),
                requirement("example.com/owner", "Exists", &[]),
                requirement("legacy", "DoesNotExist", &[]),
            ]),
        };
        let s = to_selector(&selector).unwrap();
        let base = [
            ("app", "web"),
            ("tier", "edge"),
            ("env", "prod"),
            ("example.com/owner", "me"),
        ];
        assert!(s.matches(Some(&labels(&base))));
        let variants: [&[(&str, &str)]; 6] = [
            &[("app", "db")],
            &[("tier", "back")],
            &[("env", "dev")],
            &[("env", "test")],
            &[("example.com/owner", "")],
            &[("legacy", "yes")],
        ];
        for change in variants {
            let mut changed = labels(&base);
            changed.extend(labels(change));
            // The empty owner value still exists; every other change breaks the match.
            let expected = change[0].0 == "example.com/owner";
            assert_eq!(s.matches(Some(&changed)), expected, "{change:?}");
        }
        let mut missing = labels(&base);
        missing.remove("example.com/owner");
        assert!(!s.matches(Some(&missing)));
        missing.insert("example.com/owner".into(), "x".into());
        missing.remove("env");
        assert!(s.matches(Some(&missing)), "NotIn passes a missing key");
        assert!(to_selector(&LabelSelector::default()).unwrap().is_empty());
    }

    #[test]
    fn label_selectors_keep_empty_values() {
        let eq_empty = LabelSelector {
            match_labels: Some([("a".to_owned(), String::new())].into()),
            match_expressions: None,
        };
        let s = to_selector(&eq_empty).unwrap();
        assert!(s.matches(Some(&labels(&[("a", "")]))));
        assert!(!s.matches(Some(&labels(&[("a", "x")]))));
        assert!(!s.matches(None));

        let in_empty = to_selector(&expressions(vec![requirement("a", "In", &[""])])).unwrap();
        assert!(in_empty.matches(Some(&labels(&[("a", "")]))));
        assert!(!in_empty.matches(Some(&labels(&[("a", "x")]))));

        let not_in =
            to_selector(&expressions(vec![requirement("a", "NotIn", &["", "x"])])).unwrap();
        assert!(!not_in.matches(Some(&labels(&[("a", "")]))));
        assert!(!not_in.matches(Some(&labels(&[("a", "x")]))));
        assert!(not_in.matches(Some(&labels(&[("a", "y")]))));
        assert!(not_in.matches(None));
    }

    #[test]
    fn invalid_label_selectors_are_errors() {
        let cases = [
            (requirement("a", "Equals", &["x"]), "unknown operator"),
            (requirement("a", "In", &[]), "needs at least one value"),
            (requirement("a", "NotIn", &[]), "needs at least one value"),
            (requirement("a", "Exists", &["x"]), "takes no values"),
            (requirement("a", "DoesNotExist", &["x"]), "takes no values"),
            (requirement("a,b", "Exists", &[]), "invalid label key"),
            (requirement("a b", "Exists", &[]), "invalid label key"),
            (requirement("", "Exists", &[]), "invalid label key"),
            (requirement("-a", "Exists", &[]), "invalid label key"),
            (requirement("/a", "Exists", &[]), "invalid label key"),
            (
                requirement("Example.com/a", "Exists", &[]),
                "invalid label key",
            ),
            (requirement("a/b/c", "Exists", &[]), "invalid label key"),
            (
                requirement(&"k".repeat(64), "Exists", &[]),
                "invalid label key",
            ),
            (requirement("a", "In", &["x)"]), "invalid value"),
            (requirement("a", "In", &["x,y"]), "invalid value"),
            (requirement("a", "In", &[&"v".repeat(64)]), "invalid value"),
            (requirement("a", "In", &["x", ""]), "not supported"),
        ];
        for (req, message) in cases {
            let err = to_selector(&expressions(vec![req.clone()])).unwrap_err();
            assert!(err.to_string().contains(message), "{req:?}: {err}");
        }
        let bad_match_labels = LabelSelector {
            match_labels: Some([("app".to_owned(), "a b".to_owned())].into()),
            match_expressions: None,
        };
        assert!(matches!(
            to_selector(&bad_match_labels),
            Err(Error::InvalidValue { .. })
        ));
        let ok = expressions(vec![requirement(
            "app.kubernetes.io/name",
            "In",
            &["my_app-1.0"],
        )]);
        assert!(to_selector(&ok).is_ok());
    }
}
