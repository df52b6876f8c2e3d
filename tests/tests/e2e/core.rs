//! The basics any client needs from a real API server: CRUD and watch on ConfigMaps.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use tests::{Context, Test};

pub fn tests() -> Vec<Test> {
    vec![
        Test::new("core::configmap_crud", configmap_crud),
        Test::new("core::watch_sees_added_modified_deleted", watch_events),
    ]
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_owned());
    cm.data = Some(BTreeMap::from([("key".to_owned(), value.to_owned())]));
    cm
}

async fn configmap_crud(ctx: Context) -> anyhow::Result<()> {
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.namespace);
    let created = api
        .create(&PostParams::default(), &configmap("crud", "one"))
        .await?;
    ensure!(
        created.metadata.resource_version.is_some(),
        "no resourceVersion on create"
    );

    let mut got = api.get("crud").await?;
    ensure!(got.data == created.data, "get returned {:?}", got.data);

    let listed = api.list(&ListParams::default()).await?;
    let names: Vec<_> = listed
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    ensure!(names == ["crud"], "list returned {names:?}");

    got.data = Some(BTreeMap::from([("key".to_owned(), "two".to_owned())]));
    let updated = api.replace("crud", &PostParams::default(), &got).await?;
    ensure!(
        updated.metadata.resource_version != created.metadata.resource_version,
        "update did not change the resourceVersion"
    );
    ensure!(
        api.get("crud").await?.data == got.data,
        "update not persisted"
    );

    // A stale update is a conflict.
    let stale = api.replace("crud", &PostParams::default(), &created).await;
    ensure!(
        matches!(&stale, Err(kube::Error::Api(s)) if s.code == 409),
        "stale update gave {stale:?}"
    );

    api.delete("crud", &DeleteParams::default()).await?;
    let gone = api.get_opt("crud").await?;
    ensure!(gone.is_none(), "still there after delete: {gone:?}");
    Ok(())
}

async fn watch_events(ctx: Context) -> anyhow::Result<()> {
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.namespace);
    let rv = api
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .context("list has no resourceVersion")?;
    let mut events = api
        .watch(&WatchParams::default().timeout(60), &rv)
        .await?
        .boxed();

    let mut cm = api
        .create(&PostParams::default(), &configmap("watched", "one"))
        .await?;
    cm.data = Some(BTreeMap::from([("key".to_owned(), "two".to_owned())]));
    api.replace("watched", &PostParams::default(), &cm).await?;
    api.delete("watched", &DeleteParams::default()).await?;

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(30), events.try_next())
            .await
            .context("no watch event within 30s")??
            .context("watch ended early")?;
        match event {
            WatchEvent::Added(o) => seen.push(("ADDED", o.data)),
            WatchEvent::Modified(o) => seen.push(("MODIFIED", o.data)),
            WatchEvent::Deleted(o) => seen.push(("DELETED", o.data)),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => anyhow::bail!("watch error: {e:?}"),
        }
    }
    let kinds: Vec<_> = seen.iter().map(|(k, _)| *k).collect();
    ensure!(kinds == ["ADDED", "MODIFIED", "DELETED"], "saw {kinds:?}");
    let value = |i: usize| seen[i].1.as_ref().and_then(|d| d.get("key")).cloned();
    ensure!(
        value(0).as_deref() == Some("one"),
        "ADDED carried {:?}",
        value(0)
    );
    ensure!(
        value(1).as_deref() == Some("two"),
        "MODIFIED carried {:?}",
        value(1)
    );
    Ok(())
}
