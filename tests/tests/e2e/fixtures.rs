//! ConfigMap helpers shared by the reflector and informer tests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

/// A ConfigMap `name` holding `data.v = value`.
pub fn configmap(name: &str, value: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_owned());
    cm.data = Some(BTreeMap::from([("v".to_owned(), value.to_owned())]));
    cm
}

/// The object's name (empty if unset).
pub fn name(cm: &ConfigMap) -> String {
    cm.metadata.name.clone().unwrap_or_default()
}

/// name → resourceVersion, to compare a cache with a fresh list.
pub fn versions<'a>(items: impl Iterator<Item = &'a ConfigMap>) -> BTreeMap<String, String> {
    items
        .map(|c| {
            (
                name(c),
                c.metadata.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}
