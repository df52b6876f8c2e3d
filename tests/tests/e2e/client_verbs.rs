//! Every typed verb of `ferrokube_client::Api` against a real API server: reads with paging
//! and resourceVersion matching, a streaming list, writes and their conflicts, the four patch
//! kinds (server-side apply with two field managers), deletes with preconditions and
//! propagation, delete-collection, the status and scale subresources, and a cluster-scoped
//! resource.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use ferrokube_runtime::client::watch::is_initial_events_end;
use ferrokube_runtime::client::{
    Api, Client, DeleteOptions, Deleted, ListOptions, Patch, PatchOptions, PropagationPolicy,
    ResourceVersionMatch, WatchEvent, WriteOptions,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, PodCondition};
use serde_json::json;
use tests::{Context, Test};

pub fn tests() -> Vec<Test> {
    vec![
        Test::new("client_verbs::get_list_paging_and_rv_match", get_and_list),
        Test::new(
            "client_verbs::streaming_list_ends_with_bookmark",
            streaming_list,
        ),
        Test::new("client_verbs::create_update_and_conflicts", create_update),
        Test::new("client_verbs::merge_json_strategic_patches", patches),
        Test::new(
            "client_verbs::server_side_apply_managers",
            server_side_apply,
        ),
        Test::new("client_verbs::delete_preconditions_and_collection", deletes),
        Test::new("client_verbs::pod_status_subresource", pod_status),
        Test::new("client_verbs::namespace_cluster_scoped", namespaces),
        Test::new("client_verbs::deployment_scale_subresource", scale),
    ]
}

fn configmaps(ctx: &Context) -> Api<ConfigMap> {
    Client::from_kube(ctx.client.clone()).namespaced(&ctx.namespace)
}

fn configmap(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_owned());
    let owned = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    if !labels.is_empty() {
        cm.metadata.labels = Some(owned(labels));
    }
    cm.data = Some(owned(data));
    cm
}

fn value<'a>(cm: &'a ConfigMap, key: &str) -> Option<&'a str> {
    cm.data.as_ref()?.get(key).map(String::as_str)
}

fn names(items: &[ConfigMap]) -> Vec<String> {
    let mut names: Vec<_> = items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    names.sort();
    names
}

async fn get_and_list(ctx: Context) -> anyhow::Result<()> {
    let api = configmaps(&ctx);
    let w = WriteOptions::default();
    for i in 0..5 {
        api.create(
            &configmap(&format!("paged-{i}"), &[("app", "paged")], &[]),
            &w,
        )
        .await?;
    }
    api.create(&configmap("other", &[("app", "other")], &[]), &w)
        .await?;

    let got = api.get("paged-3").await?;
    ensure!(
        got.metadata.name.as_deref() == Some("paged-3"),
        "get returned {got:?}"
    );
    ensure!(
        api.get_opt("paged-4").await?.is_some(),
        "get_opt missed an object"
    );
    ensure!(
        api.get_opt("missing").await?.is_none(),
        "get_opt found a missing object"
    );
    let err = api
        .get("missing")
        .await
        .err()
        .context("get of a missing object worked")?;
    ensure!(err.is_not_found(), "get of a missing object: {err}");

    // Paging: 5 matching objects, 2 per page.
    let selector = ListOptions::default().labels("app=paged");
    let mut pages = Vec::new();
    let mut options = selector.clone().limit(2);
    loop {
        let page = api.list(&options).await?;
        pages.push(names(&page.items));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => options = selector.clone().limit(2).continue_token(token),
            None => break,
        }
        ensure!(pages.len() < 10, "paging does not end: {pages:?}");
    }
    let sizes: Vec<_> = pages.iter().map(Vec::len).collect();
    ensure!(sizes == [2, 2, 1], "page sizes {sizes:?}");
    let all: Vec<_> = pages.concat();
    let expected: Vec<_> = (0..5).map(|i| format!("paged-{i}")).collect();
    ensure!(names_sorted(all) == expected, "pages {pages:?}");

    // resourceVersionMatch=Exact reads the past; NotOlderThan at least that state.
    let before = api.list(&selector).await?;
    let rv = before
        .metadata
        .resource_version
        .context("list without resourceVersion")?;
    api.create(&configmap("paged-5", &[("app", "paged")], &[]), &w)
        .await?;
    let exact = api
        .list(
            &selector
                .clone()
                .at(rv.clone(), Some(ResourceVersionMatch::Exact)),
        )
        .await?;
    ensure!(
        names(&exact.items) == expected,
        "Exact list at {rv} saw {:?}",
        names(&exact.items)
    );
    ensure!(
        exact.metadata.resource_version.as_deref() == Some(rv.as_str()),
        "Exact list answered at {:?}, not {rv}",
        exact.metadata.resource_version
    );
    let newer = api
        .list(
            &selector
                .clone()
                .at(rv.clone(), Some(ResourceVersionMatch::NotOlderThan)),
        )
        .await?;
    ensure!(
        newer.items.len() == 6,
        "NotOlderThan list saw {:?}",
        names(&newer.items)
    );
    Ok(())
}

fn names_sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

async fn streaming_list(ctx: Context) -> anyhow::Result<()> {
    let api = configmaps(&ctx);
    for i in 0..3 {
        api.create(
            &configmap(&format!("s-{i}"), &[], &[]),
            &WriteOptions::default(),
        )
        .await?;
    }
    let options = ListOptions::default().streaming_list().timeout(60);
    let events = match api.watch(&options).await {
        Ok(events) => events,
        Err(e) if e.status().is_some() => bail!(
            "the API server rejected a streaming list (sendInitialEvents=true): it needs the \
             WatchList feature (beta, on by default since Kubernetes 1.31) and etcd >= 3.5.13: {e}"
        ),
        Err(e) => return Err(e.into()),
    };
    let mut events = std::pin::pin!(events);
    let mut added = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .context("no watch event within 30s")?
            .context("the watch ended before the initial-events-end bookmark")??;
        match event {
            WatchEvent::Added(cm) => added.extend(cm.metadata.name),
            WatchEvent::Bookmark(b) if is_initial_events_end(&b) => {
                ensure!(
                    !b.metadata.resource_version.is_empty(),
                    "bookmark without RV"
                );
                break;
            }
            WatchEvent::Bookmark(_) => {}
            other => bail!("unexpected event during the initial list: {other:?}"),
        }
    }
    added.sort();
    ensure!(added == ["s-0", "s-1", "s-2"], "initial events {added:?}");

    // The watch goes on after the bookmark.
    api.create(&configmap("s-3", &[], &[]), &WriteOptions::default())
        .await?;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .context("no event for s-3 within 30s")?
            .context("the watch ended")??;
        match event {
            WatchEvent::Added(cm) if cm.metadata.name.as_deref() == Some("s-3") => return Ok(()),
            WatchEvent::Bookmark(_) => {}
            other => bail!("unexpected event {other:?}"),
        }
    }
}

async fn create_update(ctx: Context) -> anyhow::Result<()> {
    let api = configmaps(&ctx);
    let w = WriteOptions::default().manager("e2e");
    let created = api
        .create(&configmap("cu", &[], &[("key", "one")]), &w)
        .await?;
    let again = api
        .create(&configmap("cu", &[], &[("key", "two")]), &w)
        .await;
    match again {
        Err(e) => ensure!(
            e.is_already_exists() && !e.is_conflict(),
            "second create: {e}"
        ),
        Ok(o) => bail!("a second create with the same name worked: {o:?}"),
    }

    let mut changed = created.clone();
    changed.data = Some(BTreeMap::from([("key".to_owned(), "two".to_owned())]));
    let updated = api.update(&changed, &w).await?;
    ensure!(
        value(&updated, "key") == Some("two"),
        "update returned {updated:?}"
    );
    ensure!(
        updated.metadata.resource_version != created.metadata.resource_version,
        "update kept the resourceVersion"
    );
    ensure!(
        value(&api.get("cu").await?, "key") == Some("two"),
        "update not persisted"
    );

    // `created` carries the old resourceVersion.
    match api.update(&created, &w).await {
        Err(e) => ensure!(e.is_conflict(), "stale update: {e}"),
        Ok(o) => bail!("a stale update worked: {o:?}"),
    }
    // Dry run persists nothing.
    let mut dry = updated.clone();
    dry.data = Some(BTreeMap::from([("key".to_owned(), "dry".to_owned())]));
    let dry_options = WriteOptions {
        dry_run: true,
        ..WriteOptions::default()
    };
    let answered = api.update(&dry, &dry_options).await?;
    ensure!(
        value(&answered, "key") == Some("dry"),
        "dry run answered {answered:?}"
    );
    ensure!(
        value(&api.get("cu").await?, "key") == Some("two"),
        "dry run persisted"
    );

    let missing = configmap("never-created", &[], &[]);
    match api.update(&missing, &w).await {
        Err(e) => ensure!(e.is_not_found(), "update of a missing object: {e}"),
        Ok(o) => bail!("update of a missing object worked: {o:?}"),
    }
    Ok(())
}

async fn patches(ctx: Context) -> anyhow::Result<()> {
    let api = configmaps(&ctx);
    api.create(
        &configmap("p", &[], &[("a", "1"), ("b", "2")]),
        &WriteOptions::default(),
    )
    .await?;
    let p = PatchOptions::default();

    let merged = api
        .patch(
            "p",
            &Patch::Merge(json!({"data": {"a": "merged", "b": null}})),
            &p,
        )
        .await?;
    ensure!(
        value(&merged, "a") == Some("merged"),
        "merge: {:?}",
        merged.data
    );
    ensure!(
        value(&merged, "b").is_none(),
        "merge null did not remove b: {:?}",
        merged.data
    );

    let ops = json!([
        {"op": "test", "path": "/data/a", "value": "merged"},
        {"op": "add", "path": "/data/c", "value": "json"},
    ]);
    let jsoned = api.patch("p", &Patch::Json(ops), &p).await?;
    ensure!(
        value(&jsoned, "c") == Some("json"),
        "JSON patch: {:?}",
        jsoned.data
    );
    let failing = json!([{"op": "test", "path": "/data/a", "value": "not this"}]);
    ensure!(
        api.patch("p", &Patch::Json(failing), &p).await.is_err(),
        "a failing JSON patch test op was applied"
    );

    let strategic = api
        .patch(
            "p",
            &Patch::Strategic(json!({"metadata": {"labels": {"tier": "web"}}, "data": {"d": "s"}})),
            &p,
        )
        .await?;
    ensure!(
        value(&strategic, "d") == Some("s") && value(&strategic, "a") == Some("merged"),
        "strategic merge: {:?}",
        strategic.data
    );
    let labels = strategic.metadata.labels.unwrap_or_default();
    ensure!(
        labels.get("tier").map(String::as_str) == Some("web"),
        "labels {labels:?}"
    );

    let missing = api
        .patch("missing", &Patch::Merge(json!({"data": {"a": "x"}})), &p)
        .await;
    ensure!(
        missing.as_ref().is_err_and(|e| e.is_not_found()),
        "patch of a missing object: {missing:?}"
    );
    Ok(())
}

fn apply_body(value: &str) -> Patch {
    Patch::Apply(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa"},
        "data": {"key": value},
    }))
}

/// The field managers whose managedFields entry owns `data.key`.
fn owners_of_key(cm: &ConfigMap) -> Vec<String> {
    let entries = cm.metadata.managed_fields.as_deref().unwrap_or_default();
    entries
        .iter()
        .filter(|e| {
            e.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:data/f:key").is_some())
        })
        .filter_map(|e| e.manager.clone())
        .collect()
}

async fn server_side_apply(ctx: Context) -> anyhow::Result<()> {
    let api = configmaps(&ctx);
    let alpha = api
        .patch("ssa", &apply_body("alpha"), &PatchOptions::apply("alpha"))
        .await?;
    ensure!(
        value(&alpha, "key") == Some("alpha"),
        "first apply: {:?}",
        alpha.data
    );
    ensure!(
        owners_of_key(&alpha) == ["alpha"],
        "owners {:?}",
        owners_of_key(&alpha)
    );

    // The same manager re-applying is no conflict.
    api.patch("ssa", &apply_body("alpha2"), &PatchOptions::apply("alpha"))
        .await?;

    match api
        .patch("ssa", &apply_body("beta"), &PatchOptions::apply("beta"))
        .await
    {
        Err(e) => ensure!(e.is_conflict(), "conflicting apply: {e}"),
        Ok(o) => bail!("a conflicting apply without force worked: {:?}", o.data),
    }
    ensure!(
        value(&api.get("ssa").await?, "key") == Some("alpha2"),
        "the conflict changed data"
    );

    let forced = api
        .patch(
            "ssa",
            &apply_body("beta"),
            &PatchOptions::apply("beta").force(),
        )
        .await?;
    ensure!(
        value(&forced, "key") == Some("beta"),
        "forced apply: {:?}",
        forced.data
    );
    ensure!(
        owners_of_key(&forced) == ["beta"],
        "owners after force {:?}",
        owners_of_key(&forced)
    );

    // Apply without a field manager is rejected by the server.
    let no_manager = api
        .patch("ssa", &apply_body("x"), &PatchOptions::default())
        .await;
    ensure!(no_manager.is_err(), "apply without a field manager worked");
    Ok(())
}

async fn deletes(ctx: Context) -> anyhow::Result<()> {
    let api = configmaps(&ctx);
    let w = WriteOptions::default();
    let victim = api.create(&configmap("victim", &[], &[]), &w).await?;
    let uid = victim.metadata.uid.clone().context("no uid")?;

    let wrong = DeleteOptions::default().preconditions(Some("not-the-uid".into()), None);
    match api.delete("victim", &wrong).await {
        Err(e) => ensure!(e.is_conflict(), "delete with a wrong uid: {e}"),
        Ok(d) => bail!("delete with a wrong uid worked: {d:?}"),
    }
    let right = DeleteOptions::default()
        .preconditions(Some(uid), victim.metadata.resource_version.clone())
        .propagation(PropagationPolicy::Background);
    api.delete("victim", &right).await?;
    ensure!(
        api.get_opt("victim").await?.is_none(),
        "still there after delete"
    );
    match api.delete("victim", &DeleteOptions::default()).await {
        Err(e) => ensure!(e.is_not_found(), "second delete: {e}"),
        Ok(d) => bail!("deleting a deleted object worked: {d:?}"),
    }

    // Foreground: the server keeps the object behind a finalizer until dependents are gone.
    api.create(&configmap("fg", &[], &[]), &w).await?;
    let fg = DeleteOptions::default().propagation(PropagationPolicy::Foreground);
    match api.delete("fg", &fg).await? {
        Deleted::Object(cm) => {
            let finalizers = cm.metadata.finalizers.unwrap_or_default();
            ensure!(
                cm.metadata.deletion_timestamp.is_some()
                    && finalizers.iter().any(|f| f == "foregroundDeletion"),
                "foreground delete returned finalizers {finalizers:?}"
            );
        }
        Deleted::Status(s) => bail!("foreground delete returned a status: {s:?}"),
    }
    // Without a garbage collector the finalizer stays: remove it (it may already be gone).
    let release = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    if let Err(e) = api.patch("fg", &release, &PatchOptions::default()).await {
        ensure!(e.is_not_found(), "removing the finalizer: {e}");
    }

    // Delete-collection takes what the selector matches, and only that.
    for i in 0..3 {
        api.create(
            &configmap(&format!("batch-{i}"), &[("batch", "yes")], &[]),
            &w,
        )
        .await?;
    }
    api.create(&configmap("keeper", &[("batch", "no")], &[]), &w)
        .await?;
    api.delete_collection(
        &ListOptions::default().labels("batch=yes"),
        &DeleteOptions::default(),
    )
    .await?;
    let left = api.list(&ListOptions::default()).await?;
    let left: Vec<_> = names(&left.items)
        .into_iter()
        .filter(|n| n != "kube-root-ca.crt" && n != "fg")
        .collect();
    ensure!(left == ["keeper"], "after delete_collection: {left:?}");
    Ok(())
}

async fn pod_status(ctx: Context) -> anyhow::Result<()> {
    let pods: Api<Pod> = Client::from_kube(ctx.client.clone()).namespaced(&ctx.namespace);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pending"},
        "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]},
    }))?;
    pods.create(&pod, &WriteOptions::default()).await?;

    let mut current = pods.get_status("pending").await?;
    let phase = current.status.as_ref().and_then(|s| s.phase.clone());
    ensure!(
        phase.as_deref().is_none_or(|p| p == "Pending"),
        "a pod without a kubelet is {phase:?}"
    );
    let status = current.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(PodCondition {
            type_: "ferrokube.io/Checked".into(),
            status: "True".into(),
            reason: Some("E2E".into()),
            message: Some("set by update_status".into()),
            ..PodCondition::default()
        });
    let updated = pods
        .update_status(&current, &WriteOptions::default())
        .await?;
    ensure!(
        condition(&updated, "ferrokube.io/Checked") == Some("True"),
        "update_status returned {:?}",
        updated.status
    );
    ensure!(
        condition(&pods.get_status("pending").await?, "ferrokube.io/Checked") == Some("True"),
        "get_status does not show the condition"
    );

    // A strategic merge on the status adds a condition (conditions merge by type).
    let patch = Patch::Strategic(json!({"status": {"conditions": [
        {"type": "ferrokube.io/Patched", "status": "False", "reason": "E2E"}
    ]}}));
    let patched = pods
        .patch_status("pending", &patch, &PatchOptions::default())
        .await?;
    ensure!(
        condition(&patched, "ferrokube.io/Patched") == Some("False")
            && condition(&patched, "ferrokube.io/Checked") == Some("True"),
        "patch_status returned {:?}",
        patched.status
    );
    let read = pods.get("pending").await?;
    ensure!(
        condition(&read, "ferrokube.io/Patched") == Some("False"),
        "get does not show the patched condition"
    );
    // The status subresource ignores spec changes.
    let mut spec_change = read.clone();
    if let Some(spec) = spec_change.spec.as_mut() {
        spec.active_deadline_seconds = Some(600);
    }
    let after = pods
        .update_status(&spec_change, &WriteOptions::default())
        .await?;
    ensure!(
        after.spec.and_then(|s| s.active_deadline_seconds).is_none(),
        "update_status changed the spec"
    );
    Ok(())
}

fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a str> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

async fn namespaces(ctx: Context) -> anyhow::Result<()> {
    let api: Api<Namespace> = Client::from_kube(ctx.client.clone()).all();
    let name = format!("{}-own", ctx.namespace);
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.clone());
    ns.metadata.labels = Some(BTreeMap::from([("e2e".to_owned(), name.clone())]));
    let created = api.create(&ns, &WriteOptions::default()).await?;
    ensure!(
        created.metadata.namespace.is_none(),
        "a namespace inside a namespace"
    );
    ensure!(
        api.get(&name).await?.metadata.uid == created.metadata.uid,
        "get returned another"
    );
    let listed = api
        .list(&ListOptions::default().labels(format!("e2e={name}")))
        .await?;
    let listed: Vec<_> = listed
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    ensure!(listed == [name.clone()], "list returned {listed:?}");
    let all = api.list(&ListOptions::default()).await?;
    ensure!(
        all.items
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(ctx.namespace.as_str())),
        "the unfiltered list misses the test namespace"
    );

    match api.delete(&name, &DeleteOptions::default()).await? {
        Deleted::Object(ns) => {
            let phase = ns.status.and_then(|s| s.phase);
            ensure!(
                phase.as_deref() == Some("Terminating"),
                "deleted namespace is {phase:?}"
            );
        }
        Deleted::Status(s) => ensure!(s.is_success(), "delete returned {s:?}"),
    }
    // Gone, or Terminating until a namespace controller empties it.
    if let Some(ns) = api.get_opt(&name).await? {
        let phase = ns.status.and_then(|s| s.phase);
        ensure!(
            phase.as_deref() == Some("Terminating"),
            "namespace is {phase:?}"
        );
    }
    Ok(())
}

async fn scale(ctx: Context) -> anyhow::Result<()> {
    let deployments: Api<Deployment> =
        Client::from_kube(ctx.client.clone()).namespaced(&ctx.namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "scaled"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "scaled"}},
            "template": {
                "metadata": {"labels": {"app": "scaled"}},
                "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }))?;
    deployments
        .create(&deployment, &WriteOptions::default())
        .await?;

    let mut scale = deployments.get_scale("scaled").await?;
    let replicas = scale.spec.as_ref().and_then(|s| s.replicas);
    ensure!(replicas == Some(1), "initial scale {replicas:?}");
    ensure!(
        scale
            .status
            .as_ref()
            .is_some_and(|s| s.selector.as_deref() == Some("app=scaled")),
        "scale status {:?}",
        scale.status
    );
    scale.spec.get_or_insert_with(Default::default).replicas = Some(3);
    let updated = deployments
        .update_scale("scaled", &scale, &WriteOptions::default())
        .await?;
    ensure!(
        updated.spec.as_ref().and_then(|s| s.replicas) == Some(3),
        "update_scale returned {:?}",
        updated.spec
    );
    let read = deployments.get("scaled").await?;
    let replicas = read.spec.as_ref().and_then(|s| s.replicas);
    ensure!(
        replicas == Some(3),
        "deployment spec.replicas is {replicas:?}"
    );
    let again = deployments.get_scale("scaled").await?;
    ensure!(
        again.spec.and_then(|s| s.replicas) == Some(3),
        "get_scale after update"
    );

    // The old scale carries a stale resourceVersion.
    match deployments
        .update_scale("scaled", &scale, &WriteOptions::default())
        .await
    {
        Err(e) => ensure!(e.is_conflict(), "stale update_scale: {e}"),
        Ok(s) => bail!("a stale update_scale worked: {s:?}"),
    }
    Ok(())
}
