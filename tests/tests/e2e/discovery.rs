//! Discovery and the RESTMapper against a real API server: built-in resources, and a CRD
//! installed during the test, found by a refresh on miss and used through the dynamic client.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use ferrokube_runtime::client::discovery::{Discovery, Snapshot};
use ferrokube_runtime::client::kube::core::{DynamicObject, GroupVersionKind};
use ferrokube_runtime::client::restmapper::RestMapper;
use ferrokube_runtime::client::{Client, DeleteOptions, ListOptions, WriteOptions};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::json;
use tests::{Context, Test, eventually};

pub fn tests() -> Vec<Test> {
    vec![
        Test::new("discovery::core_resources_and_scopes", core_resources),
        Test::new("discovery::restmapper_resolves_builtins", builtins),
        Test::new(
            "discovery::restmapper_finds_new_crd_and_dynamic_client_uses_it",
            crd_refresh_on_miss,
        ),
    ]
}

fn client(ctx: &Context) -> Client {
    Client::from_kube(ctx.client.clone())
}

async fn core_resources(ctx: Context) -> anyhow::Result<()> {
    let client = client(&ctx);
    let discovery = Discovery::new(client.clone());
    let snapshot = discovery.snapshot().await?;
    let version = client.server_version().await?;
    let minor: u32 = version.minor.trim_end_matches('+').parse().unwrap_or(0);
    if version.major == "1" && minor >= 30 {
        ensure!(
            snapshot.is_aggregated(),
            "a {}.{} server offers aggregated discovery, but it was not used",
            version.major,
            version.minor
        );
    }

    let groups = discovery.server_groups().await?;
    ensure!(
        groups
            .first()
            .is_some_and(|g| g.name.is_empty() && g.preferred_version == "v1"),
        "the core group does not come first: {groups:?}"
    );
    let apps = groups
        .iter()
        .find(|g| g.name == "apps")
        .context("no apps group")?;
    ensure!(
        apps.preferred_version == "v1",
        "apps prefers {}",
        apps.preferred_version
    );

    let core = discovery.server_resources_for("v1").await?;
    let find = |plural: &str| core.iter().find(|r| r.resource.plural == plural).cloned();
    let cm = find("configmaps").context("no configmaps in v1")?;
    ensure!(cm.namespaced, "configmaps are namespaced");
    ensure!(
        cm.resource.kind == "ConfigMap" && cm.resource.api_version == "v1",
        "{cm:?}"
    );
    ensure!(
        cm.short_names == ["cm"],
        "configmaps short names: {:?}",
        cm.short_names
    );
    ensure!(
        cm.supports("watch") && cm.supports("create"),
        "verbs: {:?}",
        cm.verbs
    );
    let ns = find("namespaces").context("no namespaces in v1")?;
    ensure!(!ns.namespaced, "namespaces are cluster-scoped");
    ensure!(ns.singular == "namespace", "singular: {}", ns.singular);
    let pods = find("pods").context("no pods in v1")?;
    ensure!(
        pods.subresource("status").is_some() && pods.subresource("log").is_some(),
        "pods subresources: {:?}",
        pods.subresources
    );
    ensure!(
        core.iter().all(|r| !r.resource.plural.contains('/')),
        "subresources are listed as resources"
    );

    let deployments = discovery.server_resources_for("apps/v1").await?;
    let deploy = deployments
        .iter()
        .find(|r| r.resource.plural == "deployments")
        .context("no deployments in apps/v1")?;
    let scale = deploy
        .subresource("scale")
        .context("no deployments/scale")?;
    ensure!(
        scale.response_kind == GroupVersionKind::gvk("autoscaling", "v1", "Scale"),
        "deployments/scale returns {:?}",
        scale.response_kind
    );

    let preferred = discovery.preferred_resources().await?;
    ensure!(
        preferred.iter().any(|r| r.resource.plural == "leases"),
        "no leases among the preferred resources"
    );
    let missing = discovery.server_resources_for("nope.example.com/v1").await;
    ensure!(
        missing.is_err(),
        "an unserved group version was found: {missing:?}"
    );

    // Cached: a second use is the same snapshot; refresh replaces it.
    ensure!(
        Arc::ptr_eq(&snapshot, &discovery.snapshot().await?),
        "not cached"
    );
    let refreshed = discovery.refresh().await?;
    ensure!(
        !Arc::ptr_eq(&snapshot, &refreshed),
        "refresh kept the old snapshot"
    );
    Ok(())
}

async fn builtins(ctx: Context) -> anyhow::Result<()> {
    let mapper = RestMapper::new(Discovery::new(client(&ctx)));
    let deploy = mapper.resource_for("deploy").await?;
    ensure!(
        deploy.gvk() == GroupVersionKind::gvk("apps", "v1", "Deployment"),
        "deploy is {:?}",
        deploy.gvk()
    );
    ensure!(
        deploy.resource.plural == "deployments" && deploy.namespaced,
        "{deploy:?}"
    );
    for name in [
        "deployments",
        "deployment",
        "Deployment",
        "deployments.apps",
    ] {
        let gvk = mapper.kind_for(name).await?;
        ensure!(gvk == deploy.gvk(), "{name} is {gvk:?}");
    }
    let cm = mapper.kind_for("cm").await?;
    ensure!(
        cm == GroupVersionKind::gvk("", "v1", "ConfigMap"),
        "cm is {cm:?}"
    );
    let ns = mapper
        .rest_mapping(&GroupVersionKind::gvk("", "v1", "Namespace"))
        .await?;
    ensure!(
        ns.resource.plural == "namespaces" && !ns.namespaced,
        "{ns:?}"
    );
    let miss = mapper.kind_for("nosuchresource").await;
    ensure!(
        miss.as_ref().is_err_and(|e| e.is_no_match()),
        "a made-up name resolved: {miss:?}"
    );
    Ok(())
}

fn widget_crd(group: &str) -> anyhow::Result<CustomResourceDefinition> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "kind": "Widget",
                "listKind": "WidgetList",
                "plural": "widgets",
                "singular": "widget",
                "shortNames": ["wdg"]
            },
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "properties": {"size": {"type": "integer"}}
                    }}
                }}
            }]
        }
    }))?)
}

async fn crd_refresh_on_miss(ctx: Context) -> anyhow::Result<()> {
    let client = client(&ctx);
    // CRDs are cluster-scoped: a group of this test's own keeps parallel tests apart.
    let group = format!("{}.e2e.ferrokube.dev", ctx.namespace);
    let mapper = RestMapper::new(Discovery::new(client.clone()));
    // The short name qualified by this test's group (other tests may have Widgets too).
    let qualified = format!("wdg.{group}");
    let miss = mapper.kind_for(&qualified).await;
    ensure!(
        miss.as_ref().is_err_and(|e| e.is_no_match()),
        "{qualified} resolved before its CRD existed: {miss:?}"
    );
    let before = mapper.discovery().cached().context("no cached discovery")?;

    let crds = client.all::<CustomResourceDefinition>();
    let name = format!("widgets.{group}");
    crds.create(&widget_crd(&group)?, &WriteOptions::default())
        .await
        .with_context(|| format!("creating CRD {name}"))?;
    let outcome = use_crd(&ctx, &client, &mapper, &before, &group).await;
    let deleted = crds.delete(&name, &DeleteOptions::default()).await;
    outcome?;
    deleted.with_context(|| format!("deleting CRD {name}"))?;
    Ok(())
}

async fn use_crd(
    ctx: &Context,
    client: &Client,
    mapper: &RestMapper,
    before: &Arc<Snapshot>,
    group: &str,
) -> anyhow::Result<()> {
    let crds = client.all::<CustomResourceDefinition>();
    let crd_name = format!("widgets.{group}");
    eventually("the CRD to be Established", Duration::from_secs(60), || {
        let (crds, crd_name) = (&crds, &crd_name);
        async move {
            let crd = crds.get(crd_name).await.ok()?;
            let conditions = crd.status?.conditions?;
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await?;

    // A miss in the cached snapshot, found once the mapper refreshes it (at most once a
    // second: the mapper's rate limit).
    let qualified = format!("wdg.{group}");
    let found = eventually("the mapper to find wdg", Duration::from_secs(60), || {
        let qualified = &qualified;
        async move { mapper.resources_for(qualified).await.ok() }
    })
    .await?;
    let after = mapper.discovery().cached().context("no cached discovery")?;
    ensure!(
        !Arc::ptr_eq(before, &after),
        "resolved without refreshing discovery"
    );
    ensure!(found.len() == 1, "{qualified} matches {found:?}");
    let widget = &found[0];
    let want = GroupVersionKind::gvk(group, "v1", "Widget");
    ensure!(widget.gvk() == want, "wdg is {:?}", widget.gvk());
    ensure!(
        widget.resource.plural == "widgets" && widget.namespaced && widget.singular == "widget",
        "{widget:?}"
    );

    // Bare names now resolve from the cache (among other tests' Widgets, if any).
    for name in ["wdg", "Widget", "widgets", "widget"] {
        let all = mapper.kinds_for(name).await?;
        ensure!(all.contains(&want), "{name} resolves to {all:?}");
    }
    for name in [format!("Widget.{group}"), format!("widgets.v1.{group}")] {
        let gvk = mapper.kind_for(&name).await?;
        ensure!(gvk == want, "{name} is {gvk:?}");
    }
    let mapping = mapper.rest_mapping(&want).await?;
    ensure!(mapping.resource == widget.resource, "{mapping:?}");

    // Use it through the dynamic client.
    let api = client.dynamic(&widget.resource, Some(&ctx.namespace));
    let mut object = DynamicObject::new("first", &widget.resource).within(&ctx.namespace);
    object.data = json!({"spec": {"size": 3}});
    let created = api.create(&object, &WriteOptions::default()).await?;
    ensure!(created.metadata.uid.is_some(), "created without a uid");
    let got = api.get("first").await?;
    ensure!(got.data["spec"]["size"] == 3, "got {:?}", got.data);
    ensure!(
        got.types.as_ref().is_some_and(|t| t.kind == "Widget"),
        "got types {:?}",
        got.types
    );
    let listed = api.list(&ListOptions::default()).await?;
    let names: Vec<_> = listed
        .items
        .iter()
        .filter_map(|o| o.metadata.name.as_deref())
        .collect();
    ensure!(names == ["first"], "listed {names:?}");
    Ok(())
}
