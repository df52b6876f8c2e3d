//! `ferrokube_runtime::controllerutil` against a real API server: create_or_update and
//! create_or_patch reading through a started cache, and owner references the API server
//! accepts.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use ferrokube_runtime::cache::{Cache, CacheObject, CacheOptions};
use ferrokube_runtime::client::{Api, Client, WriteOptions};
use ferrokube_runtime::controllerutil::{self as cu, OperationResult};
use ferrokube_runtime::{CachedClient, CancellationToken};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use tests::{Context, Test, eventually};

pub fn tests() -> Vec<Test> {
    vec![
        Test::new(
            "controllerutil::create_or_update_creates_updates_and_leaves_unchanged",
            create_or_update,
        ),
        Test::new(
            "controllerutil::create_or_patch_patches_object_and_status",
            create_or_patch,
        ),
        Test::new(
            "controllerutil::owner_references_accepted_by_the_server",
            owner_references,
        ),
    ]
}

/// A [`CachedClient`] over a cache of the test's namespace, running until dropped.
struct Running {
    client: CachedClient,
    api: Client,
    cancel: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start(ctx: &Context) -> anyhow::Result<Running> {
    let api = Client::from_kube(ctx.client.clone());
    let cache = Cache::new(
        api.clone(),
        CacheOptions::default().namespaces([ctx.namespace.clone()]),
    );
    let cancel = CancellationToken::new();
    tokio::spawn({
        let (cache, cancel) = (cache.clone(), cancel.clone());
        async move {
            if let Err(e) = cache.start(cancel).await {
                tracing::error!(error = %e, "the cache stopped");
            }
        }
    });
    let running = Running {
        client: CachedClient::new(cache.clone(), api.clone()),
        api,
        cancel,
    };
    // Reads before `start` ran fail with NotStarted.
    eventually("the cache to start", Duration::from_secs(10), || {
        let cache = &cache;
        async move { cache.is_started().then_some(()) }
    })
    .await?;
    Ok(running)
}

/// Waits until the cache holds `object` at its resourceVersion (the helpers read the cache).
async fn cached<K: CacheObject<DynamicType = ()>>(
    client: &CachedClient,
    object: &K,
) -> anyhow::Result<()> {
    let meta = object.meta();
    let (namespace, name) = (
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    );
    let version = meta.resource_version.clone();
    eventually(
        "the cache to see the write",
        Duration::from_secs(30),
        || {
            let version = &version;
            async move {
                let got = client.get::<K>(namespace, name).await.ok()??;
                (got.meta().resource_version == *version).then_some(())
            }
        },
    )
    .await
}

fn named<K: kube::Resource>(mut object: K, namespace: &str, name: &str) -> K {
    let meta = object.meta_mut();
    meta.name = Some(name.to_owned());
    meta.namespace = Some(namespace.to_owned());
    object
}

fn set_mode(cm: &mut ConfigMap, mode: &str) -> Result<(), std::convert::Infallible> {
    cm.data
        .get_or_insert_default()
        .insert("mode".to_owned(), mode.to_owned());
    Ok(())
}

fn mode(cm: &ConfigMap) -> Option<&str> {
    cm.data.as_ref()?.get("mode").map(String::as_str)
}

async fn create_or_update(ctx: Context) -> anyhow::Result<()> {
    let running = start(&ctx).await?;
    let client = &running.client;
    let api: Api<ConfigMap> = running.api.namespaced(&ctx.namespace);
    let cm = || named(ConfigMap::default(), &ctx.namespace, "settings");

    let (created, result) = cu::create_or_update(client, cm(), |cm| set_mode(cm, "fast")).await?;
    ensure!(result == OperationResult::Created, "first call: {result}");
    ensure!(
        created.metadata.uid.is_some(),
        "the server's answer has no uid"
    );
    let stored = api.get("settings").await?;
    ensure!(mode(&stored) == Some("fast"), "stored {:?}", stored.data);
    cached(client, &created).await?;

    // The same desired state: no write at all.
    let (same, result) = cu::create_or_update(client, cm(), |cm| set_mode(cm, "fast")).await?;
    ensure!(result == OperationResult::Unchanged, "same state: {result}");
    ensure!(
        same.metadata.resource_version == created.metadata.resource_version,
        "unchanged, yet at another version"
    );
    let stored = api.get("settings").await?;
    ensure!(
        stored.metadata.resource_version == created.metadata.resource_version,
        "an unchanged object was written"
    );

    // A change: updated from the cached copy (fields of the given object other than its key
    // are not used once the object exists).
    let mut ignored = cm();
    ignored.data = Some(BTreeMap::from([("other".to_owned(), "x".to_owned())]));
    let (updated, result) =
        cu::create_or_update(client, ignored, |cm| set_mode(cm, "slow")).await?;
    ensure!(
        result == OperationResult::Updated,
        "changed state: {result}"
    );
    let stored = api.get("settings").await?;
    ensure!(
        mode(&stored) == Some("slow") && stored.data.as_ref().is_some_and(|d| d.len() == 1),
        "stored {:?}",
        stored.data
    );
    ensure!(
        stored.metadata.resource_version == updated.metadata.resource_version,
        "returned {:?}, stored {:?}",
        updated.metadata.resource_version,
        stored.metadata.resource_version
    );
    cached(client, &updated).await?;

    // Refusals: nothing is written.
    let err = cu::create_or_update(client, cm(), |cm: &mut ConfigMap| {
        cm.metadata.name = Some("renamed".to_owned());
        Ok::<_, std::convert::Infallible>(())
    })
    .await
    .err()
    .context("a renaming mutate function was accepted")?;
    ensure!(matches!(err, cu::Error::KeyMutated { .. }), "{err:?}");
    let err = cu::create_or_update(client, cm(), |_: &mut ConfigMap| Err("no config source"))
        .await
        .err()
        .context("a failing mutate function was accepted")?;
    ensure!(matches!(err, cu::Error::Mutate(_)), "{err:?}");
    let err = cu::create_or_update(client, ConfigMap::default(), |cm| set_mode(cm, "x"))
        .await
        .err()
        .context("an unnamed object was accepted")?;
    ensure!(matches!(err, cu::Error::Unnamed { .. }), "{err:?}");
    let stored = api.get("settings").await?;
    ensure!(
        stored.metadata.resource_version == updated.metadata.resource_version,
        "a refused call wrote the object"
    );
    ensure!(
        api.get_opt("renamed").await?.is_none(),
        "a refused call created an object"
    );
    Ok(())
}

fn web_deployment(namespace: &str) -> Deployment {
    let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
    let mut d = named(Deployment::default(), namespace, "web");
    d.spec = Some(DeploymentSpec {
        selector: LabelSelector {
            match_labels: Some(labels.clone()),
            ..LabelSelector::default()
        },
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".to_owned(),
                    image: Some("registry.k8s.io/pause:3.10".to_owned()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        },
        ..DeploymentSpec::default()
    });
    d
}

fn team(d: &Deployment) -> Option<&str> {
    d.metadata.labels.as_ref()?.get("team").map(String::as_str)
}

/// What a reconciler of the test wants: a team label (or none), two replicas, and a status.
fn desired(
    team: Option<&'static str>,
    status: Option<DeploymentStatus>,
) -> impl FnOnce(&mut Deployment) -> Result<(), std::convert::Infallible> {
    move |d| {
        match team {
            Some(t) => {
                d.metadata
                    .labels
                    .get_or_insert_default()
                    .insert("team".to_owned(), t.to_owned());
            }
            None => {
                if let Some(labels) = d.metadata.labels.as_mut() {
                    labels.remove("team");
                }
            }
        }
        d.spec.get_or_insert_default().replicas = Some(2);
        if let Some(status) = status {
            d.status = Some(status);
        }
        Ok(())
    }
}

fn status(observed_generation: i64, collision_count: i32) -> Option<DeploymentStatus> {
    Some(DeploymentStatus {
        observed_generation: Some(observed_generation),
        collision_count: Some(collision_count),
        ..DeploymentStatus::default()
    })
}

async fn create_or_patch(ctx: Context) -> anyhow::Result<()> {
    let running = start(&ctx).await?;
    let client = &running.client;
    let api: Api<Deployment> = running.api.namespaced(&ctx.namespace);
    let web = || web_deployment(&ctx.namespace);

    let (created, result) = cu::create_or_patch(client, web(), desired(Some("a"), None)).await?;
    ensure!(result == OperationResult::Created, "first call: {result}");
    ensure!(
        team(&created) == Some("a"),
        "created {:?}",
        created.metadata.labels
    );
    cached(client, &created).await?;

    let (same, result) = cu::create_or_patch(client, web(), desired(Some("a"), None)).await?;
    ensure!(result == OperationResult::Unchanged, "same state: {result}");
    ensure!(
        api.get("web").await?.metadata.resource_version == created.metadata.resource_version
            && same.metadata.resource_version == created.metadata.resource_version,
        "an unchanged object was written"
    );

    // The object only.
    let (patched, result) = cu::create_or_patch(client, web(), desired(Some("b"), None)).await?;
    ensure!(result == OperationResult::Updated, "label change: {result}");
    let stored = api.get("web").await?;
    ensure!(
        team(&stored) == Some("b"),
        "stored {:?}",
        stored.metadata.labels
    );
    ensure!(
        stored.spec.as_ref().and_then(|s| s.replicas) == Some(2),
        "the patch lost the replicas"
    );
    cached(client, &patched).await?;

    // The status only.
    let (patched, result) =
        cu::create_or_patch(client, web(), desired(Some("b"), status(1, 1))).await?;
    ensure!(
        result == OperationResult::UpdatedStatusOnly,
        "status change: {result}"
    );
    let stored = api.get("web").await?;
    let stored_status = stored.status.clone().unwrap_or_default();
    ensure!(
        stored_status.observed_generation == Some(1) && stored_status.collision_count == Some(1),
        "stored status {stored_status:?}"
    );
    ensure!(
        team(&stored) == Some("b"),
        "stored {:?}",
        stored.metadata.labels
    );
    ensure!(
        patched.metadata.resource_version == stored.metadata.resource_version,
        "returned a stale object"
    );
    cached(client, &patched).await?;

    // Both; the label is removed (a `null` in the merge patch).
    let (patched, result) = cu::create_or_patch(client, web(), desired(None, status(1, 2))).await?;
    ensure!(
        result == OperationResult::UpdatedStatus,
        "both changed: {result}"
    );
    let stored = api.get("web").await?;
    ensure!(
        team(&stored).is_none(),
        "the label stayed: {:?}",
        stored.metadata.labels
    );
    let stored_status = stored.status.clone().unwrap_or_default();
    ensure!(
        stored_status.collision_count == Some(2) && stored_status.observed_generation == Some(1),
        "stored status {stored_status:?}"
    );
    ensure!(
        patched.metadata.resource_version == stored.metadata.resource_version
            && patched.status.as_ref().and_then(|s| s.collision_count) == Some(2),
        "returned a stale object"
    );
    cached(client, &patched).await?;

    let (_, result) = cu::create_or_patch(client, web(), desired(None, status(1, 2))).await?;
    ensure!(result == OperationResult::Unchanged, "same again: {result}");
    ensure!(
        api.get("web").await?.metadata.resource_version == patched.metadata.resource_version,
        "an unchanged object was written"
    );
    Ok(())
}

async fn owner_references(ctx: Context) -> anyhow::Result<()> {
    let running = start(&ctx).await?;
    let client = &running.client;
    let deployments: Api<Deployment> = running.api.namespaced(&ctx.namespace);
    let configmaps: Api<ConfigMap> = running.api.namespaced(&ctx.namespace);
    let w = WriteOptions::default();
    let owner = deployments
        .create(&web_deployment(&ctx.namespace), &w)
        .await?;
    let mut other = web_deployment(&ctx.namespace);
    other.metadata.name = Some("api".to_owned());
    let other = deployments.create(&other, &w).await?;
    let namespace = running
        .api
        .all::<Namespace>()
        .get(&ctx.namespace)
        .await
        .context("reading the test namespace")?;

    // A controller reference, set inside create_or_update: the API server accepts it.
    let cm = named(ConfigMap::default(), &ctx.namespace, "web-config");
    let (created, result) = cu::create_or_update(client, cm, |cm| {
        cu::set_controller_reference(&owner, cm)?;
        cu::set_owner_reference(&namespace, cm)
    })
    .await?;
    ensure!(result == OperationResult::Created, "{result}");
    let stored = configmaps.get("web-config").await?;
    let refs = stored.metadata.owner_references.clone().unwrap_or_default();
    ensure!(refs.len() == 2, "stored references {refs:?}");
    let controller = cu::controller_of(&stored).context("no controller reference stored")?;
    ensure!(
        controller.kind == "Deployment"
            && controller.api_version == "apps/v1"
            && controller.name == "web"
            && Some(&controller.uid) == owner.metadata.uid.as_ref()
            && controller.block_owner_deletion == Some(true),
        "stored controller {controller:?}"
    );
    ensure!(
        cu::has_owner_reference(&stored, &namespace),
        "the namespace reference is missing: {refs:?}"
    );
    cached(client, &created).await?;

    // Setting the same controller again changes nothing; another controller is refused.
    let (_, result) = cu::create_or_update(
        client,
        named(ConfigMap::default(), &ctx.namespace, "web-config"),
        |cm| cu::set_controller_reference(&owner, cm),
    )
    .await?;
    ensure!(
        result == OperationResult::Unchanged,
        "same controller: {result}"
    );
    let err = cu::create_or_update(
        client,
        named(ConfigMap::default(), &ctx.namespace, "web-config"),
        |cm| cu::set_controller_reference(&other, cm),
    )
    .await
    .err()
    .context("a second controller was accepted")?;
    match &err {
        cu::Error::Mutate(source) => match source.downcast_ref::<cu::Error>() {
            Some(cu::Error::AlreadyOwned {
                owner_kind,
                owner_name,
            }) if owner_kind == "Deployment" && owner_name == "web" => {}
            _ => bail!("unexpected mutate error {source:?}"),
        },
        other => bail!("unexpected error {other:?}"),
    }

    // Handing the object over: remove the old controller, set the new one (patched).
    let (_, result) = cu::create_or_patch(
        client,
        named(ConfigMap::default(), &ctx.namespace, "web-config"),
        |cm| {
            ensure!(
                cu::remove_controller_reference(&owner, cm),
                "no controller to remove"
            );
            cu::set_controller_reference(&other, cm)?;
            Ok(())
        },
    )
    .await?;
    ensure!(
        result == OperationResult::Updated,
        "new controller: {result}"
    );
    let stored = configmaps.get("web-config").await?;
    let controller = cu::controller_of(&stored).context("no controller after the handover")?;
    ensure!(
        controller.name == "api" && Some(&controller.uid) == other.metadata.uid.as_ref(),
        "stored controller {controller:?}"
    );
    ensure!(
        !cu::has_owner_reference(&stored, &owner) && cu::has_owner_reference(&stored, &namespace),
        "stored references {:?}",
        stored.metadata.owner_references
    );
    Ok(())
}
