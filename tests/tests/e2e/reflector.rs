//! The reflector against a real API server: paged and streaming lists, then watches.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use ferrokube_informer::decode::Decoder;
use ferrokube_informer::list_watch::ListWatch;
use ferrokube_informer::reflector::{InitialList, Reflector, ReflectorConfig, Sink};
use ferrokube_runtime::client::{Client, ListOptions, WriteOptions};
use k8s_openapi::api::core::v1::ConfigMap;
use parking_lot::Mutex;
use tests::{Context, Test, eventually};
use tokio_util::sync::CancellationToken;

use crate::fixtures::{configmap, name, versions};

pub fn tests() -> Vec<Test> {
    vec![
        Test::new("reflector::paged_list_then_watch_converges", |ctx| {
            converges(ctx, InitialList::Paged, 3)
        }),
        Test::new("reflector::streaming_list_then_watch_converges", |ctx| {
            converges(ctx, InitialList::Streaming, 500)
        }),
    ]
}

/// A sink that keeps the latest object per name, and counts replaces.
#[derive(Default)]
struct MapSink {
    objects: Mutex<HashMap<String, Arc<ConfigMap>>>,
    replaces: Mutex<usize>,
}

impl Sink<ConfigMap> for MapSink {
    fn replace(&self, items: Vec<Arc<ConfigMap>>, _rv: String) {
        *self.objects.lock() = items.into_iter().map(|o| (name(&o), o)).collect();
        *self.replaces.lock() += 1;
    }
    fn add(&self, o: Arc<ConfigMap>) {
        self.objects.lock().insert(name(&o), o);
    }
    fn update(&self, o: Arc<ConfigMap>) {
        self.objects.lock().insert(name(&o), o);
    }
    fn delete(&self, o: Arc<ConfigMap>) {
        self.objects.lock().remove(&name(&o));
    }
    fn resync(&self) {}
}

async fn converges(ctx: Context, mode: InitialList, page_size: i64) -> anyhow::Result<()> {
    let client = Client::from_kube(ctx.client.clone());
    let api = client.namespaced::<ConfigMap>(&ctx.namespace);
    for i in 0..10 {
        api.create(
            &configmap(&format!("before-{i}"), "0"),
            &WriteOptions::default(),
        )
        .await?;
    }
    let sink = Arc::new(MapSink::default());
    let config = ReflectorConfig::default()
        .initial_list(mode)
        .page_size(page_size);
    let lw = ListWatch::new(api.clone(), Decoder::new(true, None));
    let reflector = Reflector::new("e2e", lw, Arc::clone(&sink), config);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(reflector.run(cancel.clone()));

    eventually("the initial list", Duration::from_secs(20), || async {
        (sink.objects.lock().len() == 10).then_some(())
    })
    .await?;
    ensure!(*sink.replaces.lock() == 1, "expected one replace");
    ensure!(
        sink.objects
            .lock()
            .values()
            .all(|o| o.metadata.managed_fields.is_none()),
        "managedFields were not stripped"
    );

    for i in 0..5 {
        api.create(
            &configmap(&format!("after-{i}"), "0"),
            &WriteOptions::default(),
        )
        .await?;
        let mut cm = api.get(&format!("before-{i}")).await?;
        cm.data = Some(BTreeMap::from([("v".to_owned(), "1".to_owned())]));
        api.update(&cm, &WriteOptions::default()).await?;
        api.delete(&format!("before-{}", i + 5), &Default::default())
            .await?;
    }

    let expected = versions(api.list(&ListOptions::default()).await?.items.iter());
    eventually(
        "the sink to match a fresh list",
        Duration::from_secs(20),
        || async {
            let objects = sink.objects.lock();
            (versions(objects.values().map(|o| o.as_ref())) == expected).then_some(())
        },
    )
    .await?;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await??;
    Ok(())
}
