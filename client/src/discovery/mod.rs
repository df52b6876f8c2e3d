//! Discovery with an in-memory cache: which API groups, versions and resources the server
//! serves (client-go's `discovery` with `discovery/cached/memory`).
//!
//! [`Discovery`] asks for aggregated discovery first (two requests, `/api` and `/apis`, answered
//! with `apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`s) and falls back to legacy discovery
//! (`/api`, `/apis`, then one `APIResourceList` per group version) when the server does not
//! offer it. The result is cached as one [`Snapshot`] until [`Discovery::invalidate`] or
//! [`Discovery::refresh`]; [`RestMapper`](crate::restmapper::RestMapper) builds on it.
//!
//! ```no_run
//! use ferrokube_client::Client;
//! use ferrokube_client::discovery::Discovery;
//!
//! # async fn demo(client: Client) -> Result<(), ferrokube_client::discovery::Error> {
//! let discovery = Discovery::new(client);
//! for r in discovery.server_resources_for("apps/v1").await? {
//!     println!("{} {} namespaced={}", r.resource.plural, r.resource.kind, r.namespaced);
//! }
//! # Ok(()) }
//! ```

mod decode;
mod resource;
#[cfg(test)]
pub(crate) mod samples;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use http::header::ACCEPT;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::core::discovery::v2::ACCEPT_AGGREGATED_DISCOVERY_V2;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::client::Client;

pub use resource::{ApiGroup, ResourceInfo, Snapshot, SubresourceInfo, group_version};

use decode::{Parts, Root};

/// Why discovery, or a lookup in what it found, failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A discovery request failed.
    #[error("discovery: fetching {path}")]
    Request {
        /// The path requested, e.g. `/apis`.
        path: String,
        /// What the client reported.
        #[source]
        source: Box<crate::Error>,
    },

    /// A discovery document was not the JSON that was expected.
    #[error("discovery: decoding the document from {path}")]
    Decode {
        /// The path requested.
        path: String,
        /// Where serde stopped.
        #[source]
        source: serde_json::Error,
    },

    /// The server does not serve this group version.
    #[error("discovery: the server does not serve {group_version}")]
    #[doc(alias = "ErrCacheNotFound")]
    GroupVersionNotFound {
        /// The group version looked up, e.g. `apps/v1`.
        group_version: String,
    },

    /// The server lists this group version but its discovery failed (an aggregated API
    /// server that is down, or a document the server marked stale).
    #[error("discovery: {group_version} is unavailable: {reason}")]
    #[doc(alias = "ErrGroupDiscoveryFailed")]
    GroupVersionUnavailable {
        /// The group version looked up.
        group_version: String,
        /// What went wrong.
        reason: String,
    },

    /// Nothing the server serves matches what was looked up.
    #[error("no matches for {what}")]
    #[doc(alias = "NoKindMatchError")]
    #[doc(alias = "NoResourceMatchError")]
    NoMatch {
        /// What was looked up, e.g. `resource "wdg"` or `kind "Widget" in version "v1"`.
        what: String,
    },

    /// Several resources match equally well.
    #[error("{what} is ambiguous: it matches {}", candidates.join(", "))]
    #[doc(alias = "AmbiguousResourceError")]
    Ambiguous {
        /// What was looked up.
        what: String,
        /// The matches, as `plural.version.group`.
        candidates: Vec<String>,
    },
}

impl Error {
    /// Whether nothing matched (client-go's `meta.IsNoMatchError`).
    pub fn is_no_match(&self) -> bool {
        matches!(self, Self::NoMatch { .. })
    }
}

/// A `Result` with discovery's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Discovery of the server's groups and resources, cached in memory. Cheap to clone; clones
/// share the cache; safe to use from many tasks (concurrent first uses share one fetch).
#[derive(Clone)]
#[doc(alias = "DiscoveryClient")]
#[doc(alias = "CachedDiscoveryInterface")]
#[doc(alias = "memCacheClient")]
pub struct Discovery {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    state: Mutex<State>,
    /// Held while fetching, so that concurrent callers share one fetch.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    snapshot: Option<Arc<Snapshot>>,
    /// Bumped by `invalidate`, so that a fetch started before it is not cached.
    epoch: u64,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.state.lock();
        f.debug_struct("Discovery")
            .field("cached", &state.snapshot.is_some())
            .field("epoch", &state.epoch)
            .finish_non_exhaustive()
    }
}

impl Discovery {
    /// Discovery through `client`; nothing is fetched until first used.
    pub fn new(client: Client) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                state: Mutex::new(State::default()),
                fetching: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The client discovery uses.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The cached snapshot, fetching it first if there is none.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        if let Some(s) = self.cached() {
            return Ok(s);
        }
        let _fetching = self.inner.fetching.lock().await;
        if let Some(s) = self.cached() {
            return Ok(s);
        }
        self.fetch_locked().await
    }

    /// The cached snapshot, if any (never fetches).
    pub fn cached(&self) -> Option<Arc<Snapshot>> {
        self.inner.state.lock().snapshot.clone()
    }

    /// Whether the cache holds a snapshot (client-go's `Fresh` for the memory cache).
    #[doc(alias = "Fresh")]
    pub fn is_fresh(&self) -> bool {
        self.inner.state.lock().snapshot.is_some()
    }

    /// Drops the cache: the next use fetches again, and a fetch already under way is not
    /// cached.
    pub fn invalidate(&self) {
        let mut state = self.inner.state.lock();
        state.snapshot = None;
        state.epoch += 1;
    }

    /// Fetches a new snapshot now and caches it.
    pub async fn refresh(&self) -> Result<Arc<Snapshot>> {
        let _fetching = self.inner.fetching.lock().await;
        self.fetch_locked().await
    }

    /// Fetches a new snapshot unless the cache already holds a newer one than `seen` (one that
    /// another task fetched meanwhile), so that concurrent refreshes share one fetch.
    pub async fn refresh_if_unchanged(&self, seen: &Arc<Snapshot>) -> Result<Arc<Snapshot>> {
        let _fetching = self.inner.fetching.lock().await;
        match self.cached() {
            Some(s) if !Arc::ptr_eq(&s, seen) => Ok(s),
            _ => self.fetch_locked().await,
        }
    }

    /// The server's API groups, the core group first.
    #[doc(alias = "ServerGroups")]
    pub async fn server_groups(&self) -> Result<Vec<ApiGroup>> {
        Ok(self.snapshot().await?.groups().to_vec())
    }

    /// The resources of one group version (`"v1"`, `"apps/v1"`), subresources nested.
    #[doc(alias = "ServerResourcesForGroupVersion")]
    pub async fn server_resources_for(&self, group_version: &str) -> Result<Vec<ResourceInfo>> {
        let snapshot = self.snapshot().await?;
        if let Some(resources) = snapshot.resources_for(group_version) {
            return Ok(resources.to_vec());
        }
        Err(match snapshot.failed_group_versions().get(group_version) {
            Some(reason) => Error::GroupVersionUnavailable {
                group_version: group_version.to_owned(),
                reason: reason.clone(),
            },
            None => Error::GroupVersionNotFound {
                group_version: group_version.to_owned(),
            },
        })
    }

    /// Each resource once, in the version the server prefers for it.
    #[doc(alias = "ServerPreferredResources")]
    pub async fn preferred_resources(&self) -> Result<Vec<ResourceInfo>> {
        let snapshot = self.snapshot().await?;
        Ok(snapshot
            .preferred_resources()
            .into_iter()
            .cloned()
            .collect())
    }

    /// Fetches and caches a snapshot; the caller holds `fetching`.
    async fn fetch_locked(&self) -> Result<Arc<Snapshot>> {
        let epoch = self.inner.state.lock().epoch;
        let snapshot = Arc::new(fetch(&self.inner.client).await?);
        let mut state = self.inner.state.lock();
        if state.epoch == epoch {
            state.snapshot = Some(Arc::clone(&snapshot));
        }
        Ok(snapshot)
    }
}

/// One discovery pass: aggregated when the server offers it, legacy otherwise.
async fn fetch(client: &Client) -> Result<Snapshot> {
    let (core, apis) = futures::join!(root(client, "/api", true), root(client, "/apis", false));
    let mut parts = Parts::default();
    for root in [core?, apis?].into_iter().flatten() {
        parts.add_root(root);
    }
    let legacy = parts.legacy_group_versions();
    let lists = futures::future::join_all(legacy.into_iter().map(|(group, version)| async {
        let result = client
            .get()
            .group_version(&group, &version)
            .decode::<APIResourceList>()
            .await;
        (group, version, result)
    }))
    .await;
    for (group, version, result) in lists {
        match result {
            Ok(list) => parts.add_legacy_resources(&group, &version, list),
            Err(e) => {
                let gv = group_version(&group, &version);
                tracing::debug!(group_version = %gv, error = %e, "discovery of a group version failed");
                parts.add_failed(gv, e.to_string());
            }
        }
    }
    let snapshot = parts.finish(Instant::now());
    tracing::debug!(
        groups = snapshot.groups().len(),
        aggregated = snapshot.is_aggregated(),
        failed = snapshot.failed_group_versions().len(),
        "discovery fetched"
    );
    Ok(snapshot)
}

/// `/api` or `/apis`; `None` when the server has no such path or forbids it (as client-go).
async fn root(client: &Client, path: &str, core: bool) -> Result<Option<Root>> {
    let bytes = client
        .get()
        .abs_path(path)
        .header(ACCEPT, ACCEPT_AGGREGATED_DISCOVERY_V2)
        .bytes()
        .await;
    match bytes {
        Ok(bytes) => decode::root(path, core, &bytes).map(Some),
        Err(e) if e.is_not_found() || e.is_forbidden() => {
            tracing::debug!(path, error = %e, "discovery root unavailable: taken as empty");
            Ok(None)
        }
        Err(source) => Err(Error::Request {
            path: path.to_owned(),
            source: Box::new(source),
        }),
    }
}
