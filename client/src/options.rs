//! Request options in the shape of `metav1.ListOptions`, `CreateOptions`, `PatchOptions`,
//! `DeleteOptions`, turned into query parameters (and bodies) in one place.

use serde::Serialize;
use serde_json::Value;

/// `resourceVersionMatch` for lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceVersionMatch {
    /// Any version at least as new as `resource_version`.
    NotOlderThan,
    /// Exactly `resource_version`.
    Exact,
}

/// `metav1.ListOptions`: for list, watch and delete-collection.
#[derive(Clone, Debug, Default, PartialEq)]
#[must_use]
pub struct ListOptions {
    /// Label selector, e.g. `app=web,tier!=db`.
    pub label_selector: Option<String>,
    /// Field selector, e.g. `metadata.name=foo`.
    pub field_selector: Option<String>,
    /// Resource version to list/watch from.
    pub resource_version: Option<String>,
    /// How `resource_version` is interpreted for lists.
    pub resource_version_match: Option<ResourceVersionMatch>,
    /// Page size.
    pub limit: Option<i64>,
    /// Continue token from the previous page.
    pub continue_token: Option<String>,
    /// Server-side timeout of a list or watch.
    pub timeout_seconds: Option<u32>,
    /// Ask for BOOKMARK events on a watch.
    pub allow_watch_bookmarks: bool,
    /// Streaming list: a watch that starts with the current state as ADDED events.
    pub send_initial_events: Option<bool>,
}

impl ListOptions {
    /// Sets the label selector.
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Sets the field selector.
    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = Some(selector.into());
        self
    }

    /// Sets the page size.
    pub fn limit(mut self, limit: i64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Sets the continue token.
    pub fn continue_token(mut self, token: impl Into<String>) -> Self {
        self.continue_token = Some(token.into());
        self
    }

    /// Sets the resource version (and how it matches, for lists).
    pub fn at(
        mut self,
        resource_version: impl Into<String>,
        matching: Option<ResourceVersionMatch>,
    ) -> Self {
        self.resource_version = Some(resource_version.into());
        self.resource_version_match = matching;
        self
    }

    /// Sets the server-side timeout.
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout_seconds = Some(seconds);
        self
    }

    /// Asks for bookmarks on a watch.
    pub fn bookmarks(mut self, on: bool) -> Self {
        self.allow_watch_bookmarks = on;
        self
    }

    /// A streaming list: `sendInitialEvents=true`, `resourceVersionMatch=NotOlderThan`, with
    /// bookmarks; the initial state ends at a bookmark annotated `k8s.io/initial-events-end`.
    pub fn streaming_list(mut self) -> Self {
        self.send_initial_events = Some(true);
        self.allow_watch_bookmarks = true;
        self.resource_version_match = Some(ResourceVersionMatch::NotOlderThan);
        if self.resource_version.is_none() {
            self.resource_version = Some(String::new());
        }
        self
    }

    /// The query parameters for a list (`watch = false`) or watch request.
    pub fn to_query(&self, watch: bool) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if watch {
            q.push(("watch", "true".to_owned()));
        }
        push(&mut q, "labelSelector", &self.label_selector);
        push(&mut q, "fieldSelector", &self.field_selector);
        push(&mut q, "resourceVersion", &self.resource_version);
        if let Some(m) = self.resource_version_match {
            let m = match m {
                ResourceVersionMatch::NotOlderThan => "NotOlderThan",
                ResourceVersionMatch::Exact => "Exact",
            };
            q.push(("resourceVersionMatch", m.to_owned()));
        }
        if let Some(limit) = self.limit {
            q.push(("limit", limit.to_string()));
        }
        push(&mut q, "continue", &self.continue_token);
        if let Some(t) = self.timeout_seconds {
            q.push(("timeoutSeconds", t.to_string()));
        }
        if watch && self.allow_watch_bookmarks {
            q.push(("allowWatchBookmarks", "true".to_owned()));
        }
        if let Some(s) = self.send_initial_events {
            q.push(("sendInitialEvents", s.to_string()));
        }
        q
    }
}

fn push(q: &mut Vec<(&'static str, String)>, key: &'static str, value: &Option<String>) {
    if let Some(v) = value {
        q.push((key, v.clone()));
    }
}

/// `metav1.CreateOptions` / `UpdateOptions`.
#[derive(Clone, Debug, Default, PartialEq)]
#[must_use]
pub struct WriteOptions {
    /// Validate and default, but persist nothing.
    pub dry_run: bool,
    /// The field manager recorded in managedFields.
    pub field_manager: Option<String>,
    /// `Ignore`, `Warn` or `Strict` unknown/duplicate-field handling.
    pub field_validation: Option<String>,
}

impl WriteOptions {
    /// Sets the field manager.
    pub fn manager(mut self, manager: impl Into<String>) -> Self {
        self.field_manager = Some(manager.into());
        self
    }

    /// The query parameters for a create or update.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if self.dry_run {
            q.push(("dryRun", "All".to_owned()));
        }
        push(&mut q, "fieldManager", &self.field_manager);
        push(&mut q, "fieldValidation", &self.field_validation);
        q
    }
}

/// `metav1.PatchOptions`.
#[derive(Clone, Debug, Default, PartialEq)]
#[must_use]
pub struct PatchOptions {
    /// Dry run, field manager, field validation.
    pub write: WriteOptions,
    /// Server-side apply: take ownership of conflicting fields.
    pub force: bool,
}

impl PatchOptions {
    /// Server-side apply options for `manager`; set `force` to take conflicting fields.
    pub fn apply(manager: impl Into<String>) -> Self {
        Self {
            write: WriteOptions::default().manager(manager),
            force: false,
        }
    }

    /// Take ownership of fields other managers hold (server-side apply only).
    pub fn force(mut self) -> Self {
        self.force = true;
        self
    }

    /// The query parameters for a patch.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut q = self.write.to_query();
        if self.force {
            q.push(("force", "true".to_owned()));
        }
        q
    }
}

/// A patch body with its content type.
#[derive(Clone, Debug, PartialEq)]
pub enum Patch {
    /// RFC 7386 JSON merge patch.
    Merge(Value),
    /// RFC 6902 JSON patch (an array of operations).
    Json(Value),
    /// Kubernetes strategic merge patch (built-in types only).
    Strategic(Value),
    /// Server-side apply of a (partial) object; needs a field manager.
    Apply(Value),
}

impl Patch {
    /// A server-side apply patch of any serializable object.
    pub fn apply<T: Serialize>(object: &T) -> Result<Self, serde_json::Error> {
        Ok(Self::Apply(serde_json::to_value(object)?))
    }

    pub(crate) fn content_type(&self) -> &'static str {
        match self {
            Self::Merge(_) => "application/merge-patch+json",
            Self::Json(_) => "application/json-patch+json",
            Self::Strategic(_) => "application/strategic-merge-patch+json",
            Self::Apply(_) => "application/apply-patch+yaml",
        }
    }

    pub(crate) fn body(&self) -> &Value {
        match self {
            Self::Merge(v) | Self::Json(v) | Self::Strategic(v) | Self::Apply(v) => v,
        }
    }
}

/// `metav1.DeletionPropagation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PropagationPolicy {
    /// Leave dependents alone.
    Orphan,
    /// Delete dependents in the background.
    Background,
    /// Delete dependents first (the owner waits, with a finalizer).
    Foreground,
}

/// `metav1.Preconditions`: the delete fails with a conflict unless these match.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preconditions {
    /// Required UID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Required resourceVersion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// `metav1.DeleteOptions`, sent as the request body.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[must_use]
pub struct DeleteOptions {
    /// Seconds before the object is deleted (pods); 0 deletes immediately.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i64>,
    /// What happens to dependents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation_policy: Option<PropagationPolicy>,
    /// Conditions the object must meet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preconditions: Option<Preconditions>,
    /// `["All"]` for a dry run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<String>,
}

impl DeleteOptions {
    /// Sets the propagation policy.
    pub fn propagation(mut self, policy: PropagationPolicy) -> Self {
        self.propagation_policy = Some(policy);
        self
    }

    /// Requires the object's UID and/or resourceVersion.
    pub fn preconditions(mut self, uid: Option<String>, resource_version: Option<String>) -> Self {
        self.preconditions = Some(Preconditions {
            uid,
            resource_version,
        });
        self
    }

    /// Sets the grace period.
    pub fn grace_period(mut self, seconds: i64) -> Self {
        self.grace_period_seconds = Some(seconds);
        self
    }

    pub(crate) fn body(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("apiVersion".into(), "v1".into());
            m.insert("kind".into(), "DeleteOptions".into());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_options_to_query() {
        let q = ListOptions::default()
            .labels("a=b")
            .limit(500)
            .continue_token("tok")
            .to_query(false);
        assert_eq!(
            q,
            vec![
                ("labelSelector", "a=b".to_owned()),
                ("limit", "500".to_owned()),
                ("continue", "tok".to_owned())
            ]
        );
        let w = ListOptions::default().streaming_list().to_query(true);
        assert!(w.contains(&("sendInitialEvents", "true".to_owned())));
        assert!(w.contains(&("resourceVersionMatch", "NotOlderThan".to_owned())));
        assert!(w.contains(&("allowWatchBookmarks", "true".to_owned())));
    }

    #[test]
    fn delete_options_body() {
        let body = DeleteOptions::default()
            .propagation(PropagationPolicy::Foreground)
            .preconditions(Some("u".into()), None)
            .body();
        assert_eq!(body["propagationPolicy"], "Foreground");
        assert_eq!(body["preconditions"]["uid"], "u");
        assert_eq!(body["kind"], "DeleteOptions");
    }
}
