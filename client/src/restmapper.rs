//! A RESTMapper over cached discovery (client-go's `restmapper.DeferredDiscoveryRESTMapper`):
//! kind → resource and scope ([`RestMapper::rest_mapping`]), and resource names as a user
//! types them → kind ([`RestMapper::kind_for`]): plurals (`deployments`), singulars
//! (`deployment`), kinds (`Deployment`), short names (`deploy`, `cm`), group-qualified
//! (`deployments.apps`) and fully qualified (`deployments.v1.apps`) names, case-insensitively.
//!
//! Ties go to the server's priority order: groups as discovery lists them (the core group
//! first), and within a group the preferred version first. A lookup that finds nothing
//! refreshes discovery once and tries again, so resources installed after the cache was filled
//! (a new CRD) are found; refreshes are rate-limited ([`RestMapper::min_refresh_interval`]) so
//! a flood of misses does not hammer the server.
//!
//! ```no_run
//! use ferrokube_client::Client;
//! use ferrokube_client::discovery::Discovery;
//! use ferrokube_client::restmapper::RestMapper;
//!
//! # async fn demo(client: Client) -> Result<(), Box<dyn std::error::Error>> {
//! let mapper = RestMapper::new(Discovery::new(client.clone()));
//! let deploy = mapper.resource_for("deploy").await?;
//! assert_eq!(deploy.resource.api_version, "apps/v1");
//! let namespace = deploy.namespaced.then_some("default");
//! let list = client.dynamic(&deploy.resource, namespace).list(&Default::default()).await?;
//! println!("{} deployments", list.items.len());
//! # Ok(()) }
//! ```

use std::time::Duration;

use kube::core::GroupVersionKind;

use crate::discovery::{Discovery, Error, ResourceInfo, Result, Snapshot, group_version};

/// How long a cached snapshot is trusted before a miss may refresh it, by default.
pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Maps kinds to resources and resource names to kinds, from cached [`Discovery`], refreshing
/// it once on a miss. Cheap to clone; clones share the discovery cache.
#[derive(Clone, Debug)]
#[doc(alias = "DeferredDiscoveryRESTMapper")]
#[doc(alias = "RESTMapper")]
pub struct RestMapper {
    discovery: Discovery,
    min_refresh_interval: Duration,
}

impl RestMapper {
    /// A mapper over `discovery` (whose cache it shares).
    pub fn new(discovery: Discovery) -> Self {
        Self {
            discovery,
            min_refresh_interval: DEFAULT_MIN_REFRESH_INTERVAL,
        }
    }

    /// A miss refreshes discovery only when the cached snapshot is at least this old
    /// (default [`DEFAULT_MIN_REFRESH_INTERVAL`]); misses that come together share one
    /// refresh. `Duration::ZERO` refreshes on every miss.
    #[must_use]
    pub fn min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    /// The discovery cache.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Drops the discovery cache: the next lookup fetches again.
    #[doc(alias = "Reset")]
    pub fn reset(&self) {
        self.discovery.invalidate();
    }

    /// The resource for a kind. An empty `gvk.version` picks the most preferred version that
    /// serves the kind. The kind is matched exactly (`Deployment`).
    #[doc(alias = "RESTMapping")]
    pub async fn rest_mapping(&self, gvk: &GroupVersionKind) -> Result<ResourceInfo> {
        self.lookup(|s| {
            let mut mappings = kind_mappings(s, gvk)?;
            Ok(mappings.swap_remove(0))
        })
        .await
    }

    /// The resources for a kind in every version that serves it, most preferred first.
    #[doc(alias = "RESTMappings")]
    pub async fn rest_mappings(&self, group: &str, kind: &str) -> Result<Vec<ResourceInfo>> {
        let gvk = GroupVersionKind::gvk(group, "", kind);
        self.lookup(|s| kind_mappings(s, &gvk)).await
    }

    /// The kind of a resource as a user names it: `deployments`, `deployment`, `Deployment`,
    /// `deploy`, `deployments.apps` or `deployments.v1.apps`.
    #[doc(alias = "KindFor")]
    pub async fn kind_for(&self, resource: &str) -> Result<GroupVersionKind> {
        Ok(self.resource_for(resource).await?.gvk())
    }

    /// Every kind `resource` may name, in priority order.
    #[doc(alias = "KindsFor")]
    pub async fn kinds_for(&self, resource: &str) -> Result<Vec<GroupVersionKind>> {
        let resources = self.resources_for(resource).await?;
        let mut kinds: Vec<GroupVersionKind> = Vec::with_capacity(resources.len());
        for gvk in resources.iter().map(ResourceInfo::gvk) {
            if !kinds.contains(&gvk) {
                kinds.push(gvk);
            }
        }
        Ok(kinds)
    }

    /// The resource `resource` names (see [`kind_for`](Self::kind_for)), in the most
    /// preferred group and version; an error if several resources match there.
    #[doc(alias = "ResourceFor")]
    pub async fn resource_for(&self, resource: &str) -> Result<ResourceInfo> {
        self.lookup(|s| best_match(s, resource)).await
    }

    /// Every resource `resource` may name, in every version, in priority order.
    #[doc(alias = "ResourcesFor")]
    pub async fn resources_for(&self, resource: &str) -> Result<Vec<ResourceInfo>> {
        self.lookup(|s| {
            let found = matches(s, resource);
            if found.is_empty() {
                return Err(no_resource(resource));
            }
            Ok(found.into_iter().map(|(_, r)| r.clone()).collect())
        })
        .await
    }

    /// Runs `find` on the cached snapshot; on a miss, refreshes discovery (unless the
    /// snapshot is younger than the minimum interval) and runs it again.
    async fn lookup<T>(&self, find: impl Fn(&Snapshot) -> Result<T>) -> Result<T> {
        let snapshot = self.discovery.snapshot().await?;
        match find(&snapshot) {
            Err(e) if e.is_no_match() => {
                let age = snapshot.fetched_at().elapsed();
                if age < self.min_refresh_interval {
                    tracing::trace!(error = %e, ?age, "miss on recent discovery: not refreshing");
                    return Err(e);
                }
                tracing::debug!(error = %e, "miss on cached discovery: refreshing");
                let fresh = self.discovery.refresh_if_unchanged(&snapshot).await?;
                find(&fresh)
            }
            result => result,
        }
    }
}

// === lookups in one snapshot ===

/// The resources serving `gvk` (any version when it is empty), most preferred first.
fn kind_mappings(s: &Snapshot, gvk: &GroupVersionKind) -> Result<Vec<ResourceInfo>> {
    let found: Vec<ResourceInfo> = s
        .by_priority()
        .filter(|(g, v, _)| g.name == gvk.group && (gvk.version.is_empty() || *v == gvk.version))
        .flat_map(|(_, _, resources)| resources)
        .filter(|r| r.resource.kind == gvk.kind)
        .cloned()
        .collect();
    if found.is_empty() {
        let what = match (gvk.group.is_empty(), gvk.version.is_empty()) {
            (_, false) => format!(
                "kind {:?} in version {:?}",
                gvk.kind,
                group_version(&gvk.group, &gvk.version)
            ),
            (true, true) => format!("kind {:?} in the core group", gvk.kind),
            (false, true) => format!("kind {:?} in group {:?}", gvk.kind, gvk.group),
        };
        return Err(Error::NoMatch { what });
    }
    Ok(found)
}

/// The one resource `arg` names in the best-ranked group version that has a match.
fn best_match(s: &Snapshot, arg: &str) -> Result<ResourceInfo> {
    let found = matches(s, arg);
    let Some(&(best, first)) = found.first() else {
        return Err(no_resource(arg));
    };
    let mut top: Vec<&ResourceInfo> = Vec::new();
    for (_, r) in found.into_iter().filter(|(rank, _)| *rank == best) {
        if !top.contains(&r) {
            top.push(r);
        }
    }
    if top.len() > 1 {
        return Err(Error::Ambiguous {
            what: format!("resource {arg:?}"),
            candidates: top.iter().map(|r| qualified(r)).collect(),
        });
    }
    Ok(first.clone())
}

fn no_resource(arg: &str) -> Error {
    Error::NoMatch {
        what: format!("resource {arg:?}"),
    }
}

/// `plural.version.group` (`plural.version` in the core group), as a user can type it.
fn qualified(r: &ResourceInfo) -> String {
    let a = &r.resource;
    if a.group.is_empty() {
        format!("{}.{}", a.plural, a.version)
    } else {
        format!("{}.{}.{}", a.plural, a.version, a.group)
    }
}

/// One reading of what a user typed.
struct Query<'a> {
    name: &'a str,
    version: Option<&'a str>,
    group: Option<&'a str>,
}

/// The readings of `arg`, as kubectl's `ParseResourceArg`: `name.version.group` (with two
/// dots or more), then `name.group`, or a bare `name`.
fn queries(arg: &str) -> Vec<Query<'_>> {
    let mut out = Vec::new();
    if arg.matches('.').count() >= 2 {
        let mut parts = arg.splitn(3, '.');
        if let (Some(name), Some(version), Some(group)) = (parts.next(), parts.next(), parts.next())
        {
            out.push(Query {
                name,
                version: Some(version),
                group: Some(group),
            });
        }
    }
    out.push(match arg.split_once('.') {
        Some((name, group)) => Query {
            name,
            version: None,
            group: Some(group),
        },
        None => Query {
            name: arg,
            version: None,
            group: None,
        },
    });
    out
}

/// Everything `arg` may name, each with the rank of its group version (lower is preferred),
/// in priority order. The first reading of `arg` that matches wins; within it, plural,
/// singular and kind names win over short names.
fn matches<'s>(s: &'s Snapshot, arg: &str) -> Vec<(usize, &'s ResourceInfo)> {
    let arg = arg.trim();
    if arg.is_empty() {
        return Vec::new();
    }
    for q in queries(arg) {
        for by_short_name in [false, true] {
            let found: Vec<_> = s
                .by_priority()
                .enumerate()
                .filter(|(_, (g, v, _))| {
                    q.group.is_none_or(|qg| g.name.eq_ignore_ascii_case(qg))
                        && q.version.is_none_or(|qv| v.eq_ignore_ascii_case(qv))
                })
                .flat_map(|(rank, (_, _, resources))| resources.iter().map(move |r| (rank, r)))
                .filter(|(_, r)| {
                    if by_short_name {
                        r.short_names.iter().any(|n| n.eq_ignore_ascii_case(q.name))
                    } else {
                        [&r.resource.plural, &r.singular, &r.resource.kind]
                            .iter()
                            .any(|n| n.eq_ignore_ascii_case(q.name))
                    }
                })
                .collect();
            if !found.is_empty() {
                return found;
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::samples;
    use crate::discovery::tests::FakeServer;

    fn gvk(g: &str, v: &str, k: &str) -> GroupVersionKind {
        GroupVersionKind::gvk(g, v, k)
    }

    fn mapper(server: &FakeServer) -> RestMapper {
        RestMapper::new(Discovery::new(server.client()))
    }

    #[tokio::test]
    async fn names_as_users_type_them() {
        let server = FakeServer::aggregated();
        let mapper = mapper(&server);
        let deployment = gvk("apps", "v1", "Deployment");
        let cases = [
            ("deployments", &deployment),
            ("deployment", &deployment),
            ("Deployment", &deployment),
            ("deploy", &deployment),
            ("DEPLOY", &deployment),
            ("deployments.apps", &deployment),
            ("Deployment.apps", &deployment),
            ("deployments.v1.apps", &deployment),
            ("cm", &gvk("", "v1", "ConfigMap")),
            ("configmap", &gvk("", "v1", "ConfigMap")),
            ("ns", &gvk("", "v1", "Namespace")),
            // The core group comes first, the named group when asked for.
            ("events", &gvk("", "v1", "Event")),
            ("ev", &gvk("", "v1", "Event")),
            ("events.events.k8s.io", &gvk("events.k8s.io", "v1", "Event")),
            // The preferred version (v1beta1, listed first) wins over v1.
            ("wdg", &gvk("example.com", "v1beta1", "Widget")),
            ("Widget", &gvk("example.com", "v1beta1", "Widget")),
            (
                "widgets.v1.example.com",
                &gvk("example.com", "v1", "Widget"),
            ),
            // Only served in v1, the non-preferred version.
            ("gadget", &gvk("example.com", "v1", "Gadget")),
        ];
        for (arg, want) in cases {
            let got = mapper.kind_for(arg).await;
            assert_eq!(got.as_ref().ok(), Some(want), "kind_for({arg:?}) = {got:?}");
        }
        let deploy = mapper.resource_for("deploy").await.expect("deploy");
        assert_eq!(deploy.resource.plural, "deployments");
        assert!(deploy.namespaced);
        let ns = mapper.resource_for("namespace").await.expect("namespace");
        assert!(!ns.namespaced);
        assert_eq!(server.paths().len(), 2, "all from one fetch");
    }

    #[tokio::test]
    async fn misses_and_ambiguities_say_what_was_looked_up() {
        let server = FakeServer::aggregated();
        let mapper = mapper(&server);
        for arg in [
            "nothing",
            "deployments.batch",
            "deployments.v2.apps",
            "",
            "status",
        ] {
            let err = mapper.kind_for(arg).await.expect_err(arg);
            assert!(err.is_no_match(), "{arg:?}: {err:?}");
            assert_eq!(err.to_string(), format!("no matches for resource {arg:?}"));
        }
        let err = mapper
            .kind_for("g")
            .await
            .expect_err("two resources in example.com/v1");
        assert_eq!(
            err.to_string(),
            r#"resource "g" is ambiguous: it matches gadgets.v1.example.com, gizmos.v1.example.com"#
        );
        // Plurals win over short names.
        let events = mapper.resources_for("events").await.expect("events");
        assert_eq!(events.len(), 2);
    }

    #[tokio::test]
    async fn resources_for_lists_every_version_in_priority_order() {
        let server = FakeServer::aggregated();
        let mapper = mapper(&server);
        let widgets = mapper.resources_for("widgets").await.expect("widgets");
        let versions: Vec<_> = widgets
            .iter()
            .map(|r| r.resource.version.as_str())
            .collect();
        assert_eq!(versions, ["v1beta1", "v1"]);
        let kinds = mapper.kinds_for("wdg").await.expect("wdg");
        assert_eq!(
            kinds,
            [
                gvk("example.com", "v1beta1", "Widget"),
                gvk("example.com", "v1", "Widget")
            ]
        );
        let g = mapper.resources_for("g").await.expect("g");
        assert_eq!(g.len(), 2);
    }

    #[tokio::test]
    async fn rest_mapping_by_kind() {
        let server = FakeServer::aggregated();
        let mapper = mapper(&server);
        let m = mapper
            .rest_mapping(&gvk("apps", "v1", "Deployment"))
            .await
            .expect("Deployment");
        assert_eq!(
            m.gvr(),
            kube::core::GroupVersionResource::gvr("apps", "v1", "deployments")
        );
        assert!(m.namespaced);
        let m = mapper
            .rest_mapping(&gvk("", "v1", "Namespace"))
            .await
            .expect("Namespace");
        assert_eq!(
            (m.resource.plural.as_str(), m.namespaced),
            ("namespaces", false)
        );

        // No version: the preferred one; a version: that one.
        let m = mapper.rest_mapping(&gvk("example.com", "", "Widget")).await;
        assert_eq!(m.expect("Widget").resource.version, "v1beta1");
        let m = mapper
            .rest_mapping(&gvk("example.com", "v1", "Widget"))
            .await;
        assert_eq!(m.expect("Widget v1").resource.version, "v1");
        let all = mapper
            .rest_mappings("example.com", "Widget")
            .await
            .expect("all");
        assert_eq!(all.len(), 2);

        let cases = [
            (
                gvk("apps", "v1", "Nope"),
                r#"kind "Nope" in version "apps/v1""#,
            ),
            (gvk("apps", "", "Nope"), r#"kind "Nope" in group "apps""#),
            (gvk("", "", "Nope"), r#"kind "Nope" in the core group"#),
            // Kinds are matched exactly.
            (
                gvk("apps", "v1", "deployment"),
                r#"kind "deployment" in version "apps/v1""#,
            ),
        ];
        for (gvk, what) in cases {
            let err = mapper.rest_mapping(&gvk).await.expect_err(what);
            assert_eq!(err.to_string(), format!("no matches for {what}"));
        }
    }

    /// The sample `/apis` without the `example.com` group (the CRD not installed yet).
    fn apis_without_crds() -> String {
        let mut doc: serde_json::Value =
            serde_json::from_str(samples::AGGREGATED_APIS).expect("sample");
        if let Some(items) = doc["items"].as_array_mut() {
            items.retain(|g| g["metadata"]["name"] != "example.com");
        }
        doc.to_string()
    }

    #[tokio::test(start_paused = true)]
    async fn a_miss_refreshes_once_per_interval() {
        let server = FakeServer::aggregated();
        server.route("/apis", 200, &apis_without_crds());
        let mapper = mapper(&server);
        mapper.kind_for("deploy").await.expect("deploy");
        assert_eq!(server.paths().len(), 2);

        // A miss right after the fetch does not refresh.
        assert!(mapper.kind_for("wdg").await.is_err_and(|e| e.is_no_match()));
        assert_eq!(server.paths().len(), 2);

        // Later, a flood of misses shares one refresh.
        tokio::time::advance(DEFAULT_MIN_REFRESH_INTERVAL).await;
        let misses = (0..10).map(|_| mapper.kind_for("nothing"));
        for miss in futures::future::join_all(misses).await {
            assert!(miss.is_err_and(|e| e.is_no_match()));
        }
        assert_eq!(server.paths().len(), 4);

        // The CRD is installed: found once the interval has passed.
        server.route("/apis", 200, samples::AGGREGATED_APIS);
        assert!(mapper.kind_for("wdg").await.is_err());
        assert_eq!(server.paths().len(), 4);
        tokio::time::advance(DEFAULT_MIN_REFRESH_INTERVAL).await;
        let wdg = mapper
            .kind_for("wdg")
            .await
            .expect("found after the refresh");
        assert_eq!(wdg, gvk("example.com", "v1beta1", "Widget"));
        assert_eq!(server.paths().len(), 6);
        let widget = mapper
            .rest_mapping(&gvk("example.com", "v1", "Widget"))
            .await;
        assert_eq!(widget.expect("Widget").resource.plural, "widgets");

        // Hits never refresh, however old the cache.
        tokio::time::advance(Duration::from_secs(3600)).await;
        mapper.kind_for("cm").await.expect("cm");
        assert_eq!(server.paths().len(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_interval_refreshes_on_every_miss_and_reset_drops_the_cache() {
        let server = FakeServer::aggregated();
        let mapper = mapper(&server).min_refresh_interval(Duration::ZERO);
        for expected in [4, 6] {
            assert!(mapper.kind_for("nothing").await.is_err());
            assert_eq!(server.paths().len(), expected);
        }
        mapper.reset();
        assert!(!mapper.discovery().is_fresh());
        mapper.kind_for("cm").await.expect("cm");
        assert_eq!(server.paths().len(), 8);
    }
}
