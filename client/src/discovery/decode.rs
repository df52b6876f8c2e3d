//! Turning discovery documents into a [`Snapshot`]: aggregated documents
//! (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`, as client-go's `SplitGroupsAndResources`)
//! and legacy ones (`APIVersions`, `APIGroupList`, `APIResourceList`).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroupList, APIResource, APIResourceList, APIVersions,
};
use kube::core::discovery::v2::{
    APIGroupDiscovery, APIGroupDiscoveryList, APIResourceDiscovery, APISubresourceDiscovery,
    GroupVersionKind as DiscoveryGvk,
};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Deserialize;
use tokio::time::Instant;

use super::Error;
use super::resource::{ApiGroup, ResourceInfo, Snapshot, SubresourceInfo, group_version};

/// The `kind` of an aggregated discovery document.
const AGGREGATED_KIND: &str = "APIGroupDiscoveryList";
/// The freshness of a group version whose document the server could not refresh.
const STALE: &str = "Stale";

/// What `/api` or `/apis` answered.
#[derive(Debug)]
pub(super) enum Root {
    /// Every group, version and resource in one document.
    Aggregated(APIGroupDiscoveryList),
    /// Groups and versions only; resources need one request per group version.
    Legacy(Vec<ApiGroup>),
}

/// Decodes the answer of `/api` (`core: true`) or `/apis`: aggregated when its `kind` says
/// so, legacy (`APIVersions` or `APIGroupList`) otherwise.
pub(super) fn root(path: &str, core: bool, bytes: &[u8]) -> Result<Root, Error> {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(default)]
        kind: String,
    }
    let decode_error = |source| Error::Decode {
        path: path.to_owned(),
        source,
    };
    let kind: Kind = serde_json::from_slice(bytes).map_err(decode_error)?;
    if kind.kind == AGGREGATED_KIND {
        return serde_json::from_slice(bytes)
            .map(Root::Aggregated)
            .map_err(decode_error);
    }
    if core {
        let versions: APIVersions = serde_json::from_slice(bytes).map_err(decode_error)?;
        Ok(Root::Legacy(core_group(versions).into_iter().collect()))
    } else {
        let list: APIGroupList = serde_json::from_slice(bytes).map_err(decode_error)?;
        Ok(Root::Legacy(legacy_groups(list)))
    }
}

/// The core group from `/api`'s `APIVersions` (none when it lists no version).
fn core_group(versions: APIVersions) -> Option<ApiGroup> {
    let preferred_version = versions.versions.first()?.clone();
    Some(ApiGroup {
        name: String::new(),
        versions: versions.versions,
        preferred_version,
    })
}

/// The groups of `/apis`' `APIGroupList`, in the server's order.
fn legacy_groups(list: APIGroupList) -> Vec<ApiGroup> {
    list.groups
        .into_iter()
        .filter_map(|g| {
            let versions: Vec<String> = g.versions.into_iter().map(|v| v.version).collect();
            let preferred_version = g
                .preferred_version
                .map(|p| p.version)
                .filter(|v| !v.is_empty())
                .or_else(|| versions.first().cloned())?;
            Some(ApiGroup {
                name: g.name,
                versions,
                preferred_version,
            })
        })
        .collect()
}

/// A snapshot being assembled from one or more documents.
#[derive(Debug, Default)]
pub(super) struct Parts {
    groups: Vec<ApiGroup>,
    resources: HashMap<String, Vec<ResourceInfo>>,
    failed: BTreeMap<String, String>,
    legacy_roots: usize,
}

impl Parts {
    /// Adds the groups of a root document; legacy ones still need their resources (see
    /// [`Parts::legacy_group_versions`]).
    pub(super) fn add_root(&mut self, root: Root) {
        match root {
            Root::Aggregated(list) => {
                for group in list.items {
                    self.add_aggregated_group(group);
                }
            }
            Root::Legacy(groups) => {
                self.legacy_roots += 1;
                self.groups.extend(groups);
            }
        }
    }

    /// The group versions whose resources are not known yet (from legacy roots).
    pub(super) fn legacy_group_versions(&self) -> Vec<(String, String)> {
        self.groups
            .iter()
            .flat_map(|g| g.versions.iter().map(|v| (g.name.clone(), v.clone())))
            .filter(|(g, v)| !self.resources.contains_key(&group_version(g, v)))
            .collect()
    }

    /// Records the `APIResourceList` of one group version.
    pub(super) fn add_legacy_resources(
        &mut self,
        group: &str,
        version: &str,
        list: APIResourceList,
    ) {
        let resources = legacy_resources(group, version, list.resources);
        self.resources
            .insert(group_version(group, version), resources);
    }

    /// Records a group version whose discovery failed.
    pub(super) fn add_failed(&mut self, group_version: String, reason: String) {
        self.failed.insert(group_version, reason);
    }

    /// The finished snapshot.
    pub(super) fn finish(self, fetched_at: Instant) -> Snapshot {
        Snapshot {
            groups: self.groups,
            resources: self.resources,
            failed: self.failed,
            aggregated: self.legacy_roots == 0,
            fetched_at,
        }
    }

    fn add_aggregated_group(&mut self, group: APIGroupDiscovery) {
        let name = group.metadata.and_then(|m| m.name).unwrap_or_default();
        let mut versions = Vec::new();
        for v in group.versions {
            let Some(version) = v.version.filter(|v| !v.is_empty()) else {
                continue;
            };
            let gv = group_version(&name, &version);
            if v.freshness.as_deref() == Some(STALE) {
                self.failed.insert(
                    gv,
                    "the server marked its discovery document stale".to_owned(),
                );
                continue;
            }
            let resources = v
                .resources
                .into_iter()
                .filter_map(|r| aggregated_resource(&name, &version, r))
                .collect();
            self.resources.insert(gv, resources);
            versions.push(version);
        }
        // As client-go: the preferred version is the first one that is not stale, and a
        // group without any is left out.
        if let Some(preferred_version) = versions.first().cloned() {
            self.groups.push(ApiGroup {
                name,
                versions,
                preferred_version,
            });
        }
    }
}

fn api_resource(group: &str, version: &str, kind: String, plural: String) -> ApiResource {
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: group_version(group, version),
        kind,
        plural,
    }
}

/// One aggregated resource; `None` (as client-go) when it has no name or no kind.
fn aggregated_resource(
    group: &str,
    version: &str,
    r: APIResourceDiscovery,
) -> Option<ResourceInfo> {
    let plural = r.resource.filter(|p| !p.is_empty())?;
    let Some(kind) = r
        .response_kind
        .and_then(|k| k.kind)
        .filter(|k| !k.is_empty())
    else {
        tracing::debug!(group, version, resource = %plural, "discovery resource without a kind: skipped");
        return None;
    };
    let subresources = r
        .subresources
        .into_iter()
        .filter_map(|s| aggregated_subresource(group, version, s))
        .collect();
    Some(ResourceInfo {
        singular: r
            .singular_resource
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| kind.to_ascii_lowercase()),
        namespaced: r.scope.as_deref() == Some("Namespaced"),
        verbs: r.verbs,
        short_names: r.short_names,
        categories: r.categories,
        subresources,
        resource: api_resource(group, version, kind, plural),
    })
}

fn aggregated_subresource(
    group: &str,
    version: &str,
    s: APISubresourceDiscovery,
) -> Option<SubresourceInfo> {
    let name = s.subresource.filter(|n| !n.is_empty())?;
    let DiscoveryGvk {
        group: kind_group,
        version: kind_version,
        kind,
    } = s.response_kind?;
    let kind = kind.filter(|k| !k.is_empty())?;
    Some(SubresourceInfo {
        name,
        response_kind: response_kind(
            group,
            version,
            kind_group.as_deref(),
            kind_version.as_deref(),
            kind,
        ),
        verbs: s.verbs,
    })
}

/// A subresource's response kind; an empty version means the parent's group version.
fn response_kind(
    group: &str,
    version: &str,
    kind_group: Option<&str>,
    kind_version: Option<&str>,
    kind: String,
) -> GroupVersionKind {
    match kind_version.filter(|v| !v.is_empty()) {
        Some(v) => GroupVersionKind::gvk(kind_group.unwrap_or_default(), v, &kind),
        None => GroupVersionKind::gvk(group, version, &kind),
    }
}

/// The resources of a legacy `APIResourceList`, with `parent/sub` entries nested under their
/// parent.
fn legacy_resources(group: &str, version: &str, list: Vec<APIResource>) -> Vec<ResourceInfo> {
    let mut resources: Vec<ResourceInfo> = Vec::new();
    let mut subresources = Vec::new();
    for r in list {
        if r.name.is_empty() || r.kind.is_empty() {
            continue;
        }
        if let Some((parent, sub)) = r.name.split_once('/') {
            let info = SubresourceInfo {
                name: sub.to_owned(),
                response_kind: response_kind(
                    group,
                    version,
                    r.group.as_deref(),
                    r.version.as_deref(),
                    r.kind,
                ),
                verbs: r.verbs,
            };
            subresources.push((parent.to_owned(), info));
            continue;
        }
        resources.push(ResourceInfo {
            singular: if r.singular_name.is_empty() {
                r.kind.to_ascii_lowercase()
            } else {
                r.singular_name
            },
            namespaced: r.namespaced,
            verbs: r.verbs,
            short_names: r.short_names.unwrap_or_default(),
            categories: r.categories.unwrap_or_default(),
            subresources: Vec::new(),
            resource: api_resource(group, version, r.kind, r.name),
        });
    }
    for (parent, sub) in subresources {
        match resources.iter_mut().find(|r| r.resource.plural == parent) {
            Some(r) => r.subresources.push(sub),
            None => {
                tracing::trace!(group, version, %parent, sub = %sub.name, "subresource without its resource")
            }
        }
    }
    resources
}

#[cfg(test)]
mod tests {
    use super::super::samples;
    use super::*;

    fn aggregated(core: &str, apis: &str) -> Snapshot {
        let mut parts = Parts::default();
        for (path, doc, is_core) in [("/api", core, true), ("/apis", apis, false)] {
            let root = root(path, is_core, doc.as_bytes()).expect("sample decodes");
            assert!(matches!(root, Root::Aggregated(_)), "{path} is aggregated");
            parts.add_root(root);
        }
        assert!(parts.legacy_group_versions().is_empty());
        parts.finish(Instant::now())
    }

    #[test]
    fn aggregated_document() {
        let s = aggregated(samples::AGGREGATED_CORE, samples::AGGREGATED_APIS);
        assert!(s.is_aggregated());
        let names: Vec<_> = s.groups().iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["", "apps", "events.k8s.io", "example.com"]);

        let core = s.resources_for("v1").expect("core v1");
        let cm = core.iter().find(|r| r.resource.plural == "configmaps");
        let cm = cm.expect("configmaps");
        assert_eq!(cm.resource.kind, "ConfigMap");
        assert_eq!(cm.resource.api_version, "v1");
        assert!(cm.namespaced);
        assert_eq!(cm.short_names, ["cm"]);
        let ns = core.iter().find(|r| r.resource.plural == "namespaces");
        assert!(!ns.expect("namespaces").namespaced);

        let deploy = &s.resources_for("apps/v1").expect("apps/v1")[0];
        assert_eq!(deploy.resource.api_version, "apps/v1");
        assert_eq!(deploy.singular, "deployment");
        assert_eq!(deploy.categories, ["all"]);
        assert!(deploy.supports("watch") && !deploy.supports("proxy"));
        let scale = deploy.subresource("scale").expect("deployments/scale");
        assert_eq!(
            scale.response_kind,
            GroupVersionKind::gvk("autoscaling", "v1", "Scale")
        );
        let status = deploy.subresource("status").expect("deployments/status");
        assert_eq!(
            status.response_kind,
            GroupVersionKind::gvk("apps", "v1", "Deployment")
        );

        // A stale version is left out and reported; the preferred version comes first.
        let example = s.group("example.com").expect("example.com");
        assert_eq!(example.versions, ["v1beta1", "v1"]);
        assert_eq!(example.preferred_version, "v1beta1");
        assert!(s.resources_for("example.com/v1alpha1").is_none());
        assert!(
            s.failed_group_versions()
                .get("example.com/v1alpha1")
                .is_some_and(|r| r.contains("stale"))
        );
        // A resource without a kind is skipped.
        assert!(
            s.resources_for("example.com/v1")
                .is_some_and(|r| r.iter().all(|r| r.resource.plural != "nokinds"))
        );
    }

    #[test]
    fn legacy_documents() {
        let mut parts = Parts::default();
        parts.add_root(root("/api", true, samples::LEGACY_API.as_bytes()).expect("/api"));
        parts.add_root(root("/apis", false, samples::LEGACY_APIS.as_bytes()).expect("/apis"));
        assert_eq!(
            parts.legacy_group_versions(),
            [
                (String::new(), "v1".to_owned()),
                ("apps".to_owned(), "v1".to_owned()),
                ("batch".to_owned(), "v1".to_owned()),
            ]
        );
        let apps: APIResourceList =
            serde_json::from_str(samples::LEGACY_APPS_V1).expect("APIResourceList");
        parts.add_legacy_resources("apps", "v1", apps);
        let core: APIResourceList =
            serde_json::from_str(samples::LEGACY_CORE_V1).expect("APIResourceList");
        parts.add_legacy_resources("", "v1", core);
        parts.add_failed("batch/v1".into(), "503 ServiceUnavailable".into());
        let s = parts.finish(Instant::now());

        assert!(!s.is_aggregated());
        assert_eq!(s.group("batch").map(|g| g.versions.len()), Some(1));
        assert!(s.failed_group_versions().contains_key("batch/v1"));

        let apps = s.resources_for("apps/v1").expect("apps/v1");
        assert_eq!(
            apps.len(),
            1,
            "subresources are nested, not listed: {apps:?}"
        );
        let deploy = &apps[0];
        assert_eq!(deploy.resource.kind, "Deployment");
        assert_eq!(deploy.short_names, ["deploy"]);
        let subs: Vec<_> = deploy
            .subresources
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(subs, ["scale", "status"]);
        assert_eq!(
            deploy.subresources[0].response_kind,
            GroupVersionKind::gvk("autoscaling", "v1", "Scale")
        );
        assert_eq!(
            deploy.subresources[1].response_kind,
            GroupVersionKind::gvk("apps", "v1", "Deployment")
        );

        let core = s.resources_for("v1").expect("v1");
        let pods = core.iter().find(|r| r.resource.plural == "pods");
        let pods = pods.expect("pods");
        assert_eq!(pods.resource.api_version, "v1");
        assert!(pods.subresource("status").is_some() && pods.subresource("log").is_some());
        // No singularName: the lowercased kind stands in.
        let ns = core.iter().find(|r| r.resource.plural == "namespaces");
        let ns = ns.expect("namespaces");
        assert_eq!(ns.singular, "namespace");
        assert!(!ns.namespaced);
    }

    #[test]
    fn preferred_resources_take_each_resource_once() {
        let s = aggregated(samples::AGGREGATED_CORE, samples::AGGREGATED_APIS);
        let preferred = s.preferred_resources();
        let widgets: Vec<_> = preferred
            .iter()
            .filter(|r| r.resource.group == "example.com")
            .map(|r| (r.resource.plural.as_str(), r.resource.version.as_str()))
            .collect();
        // widgets in the preferred v1beta1; gadgets and gizmos only exist in v1.
        assert_eq!(
            widgets,
            [("widgets", "v1beta1"), ("gadgets", "v1"), ("gizmos", "v1")]
        );
    }

    #[test]
    fn bad_documents_name_the_path() {
        let err = root("/apis", false, b"<html>").expect_err("not JSON");
        assert!(err.to_string().contains("/apis"), "{err}");
        let err = root("/api", true, br#"{"kind":"Status"}"#).expect_err("wrong kind");
        assert!(err.to_string().contains("/api"), "{err}");
    }
}
