//! What discovery learns: API groups ([`ApiGroup`]), resources ([`ResourceInfo`]) with their
//! subresources ([`SubresourceInfo`]), and one consistent [`Snapshot`] of all of them.

use std::collections::{BTreeMap, HashMap};

use kube::core::{ApiResource, GroupVersionKind, GroupVersionResource};
use tokio::time::Instant;

/// An API group and the versions the server serves for it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[doc(alias = "APIGroup")]
pub struct ApiGroup {
    /// The group name; empty for the core (legacy) group.
    pub name: String,
    /// The served versions, most preferred first (as the server lists them).
    pub versions: Vec<String>,
    /// The version the server prefers.
    pub preferred_version: String,
}

impl ApiGroup {
    /// The versions with the preferred one first, then the others in the server's order.
    pub fn versions_by_preference(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.preferred_version.as_str())
            .filter(|v| !v.is_empty())
            .chain(
                self.versions
                    .iter()
                    .map(String::as_str)
                    .filter(move |v| *v != self.preferred_version),
            )
    }
}

/// One resource the server serves: where it lives, its kind and scope, and what can be done
/// with it. This is client-go's `APIResource` and, for the mapper, its `RESTMapping`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[doc(alias = "APIResource")]
#[doc(alias = "RESTMapping")]
pub struct ResourceInfo {
    /// Group, version, apiVersion, kind and plural: enough for [`Client::dynamic`].
    ///
    /// [`Client::dynamic`]: crate::Client::dynamic
    pub resource: ApiResource,
    /// Whether objects live in a namespace (`false`: cluster-scoped).
    pub namespaced: bool,
    /// The verbs the server accepts, e.g. `get`, `list`, `watch`, `create`.
    pub verbs: Vec<String>,
    /// Short names, e.g. `deploy` for deployments.
    pub short_names: Vec<String>,
    /// Categories, e.g. `all`.
    pub categories: Vec<String>,
    /// The singular name, e.g. `deployment` (the lowercased kind when the server gives none).
    pub singular: String,
    /// Subresources, e.g. `status` and `scale`.
    pub subresources: Vec<SubresourceInfo>,
}

impl ResourceInfo {
    /// The group, version and kind.
    pub fn gvk(&self) -> GroupVersionKind {
        GroupVersionKind::gvk(
            &self.resource.group,
            &self.resource.version,
            &self.resource.kind,
        )
    }

    /// The group, version and plural resource name.
    pub fn gvr(&self) -> GroupVersionResource {
        GroupVersionResource::gvr(
            &self.resource.group,
            &self.resource.version,
            &self.resource.plural,
        )
    }

    /// Whether the server accepts `verb` on this resource.
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// The subresource called `name` (e.g. `status`), if served.
    pub fn subresource(&self, name: &str) -> Option<&SubresourceInfo> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

/// A subresource such as `pods/status` or `deployments/scale`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubresourceInfo {
    /// The subresource name, e.g. `scale` (without the parent's name).
    pub name: String,
    /// The kind the subresource returns, e.g. `autoscaling/v1` `Scale`.
    pub response_kind: GroupVersionKind,
    /// The verbs the server accepts on it.
    pub verbs: Vec<String>,
}

/// Everything one discovery pass learned, taken at one moment. Cheap to share (the
/// [`Discovery`](super::Discovery) cache hands out `Arc<Snapshot>`).
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub(super) groups: Vec<ApiGroup>,
    pub(super) resources: HashMap<String, Vec<ResourceInfo>>,
    pub(super) failed: BTreeMap<String, String>,
    pub(super) aggregated: bool,
    pub(super) fetched_at: Instant,
}

impl Snapshot {
    /// The groups in the server's priority order, the core group first.
    pub fn groups(&self) -> &[ApiGroup] {
        &self.groups
    }

    /// The group called `name` (`""` for the core group).
    pub fn group(&self, name: &str) -> Option<&ApiGroup> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The resources of one group version (`"v1"`, `"apps/v1"`), subresources nested.
    pub fn resources_for(&self, group_version: &str) -> Option<&[ResourceInfo]> {
        self.resources.get(group_version).map(Vec::as_slice)
    }

    /// Group versions whose discovery failed (an aggregated API server that is down, a
    /// document marked stale), with the reason; they are retried on the next refresh.
    pub fn failed_group_versions(&self) -> &BTreeMap<String, String> {
        &self.failed
    }

    /// Whether the server answered with aggregated discovery (`apidiscovery.k8s.io`).
    pub fn is_aggregated(&self) -> bool {
        self.aggregated
    }

    /// When this snapshot was fetched.
    pub fn fetched_at(&self) -> Instant {
        self.fetched_at
    }

    /// Every group version's resources in priority order: groups in the server's order,
    /// and within a group the preferred version first, then the others.
    pub fn by_priority(&self) -> impl Iterator<Item = (&ApiGroup, &str, &[ResourceInfo])> {
        self.groups.iter().flat_map(move |group| {
            group.versions_by_preference().filter_map(move |version| {
                let resources = self.resources_for(&group_version(&group.name, version))?;
                Some((group, version, resources))
            })
        })
    }

    /// Each resource once, in the version the server prefers for it: the group's preferred
    /// version if it serves the resource, otherwise the most preferred version that does
    /// (client-go's `ServerPreferredResources`).
    pub fn preferred_resources(&self) -> Vec<&ResourceInfo> {
        let mut seen = std::collections::HashSet::new();
        self.by_priority()
            .flat_map(|(_, _, resources)| resources)
            .filter(|r| seen.insert((r.resource.group.as_str(), r.resource.plural.as_str())))
            .collect()
    }
}

/// The `group/version` string (`version` alone for the core group).
pub fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}
