//! `sample_controller`: client-go's sample-controller, the classic pattern without a manager —
//! shared informers, listers, a rate-limited work queue and N workers, written out by hand.
//!
//! A `Foo` (group `examples.ferrokube.dev`, version `v1`) asks for an `apps/v1` Deployment:
//!
//! ```yaml
//! apiVersion: examples.ferrokube.dev/v1
//! kind: Foo
//! metadata: {name: example-foo, namespace: default}
//! spec: {deploymentName: example-foo, replicas: 1}
//! ```
//!
//! The controller creates the Deployment (nginx — `--image`, `--image-pull-policy` for a node
//! without registry access — controlled by the Foo: deleting the Foo deletes it), keeps its `replicas` equal to the Foo's, and mirrors the Deployment's
//! `status.availableReplicas` into the Foo's status. A Deployment of that name that the Foo
//! does not control is left alone and reported as a `Warning` Event, `ErrResourceExists`.
//! Each successful sync records a `Synced` Event.
//!
//! ```text
//! cargo run -p examples --example sample_controller -- run --install-crd
//! kubectl apply -f - <<< '{"apiVersion": "examples.ferrokube.dev/v1", "kind": "Foo",
//!   "metadata": {"name": "example-foo"}, "spec": {"deploymentName": "example-foo", "replicas": 1}}'
//! kubectl get deployments example-foo; kubectl get foos
//! ```
//!
//! `crd` prints the CustomResourceDefinition; `run --help` lists the flags.
//!
//! The pieces, as in client-go:
//! - a [`SharedInformerFactory`] with informers for Foos and Deployments, read through
//!   [`Lister`]s (the cache, never the API server);
//! - event handlers that turn changes into `namespace/name` keys: a Foo's own, and for a
//!   Deployment the key of the Foo that controls it;
//! - a [`RateLimitingQueue`]: a failed key comes back after a growing delay, a key is never
//!   handled by two workers at once;
//! - `--workers` tasks running `sync_handler`, which compares the Foo with its Deployment and
//!   writes through the REST client;
//! - an [`EventBroadcaster`] and its recorder;
//! - shutdown on SIGINT/SIGTERM: the queue drains the keys being processed, then the
//!   informers and the broadcaster stop.

// A `foo` is a Foo here, as in client-go's sample-controller.
#![allow(clippy::disallowed_names)]

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use examples::{BoxError, ClusterArgs};
use ferrokube_runtime::client::{
    Api, BroadcasterConfig, Client, EventBroadcaster, EventType, Recorder, WriteOptions,
};
use ferrokube_runtime::informer::key::{object_key, split_key};
use ferrokube_runtime::informer::{EventHandlerFuncs, Lister, SharedInformerFactory};
use ferrokube_runtime::k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use ferrokube_runtime::k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use ferrokube_runtime::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta,
};
use ferrokube_runtime::kube::{CustomResource, CustomResourceExt, Resource};
use ferrokube_runtime::manager::shutdown_signal;
use ferrokube_runtime::workqueue::{RateLimitingQueue, default_controller_rate_limiter};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The Events' reporting controller, and the field manager of `--install-crd`.
const CONTROLLER_NAME: &str = "examples.ferrokube.dev/sample-controller";
const FIELD_MANAGER: &str = "sample-controller";

/// client-go's sample-controller reasons and messages.
const SUCCESS_SYNCED: &str = "Synced";
const ERR_RESOURCE_EXISTS: &str = "ErrResourceExists";
const MESSAGE_RESOURCE_SYNCED: &str = "Foo synced successfully";

// === the custom resource ===

/// A Foo: a Deployment of `deploymentName` with `replicas` nginx pods.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "examples.ferrokube.dev",
    version = "v1",
    kind = "Foo",
    namespaced,
    status = "FooStatus",
    doc = "client-go's sample-controller Foo: asks for a Deployment.",
    printcolumn = r#"{"name": "Deployment", "type": "string", "jsonPath": ".spec.deploymentName"}"#,
    printcolumn = r#"{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}"#,
    printcolumn = r#"{"name": "Available", "type": "integer", "jsonPath": ".status.availableReplicas"}"#,
    crates(
        kube_core = "::ferrokube_runtime::kube::core",
        k8s_openapi = "::ferrokube_runtime::k8s_openapi"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FooSpec {
    /// The Deployment to create (in the Foo's namespace).
    pub deployment_name: String,
    /// Its replicas (unset: the Deployment's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
}

/// What the controller observed.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FooStatus {
    /// The Deployment's `status.availableReplicas`.
    #[serde(default)]
    pub available_replicas: i32,
}

// === the command line ===

/// client-go's sample-controller: each Foo gets a Deployment, without a manager.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the Foo CustomResourceDefinition as YAML (pipe it to `kubectl apply -f -`).
    Crd,
    /// Run the controller until SIGINT or SIGTERM.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Install (or update) the Foo CRD before starting.
    #[arg(long)]
    install_crd: bool,
    /// Watch Foos and Deployments in this namespace only (default: all namespaces).
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: Option<String>,
    /// How many keys are synced at once.
    #[arg(long, value_name = "N", default_value_t = 2)]
    workers: usize,
    /// How often the informers hand every cached object to the handlers again (0: never).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = examples::parse_duration)]
    resync: Duration,
    /// The image of the Deployments' container.
    #[arg(long, value_name = "IMAGE", default_value = "nginx:latest")]
    image: String,
    /// The container's imagePullPolicy (default: Kubernetes', Always for `:latest`);
    /// `Never` or `IfNotPresent` run an image the node already has, without a registry.
    #[arg(long, value_name = "POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    image_pull_policy: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    examples::init_tracing();
    examples::exit(run(cli).await)
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Crd => examples::print_yaml("CustomResourceDefinition", &Foo::crd())?,
        Command::Run(args) => run_controller(&cli.cluster, args).await?,
    }
    Ok(())
}

// === main: informers, handlers, workers ===

async fn run_controller(cluster: &ClusterArgs, args: RunArgs) -> Result<(), BoxError> {
    let config = cluster.config().await?.with_qps(20.0).with_burst(30);
    let client = config.build()?;
    examples::connect(&client, &config).await?;
    if args.install_crd {
        examples::install_crd(&client, &Foo::crd(), FIELD_MANAGER).await?;
    }
    let namespace = args.namespace.as_deref();
    examples::check_served::<Foo>(&client, &config, namespace, "sample_controller").await?;

    let resync = Some(args.resync).filter(|r| !r.is_zero());
    let mut factory = SharedInformerFactory::new(client.clone(), resync);
    if let Some(ns) = namespace {
        factory = factory.namespace(ns);
    }
    let foo_informer = factory.informer_for::<Foo>();
    let deployment_informer = factory.informer_for::<Deployment>();
    let broadcaster = EventBroadcaster::new(client.clone(), BroadcasterConfig::default());
    let identity = format!("{}_{}", examples::hostname(), std::process::id());
    let controller = Arc::new(Controller {
        client,
        foos: factory.lister_for::<Foo>(),
        deployments: factory.lister_for::<Deployment>(),
        queue: RateLimitingQueue::new(default_controller_rate_limiter()),
        recorder: broadcaster.recorder(CONTROLLER_NAME, identity),
        container: PodContainer {
            image: args.image,
            pull_policy: args.image_pull_policy,
        },
    });

    tracing::info!("setting up event handlers");
    // A Foo changed: sync it (an update's new state is what counts).
    let _foos = foo_informer.add_event_handler({
        let (on_add, on_update) = (Arc::clone(&controller), Arc::clone(&controller));
        EventHandlerFuncs::default()
            .on_add(move |foo: Arc<Foo>, _| on_add.enqueue_foo(&foo))
            .on_update(move |_, foo: Arc<Foo>| on_update.enqueue_foo(&foo))
    });
    // A Deployment changed: sync the Foo that controls it, if any. Resyncs (same
    // resourceVersion) are skipped: the Foo's own resync covers them.
    let _deployments = deployment_informer.add_event_handler({
        let (on_add, on_update, on_delete) = (
            Arc::clone(&controller),
            Arc::clone(&controller),
            Arc::clone(&controller),
        );
        EventHandlerFuncs::default()
            .on_add(move |d: Arc<Deployment>, _| on_add.handle_object(&d))
            .on_update(move |old: Arc<Deployment>, new: Arc<Deployment>| {
                if old.metadata.resource_version != new.metadata.resource_version {
                    on_update.handle_object(&new);
                }
            })
            .on_delete(move |d| on_delete.handle_object(d.object()))
    });

    let shutdown = shutdown_signal()?;
    tracing::info!("starting the informers");
    factory.start();
    let synced = factory.wait_for_cache_sync(&shutdown).await;
    if shutdown.is_cancelled() {
        factory.shutdown().await;
        return Ok(());
    }
    if let Some((informer, _)) = synced.iter().find(|(_, synced)| !**synced) {
        return Err(format!("failed to wait for the {informer} cache to sync").into());
    }

    tracing::info!(workers = args.workers, "starting workers");
    let workers: Vec<_> = (0..args.workers.max(1))
        .map(|_| tokio::spawn(Arc::clone(&controller).run_worker()))
        .collect();
    shutdown.cancelled().await;

    tracing::info!("shutting down: waiting for the keys being synced");
    controller.queue.shutdown_with_drain().await;
    for worker in workers {
        worker.await?;
    }
    factory.shutdown().await;
    broadcaster.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

// === the controller ===

struct Controller {
    client: Client,
    foos: Lister<Foo>,
    deployments: Lister<Deployment>,
    queue: RateLimitingQueue<String>,
    recorder: Recorder,
    container: PodContainer,
}

/// The container of the Deployments' pods (`--image`, `--image-pull-policy`).
struct PodContainer {
    image: String,
    pull_policy: Option<String>,
}

/// Why a key could not be synced (it is retried with the queue's rate limiter).
#[derive(Debug, thiserror::Error)]
enum SyncError {
    /// The API server refused a write or could not be reached.
    #[error(transparent)]
    Api(#[from] ferrokube_runtime::client::Error),
    /// The Deployment exists and this Foo does not control it.
    #[error("Resource {0:?} already exists and is not managed by Foo")]
    NotOwned(String),
}

impl Controller {
    /// Queues a Foo's `namespace/name`.
    fn enqueue_foo(&self, foo: &Foo) {
        self.queue.add(object_key(foo));
    }

    /// Queues the Foo that controls `object`, if any (a Deployment whose controller is not a
    /// Foo, or whose Foo is gone, is ignored).
    fn handle_object(&self, object: &Deployment) {
        let Some(owner) = object
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
        else {
            return;
        };
        if owner.kind != Foo::kind(&()) || owner.api_version != Foo::api_version(&()) {
            return;
        }
        let namespace = object.metadata.namespace.as_deref();
        match self.foos.get(namespace, &owner.name) {
            Some(foo) => self.enqueue_foo(&foo),
            None => tracing::debug!(
                deployment = %object_key(object),
                foo = %owner.name,
                "ignoring orphaned object"
            ),
        }
    }

    /// Takes keys from the queue until it shuts down.
    async fn run_worker(self: Arc<Self>) {
        while let Some(key) = self.queue.get().await {
            match self.sync_handler(&key).await {
                Ok(()) => self.queue.forget(&key),
                Err(e) => {
                    tracing::warn!(
                        %key,
                        retries = self.queue.num_requeues(&key),
                        "error syncing, requeuing: {}",
                        examples::error_chain(&e)
                    );
                    self.queue.add_rate_limited(key.clone());
                }
            }
            self.queue.done(&key);
        }
    }

    /// Brings the Deployment of the Foo named by `key` in line, and the Foo's status.
    async fn sync_handler(&self, key: &str) -> Result<(), SyncError> {
        let Ok((namespace, name)) = split_key(key) else {
            tracing::error!(%key, "invalid resource key");
            return Ok(());
        };
        let Some(foo) = self.foos.get(namespace, name) else {
            tracing::info!(%key, "foo in work queue no longer exists");
            return Ok(());
        };
        let deployment_name = &foo.spec.deployment_name;
        if deployment_name.is_empty() {
            // Nothing to retry until the Foo changes.
            tracing::error!(%key, "deployment name must be specified");
            return Ok(());
        }
        let namespace = namespace.unwrap_or_default();
        let deployments: Api<Deployment> = self.client.namespaced(namespace);

        let mut deployment = match self.deployments.get(Some(namespace), deployment_name) {
            Some(d) => d,
            None => {
                let created = deployments
                    .create(
                        &new_deployment(&foo, &self.container),
                        &WriteOptions::default(),
                    )
                    .await?;
                tracing::info!(%key, deployment = %deployment_name, "created the deployment");
                Arc::new(created)
            }
        };

        if !is_controlled_by(&deployment, &foo) {
            let error = SyncError::NotOwned(deployment_name.clone());
            self.recorder.event(
                &*foo,
                None,
                EventType::Warning,
                ERR_RESOURCE_EXISTS,
                "Sync",
                error.to_string(),
            );
            return Err(error);
        }

        let replicas = deployment.spec.as_ref().and_then(|s| s.replicas);
        if foo.spec.replicas.is_some() && foo.spec.replicas != replicas {
            tracing::info!(
                %key,
                foo_replicas = ?foo.spec.replicas,
                deployment_replicas = ?replicas,
                "updating the deployment's replicas"
            );
            let mut desired = new_deployment(&foo, &self.container);
            // The cached resourceVersion: a stale cache gives a conflict, and a retry.
            desired.metadata.resource_version = deployment.metadata.resource_version.clone();
            deployment = Arc::new(
                deployments
                    .update(&desired, &WriteOptions::default())
                    .await?,
            );
        }

        self.update_foo_status(&foo, &deployment).await?;
        self.recorder.event(
            &*foo,
            None,
            EventType::Normal,
            SUCCESS_SYNCED,
            "Sync",
            MESSAGE_RESOURCE_SYNCED,
        );
        Ok(())
    }

    /// Mirrors the Deployment's available replicas into the Foo's status.
    async fn update_foo_status(&self, foo: &Foo, deployment: &Deployment) -> Result<(), SyncError> {
        let available = deployment
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        let status = FooStatus {
            available_replicas: available,
        };
        if foo.status.as_ref() == Some(&status) {
            return Ok(());
        }
        // Never change the cached object: write a copy (client-go's DeepCopy).
        let mut copy = foo.clone();
        copy.status = Some(status);
        let foos: Api<Foo> = self
            .client
            .namespaced(foo.metadata.namespace.as_deref().unwrap_or_default());
        foos.update_status(&copy, &WriteOptions::default()).await?;
        Ok(())
    }
}

/// Whether `foo` is `deployment`'s controller (apimachinery's `IsControlledBy`: by UID).
fn is_controlled_by(deployment: &Deployment, foo: &Foo) -> bool {
    deployment
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && Some(&r.uid) == foo.metadata.uid.as_ref())
}

/// The Deployment a Foo asks for, controlled by the Foo.
fn new_deployment(foo: &Foo, container: &PodContainer) -> Deployment {
    let labels = BTreeMap::from([
        ("app".to_owned(), "nginx".to_owned()),
        (
            "controller".to_owned(),
            foo.metadata.name.clone().unwrap_or_default(),
        ),
    ]);
    Deployment {
        metadata: ObjectMeta {
            name: Some(foo.spec.deployment_name.clone()),
            namespace: foo.metadata.namespace.clone(),
            owner_references: foo.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: foo.spec.replicas,
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
                        name: "nginx".to_owned(),
                        image: Some(container.image.clone()),
                        image_pull_policy: container.pull_policy.clone(),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}
