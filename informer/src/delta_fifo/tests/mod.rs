//! Ports of client-go's `delta_fifo_test.go` (with `EmitDeltaTypeReplaced`: relists queue
//! `Replaced` where client-go's default queues `Sync`), plus async behaviour.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

use super::*;
use DeltaType::{Added, Deleted, Replaced, Sync, Updated};

mod pop;
mod queue;
mod replace;

type Obj = Arc<ConfigMap>;

/// client-go's `mkFifoObj`: a cluster-scoped object `name` (its key) carrying `val`.
fn mk(name: &str, val: u64) -> Obj {
    Arc::new(ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            annotations: Some(BTreeMap::from([("val".to_owned(), val.to_string())])),
            ..Default::default()
        },
        ..Default::default()
    })
}

fn val(obj: &ConfigMap) -> u64 {
    obj.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("val"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn d(kind: DeltaType, obj: Obj) -> Delta<ConfigMap> {
    Delta::new(kind, obj)
}

fn tomb(key: &str, obj: Obj) -> Delta<ConfigMap> {
    Delta::new(Deleted, DeletedFinalStateUnknown::new(key, obj))
}

/// client-go's `literalListerGetter`: known objects that never change.
struct Literal(Vec<Obj>);

impl KnownObjects<ConfigMap> for Literal {
    fn list_keys(&self) -> Vec<String> {
        self.0.iter().map(|o| object_key(&**o)).collect()
    }

    fn get_by_key(&self, key: &str) -> Option<Obj> {
        self.0.iter().find(|o| object_key(&***o) == key).cloned()
    }
}

fn known(objs: &[Obj]) -> DeltaFifo<ConfigMap> {
    DeltaFifo::with_known_objects(Literal(objs.to_vec()))
}

/// Pops without waiting (`None` if nothing is queued), processing successfully.
fn try_pop(f: &DeltaFifo<ConfigMap>) -> Option<Deltas<ConfigMap>> {
    try_pop2(f).map(|(deltas, _)| deltas)
}

/// client-go's `pop2`: the deltas and whether they were in the initial list.
fn try_pop2(f: &DeltaFifo<ConfigMap>) -> Option<(Deltas<ConfigMap>, bool)> {
    let mut initial = None;
    let popped = f
        .pop(|_, is_in_initial_list| {
            initial = Some(is_in_initial_list);
            Ok::<(), ProcessError<()>>(())
        })
        .now_or_never()?;
    match popped {
        Ok(deltas) => Some((deltas, initial?)),
        Err(PopError::Closed) => None,
        Err(PopError::Process { .. }) => panic!("processing cannot fail"),
    }
}

fn pop(f: &DeltaFifo<ConfigMap>) -> Vec<Delta<ConfigMap>> {
    try_pop(f).expect("something queued").into_vec()
}

fn pop_val(f: &DeltaFifo<ConfigMap>) -> u64 {
    let deltas = try_pop(f).expect("something queued");
    val(deltas.newest().expect("never empty").object.object())
}

fn queued(f: &DeltaFifo<ConfigMap>, key: &str) -> Vec<Delta<ConfigMap>> {
    f.get(key).map(Deltas::into_vec).unwrap_or_default()
}
