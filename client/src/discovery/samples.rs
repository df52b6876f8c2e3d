//! Discovery documents shaped like a real API server's, for the tests.

/// `/api`, aggregated.
pub(crate) const AGGREGATED_CORE: &str = r#"{
  "kind": "APIGroupDiscoveryList",
  "apiVersion": "apidiscovery.k8s.io/v2",
  "metadata": {},
  "items": [{
    "metadata": {"creationTimestamp": null},
    "versions": [{
      "version": "v1",
      "freshness": "Current",
      "resources": [
        {"resource": "configmaps", "responseKind": {"group": "", "version": "v1", "kind": "ConfigMap"},
         "scope": "Namespaced", "singularResource": "configmap", "shortNames": ["cm"],
         "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]},
        {"resource": "events", "responseKind": {"group": "", "version": "v1", "kind": "Event"},
         "scope": "Namespaced", "singularResource": "event", "shortNames": ["ev"],
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
        {"resource": "namespaces", "responseKind": {"group": "", "version": "v1", "kind": "Namespace"},
         "scope": "Cluster", "singularResource": "namespace", "shortNames": ["ns"],
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
         "subresources": [
           {"subresource": "finalize", "responseKind": {"group": "", "version": "v1", "kind": "Namespace"}, "verbs": ["update"]},
           {"subresource": "status", "responseKind": {"group": "", "version": "v1", "kind": "Namespace"}, "verbs": ["get", "patch", "update"]}
         ]},
        {"resource": "pods", "responseKind": {"group": "", "version": "v1", "kind": "Pod"},
         "scope": "Namespaced", "singularResource": "pod", "shortNames": ["po"], "categories": ["all"],
         "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
         "subresources": [
           {"subresource": "exec", "responseKind": {"group": "", "version": "", "kind": "PodExecOptions"}, "verbs": ["create", "get"]},
           {"subresource": "log", "responseKind": {"group": "", "version": "v1", "kind": "Pod"}, "verbs": ["get"]},
           {"subresource": "status", "responseKind": {"group": "", "version": "v1", "kind": "Pod"}, "verbs": ["get", "patch", "update"]}
         ]}
      ]
    }]
  }]
}"#;

/// `/apis`, aggregated: apps, events.k8s.io, and a CRD group with a preferred beta version,
/// a stale alpha version and an ambiguous short name.
pub(crate) const AGGREGATED_APIS: &str = r#"{
  "kind": "APIGroupDiscoveryList",
  "apiVersion": "apidiscovery.k8s.io/v2",
  "metadata": {},
  "items": [
    {"metadata": {"name": "apps", "creationTimestamp": null},
     "versions": [{
       "version": "v1",
       "freshness": "Current",
       "resources": [
         {"resource": "deployments", "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
          "scope": "Namespaced", "singularResource": "deployment", "shortNames": ["deploy"], "categories": ["all"],
          "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
          "subresources": [
            {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "verbs": ["get", "patch", "update"]},
            {"subresource": "status", "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"}, "verbs": ["get", "patch", "update"]}
          ]}
       ]
     }]},
    {"metadata": {"name": "events.k8s.io", "creationTimestamp": null},
     "versions": [{
       "version": "v1",
       "freshness": "Current",
       "resources": [
         {"resource": "events", "responseKind": {"group": "events.k8s.io", "version": "v1", "kind": "Event"},
          "scope": "Namespaced", "singularResource": "event", "shortNames": ["ev"],
          "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]}
       ]
     }]},
    {"metadata": {"name": "example.com", "creationTimestamp": null},
     "versions": [
       {"version": "v1beta1",
        "freshness": "Current",
        "resources": [
          {"resource": "widgets", "responseKind": {"group": "example.com", "version": "v1beta1", "kind": "Widget"},
           "scope": "Namespaced", "singularResource": "widget", "shortNames": ["wdg"],
           "verbs": ["get", "list", "watch", "create"]}
        ]},
       {"version": "v1",
        "freshness": "Current",
        "resources": [
          {"resource": "widgets", "responseKind": {"group": "example.com", "version": "v1", "kind": "Widget"},
           "scope": "Namespaced", "singularResource": "widget", "shortNames": ["wdg"],
           "verbs": ["get", "list", "watch", "create"]},
          {"resource": "gadgets", "responseKind": {"group": "example.com", "version": "v1", "kind": "Gadget"},
           "scope": "Cluster", "singularResource": "gadget", "shortNames": ["g"],
           "verbs": ["get", "list"]},
          {"resource": "gizmos", "responseKind": {"group": "example.com", "version": "v1", "kind": "Gizmo"},
           "scope": "Cluster", "singularResource": "gizmo", "shortNames": ["g"],
           "verbs": ["get", "list"]},
          {"resource": "nokinds", "scope": "Cluster", "verbs": ["get"]}
        ]},
       {"version": "v1alpha1",
        "freshness": "Stale",
        "resources": []}
     ]}
  ]
}"#;

/// `/api`, legacy.
pub(crate) const LEGACY_API: &str = r#"{
  "kind": "APIVersions",
  "versions": ["v1"],
  "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}]
}"#;

/// `/apis`, legacy.
pub(crate) const LEGACY_APIS: &str = r#"{
  "kind": "APIGroupList",
  "apiVersion": "v1",
  "groups": [
    {"name": "apps",
     "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
     "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
    {"name": "batch",
     "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
     "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}}
  ]
}"#;

/// `/api/v1`, legacy (namespaces without a singularName, as older servers).
pub(crate) const LEGACY_CORE_V1: &str = r#"{
  "kind": "APIResourceList",
  "apiVersion": "v1",
  "groupVersion": "v1",
  "resources": [
    {"name": "configmaps", "singularName": "configmap", "namespaced": true, "kind": "ConfigMap",
     "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
     "shortNames": ["cm"], "storageVersionHash": "qFsyl6wFWjQ="},
    {"name": "namespaces", "singularName": "", "namespaced": false, "kind": "Namespace",
     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["ns"]},
    {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
     "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
     "shortNames": ["po"], "categories": ["all"]},
    {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
    {"name": "pods/status", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get", "patch", "update"]}
  ]
}"#;

/// `/apis/apps/v1`, legacy.
pub(crate) const LEGACY_APPS_V1: &str = r#"{
  "kind": "APIResourceList",
  "apiVersion": "v1",
  "groupVersion": "apps/v1",
  "resources": [
    {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment",
     "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
     "shortNames": ["deploy"], "categories": ["all"]},
    {"name": "deployments/scale", "singularName": "", "namespaced": true, "group": "autoscaling",
     "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]},
    {"name": "deployments/status", "singularName": "", "namespaced": true, "kind": "Deployment",
     "verbs": ["get", "patch", "update"]}
  ]
}"#;
