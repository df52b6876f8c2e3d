//! Helpers a reconciler needs on almost every object (controller-runtime's
//! `pkg/controller/controllerutil`):
//!
//! | helper | controller-runtime | what |
//! |---|---|---|
//! | [`add_finalizer`], [`remove_finalizer`], [`contains_finalizer`] | `AddFinalizer`, … | `metadata.finalizers` |
//! | [`set_controller_reference`], [`set_owner_reference`] | `SetControllerReference`, `SetOwnerReference` | `metadata.ownerReferences` |
//! | [`remove_owner_reference`], [`remove_controller_reference`] | `RemoveOwnerReference`, `RemoveControllerReference` | |
//! | [`has_controller_reference`], [`has_owner_reference`], [`controller_of`] | `HasControllerReference`, `HasOwnerReference`, `metav1.GetControllerOf` | |
//! | [`create_or_update`] | `CreateOrUpdate` | read (cache), mutate, create or update if changed |
//! | [`create_or_patch`] | `CreateOrPatch` | read (cache), mutate, create or merge-patch object and status |
//! | [`merge_patch`] | `client.MergeFrom` | the RFC 7386 diff of two JSON documents |
//!
//! The owner-reference helpers have `_dyn` variants for owners whose type is known at run
//! time ([`DynamicObject`](kube::core::DynamicObject) + [`ApiResource`](kube::core::ApiResource)).
//!
//! A typical reconcile keeps a child object in line with its owner:
//!
//! ```no_run
//! use ferrokube_runtime::controllerutil::{self, OperationResult};
//! use ferrokube_runtime::prelude::*;
//! use k8s_openapi::api::apps::v1::Deployment;
//! use k8s_openapi::api::core::v1::ConfigMap;
//!
//! async fn reconcile_config(client: &CachedClient, owner: &Deployment) -> Result<(), controllerutil::Error> {
//!     let mut cm = ConfigMap::default();
//!     cm.metadata.name = owner.metadata.name.clone();
//!     cm.metadata.namespace = owner.metadata.namespace.clone();
//!     let (_, result) = controllerutil::create_or_update(client, cm, |cm| {
//!         controllerutil::set_controller_reference(owner, cm)?;
//!         cm.data.get_or_insert_default().insert("replicas".into(), "3".into());
//!         Ok::<_, controllerutil::Error>(())
//!     })
//!     .await?;
//!     if result != OperationResult::Unchanged {
//!         tracing::info!(%result, "config reconciled");
//!     }
//!     Ok(())
//! }
//! ```

mod create_or_update;
mod finalizer;
mod merge_patch;
mod owner;

pub use self::create_or_update::{OperationResult, create_or_patch, create_or_update};
pub use self::finalizer::{add_finalizer, contains_finalizer, remove_finalizer};
pub use self::merge_patch::merge_patch;
pub use self::owner::{
    controller_of, has_controller_reference, has_owner_reference, has_owner_reference_dyn,
    remove_controller_reference, remove_controller_reference_dyn, remove_owner_reference,
    remove_owner_reference_dyn, set_controller_reference, set_controller_reference_dyn,
    set_owner_reference, set_owner_reference_dyn,
};

use crate::cached_client;
use crate::reconcile::BoxError;

/// What a `controllerutil` helper can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object already has another controller (controller-runtime's `AlreadyOwnedError`):
    /// an object has at most one.
    #[error("the object is already owned by another controller: {owner_kind} {owner_name}")]
    AlreadyOwned {
        /// The kind of the current controller.
        owner_kind: String,
        /// The name of the current controller.
        owner_name: String,
    },
    /// The owner lacks what an owner reference needs: a name, a uid, and for a namespaced
    /// type a namespace. Use the owner as read from the API server.
    #[error("the owner {kind} {name:?} has no {missing}")]
    IncompleteOwner {
        /// The owner's kind.
        kind: String,
        /// The owner's name (empty if it has none).
        name: String,
        /// The missing field: `metadata.name`, `metadata.uid` or `metadata.namespace`.
        missing: &'static str,
    },
    /// A cluster-scoped object cannot have a namespaced owner.
    #[error(
        "a cluster-scoped object cannot have a namespaced owner (the owner is in namespace {owner_namespace})"
    )]
    ClusterScopedObjectWithNamespacedOwner {
        /// The owner's namespace.
        owner_namespace: String,
    },
    /// A namespaced owner can only own objects of its own namespace.
    #[error(
        "cross-namespace owner references are disallowed: the owner is in namespace {owner_namespace}, the object in {}",
        .object_namespace.as_deref().unwrap_or("no namespace")
    )]
    CrossNamespaceOwner {
        /// The owner's namespace.
        owner_namespace: String,
        /// The object's namespace (`None`: not set).
        object_namespace: Option<String>,
    },
    /// The object given to [`create_or_update`] or [`create_or_patch`] has no
    /// `metadata.name` (`generateName` is not enough: the object is looked up by name).
    #[error("the {kind} has no metadata.name")]
    Unnamed {
        /// The object's kind.
        kind: String,
    },
    /// The mutate function failed; nothing was written.
    #[error("the mutate function failed")]
    Mutate(#[source] BoxError),
    /// The mutate function changed the object's name or namespace (controller-runtime:
    /// "MutateFn cannot mutate object name and/or object namespace"); nothing was written.
    #[error(
        "the mutate function cannot change the {kind}'s name or namespace: {before} became {after}"
    )]
    KeyMutated {
        /// The object's kind.
        kind: String,
        /// `namespace/name` before the mutate function ran.
        before: String,
        /// `namespace/name` after it ran.
        after: String,
    },
    /// The object could not be serialized to JSON to see what changed.
    #[error("cannot serialize the {kind} to JSON")]
    Serialize {
        /// The object's kind.
        kind: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Reading the object from the cache or writing it to the API server failed.
    #[error("cannot {verb} {kind} {key}")]
    Client {
        /// What was attempted: `get`, `create`, `update`, `patch`, `patch the status of`.
        verb: &'static str,
        /// The object's kind.
        kind: String,
        /// The object's `namespace/name`.
        key: String,
        /// The client's error (boxed: it is large).
        #[source]
        source: Box<cached_client::Error>,
    },
}

impl Error {
    /// The client's error, if the client failed.
    pub fn client_error(&self) -> Option<&cached_client::Error> {
        match self {
            Self::Client { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the API server answered 409 Conflict: the update was made from a stale cached
    /// copy. Retrying (on the next reconcile) reads a fresher one.
    pub fn is_conflict(&self) -> bool {
        self.client_error()
            .is_some_and(cached_client::Error::is_conflict)
    }

    /// Whether the API server answered AlreadyExists: the cache had not seen the object yet.
    pub fn is_already_exists(&self) -> bool {
        self.client_error()
            .is_some_and(cached_client::Error::is_already_exists)
    }

    /// Whether the API server answered 404 Not Found (the object was deleted meanwhile).
    pub fn is_not_found(&self) -> bool {
        self.client_error()
            .is_some_and(cached_client::Error::is_not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_sync_and_print_their_context() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();

        let e = Error::CrossNamespaceOwner {
            owner_namespace: "a".into(),
            object_namespace: None,
        };
        assert_eq!(
            e.to_string(),
            "cross-namespace owner references are disallowed: the owner is in namespace a, the object in no namespace"
        );
        let e = Error::AlreadyOwned {
            owner_kind: "Deployment".into(),
            owner_name: "web".into(),
        };
        assert_eq!(
            e.to_string(),
            "the object is already owned by another controller: Deployment web"
        );
        assert!(!e.is_conflict() && !e.is_not_found() && !e.is_already_exists());
        let e = Error::Client {
            verb: "update",
            kind: "ConfigMap".into(),
            key: "ns/a".into(),
            source: Box::new(cached_client::Error::Unnamed {
                kind: "ConfigMap".into(),
            }),
        };
        assert_eq!(e.to_string(), "cannot update ConfigMap ns/a");
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.client_error().is_some() && !e.is_conflict());
    }
}
