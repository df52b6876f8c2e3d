//! `podcount`: the PodCount operator (kubebuilder's classic), run by ferrokube's manager.
//!
//! A `PodCount` says how many Pods matching a label selector its namespace should have:
//!
//! ```yaml
//! apiVersion: examples.ferrokube.dev/v1
//! kind: PodCount
//! metadata: {name: web, namespace: default}
//! spec: {selector: {matchLabels: {app: web}}, count: 2}
//! ```
//!
//! The controller counts the Pods of the PodCount's namespace that match its selector — in any
//! phase: a Pending pod counts — and writes `status.matching`, `status.desired`,
//! `status.observedGeneration` and a `Ready` condition (True when matching ≥ desired). Each
//! time `Ready` changes it records an Event (`Ready` or `NotReady`). It never creates or
//! deletes Pods.
//!
//! ```text
//! cargo run -p examples --example podcount -- run --install-crd     # against $KUBECONFIG
//! kubectl apply -f - <<< '{"apiVersion": "examples.ferrokube.dev/v1", "kind": "PodCount",
//!   "metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "count": 2}}'
//! kubectl run web-1 --image=nginx -l app=web; kubectl run web-2 --image=nginx -l app=web
//! kubectl get podcounts          # NAME DESIRED MATCHING READY AGE: web 2 2 True 1m
//! kubectl get events --field-selector involvedObject.kind=PodCount
//! ```
//!
//! Subcommands: `crd` prints the CustomResourceDefinition (`| kubectl apply -f -`), `rbac`
//! prints the ClusterRole the controller needs, `run` runs it (`--help` for the flags).
//!
//! What it shows, top to bottom:
//! - `#[derive(CustomResource)]` with a status subresource and printer columns, through
//!   `ferrokube_runtime`'s re-exports of kube and k8s-openapi (one ferrokube dependency);
//! - a [`Manager`]: shared cache, optional leader election (`--leader-elect`), `/metrics`,
//!   `/healthz` and `/readyz` (`--metrics-bind-address`), graceful shutdown on SIGINT/SIGTERM;
//! - [`Builder`]: `for_::<PodCount>()` and `watches::<Pod>(…)`, so that a Pod change reconciles
//!   the PodCounts whose selector matches the Pod (before or after the change);
//! - a field index on Pods by label (`app=web`), read with [`ListParams::field`];
//! - status written as a merge patch of the status subresource, only when it changed;
//! - Events from the manager's recorder;
//! - a finalizer. A PodCount owns nothing, so there is nothing to release: its cleanup
//!   records a `Finalized` Event and a log line — where a real operator would delete what it
//!   made outside the cluster — and then removes the finalizer so the deletion completes;
//! - webhooks (`run --webhook-port`, in `podcount/webhooks.rs`): a defaulter (`spec.count`
//!   defaults to 1), a validator (a negative count is denied with a reason), and a `v2` of the
//!   API (`spec.count` is `spec.minPods`) served through a conversion webhook, `v1` being the
//!   hub and the storage version. `crd` prints both versions with the conversion webhook,
//!   `webhooks` the webhook configurations. Without the webhook server, an unset count counts
//!   as 1 and nothing refuses a negative one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use examples::{BoxError, ClusterArgs};
use ferrokube_runtime::cache::ListParams;
use ferrokube_runtime::cached_client;
use ferrokube_runtime::client::{EventType, Patch, Recorder};
use ferrokube_runtime::controllerutil::{add_finalizer, contains_finalizer, remove_finalizer};
use ferrokube_runtime::informer::labels::Selector;
use ferrokube_runtime::k8s_openapi::api::core::v1::Pod;
use ferrokube_runtime::k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use ferrokube_runtime::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, Time,
};
use ferrokube_runtime::k8s_openapi::jiff::Timestamp;
use ferrokube_runtime::kube::{CustomResource, CustomResourceExt};
use ferrokube_runtime::predicate::to_selector;
use ferrokube_runtime::prelude::*;
use ferrokube_runtime::webhook::server::Options as WebhookOptions;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[path = "podcount/webhooks.rs"]
mod webhooks;

/// The finalizer the controller puts on every PodCount.
const FINALIZER: &str = "examples.ferrokube.dev/podcount-cleanup";
/// The field manager of the controller's writes, and the Events' reporting controller.
const FIELD_MANAGER: &str = "podcount";
const REPORTING_CONTROLLER: &str = "examples.ferrokube.dev/podcount";
/// The leader election Lease.
const LEASE_NAME: &str = "podcount.examples.ferrokube.dev";
/// The Pod field index: one entry per label, `key=value`.
const LABEL_INDEX: &str = "metadata.labels";
/// The condition type the controller maintains.
const READY: &str = "Ready";
/// `spec.count` when it is not set (the defaulting webhook writes it).
const DEFAULT_COUNT: i32 = 1;

// === the custom resource ===

/// How many Pods matching `selector` the PodCount's namespace should have.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "examples.ferrokube.dev",
    version = "v1",
    kind = "PodCount",
    namespaced,
    status = "PodCountStatus",
    shortname = "pc",
    doc = "Counts the Pods of its namespace that match a label selector.",
    printcolumn = r#"{"name": "Desired", "type": "integer", "jsonPath": ".spec.count"}"#,
    printcolumn = r#"{"name": "Matching", "type": "integer", "jsonPath": ".status.matching"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
    crates(
        kube_core = "::ferrokube_runtime::kube::core",
        k8s_openapi = "::ferrokube_runtime::k8s_openapi"
    )
)]
pub struct PodCountSpec {
    /// The Pods to count (an empty selector counts every Pod of the namespace).
    #[schemars(schema_with = "label_selector_schema")]
    pub selector: LabelSelector,
    /// How many matching Pods make the PodCount Ready (defaulted to 1; the validating
    /// webhook denies a negative count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
}

/// What the controller observed.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodCountStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many Pods match the selector.
    #[serde(default)]
    pub matching: i32,
    /// `spec.count`, as observed.
    #[serde(default)]
    pub desired: i32,
    /// `Ready`: True when `matching >= desired`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// The OpenAPI schema of a `metav1.LabelSelector` (k8s-openapi's types carry no schemars
/// schema unless its `schemars` feature is on).
fn label_selector_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "A label selector: matchLabels and matchExpressions, ANDed.",
        "properties": {
            "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
            "matchExpressions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"type": "string"},
                        "operator": {"type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                        "values": {"type": "array", "items": {"type": "string"}}
                    }
                }
            }
        },
        "x-kubernetes-map-type": "atomic"
    })
}

/// The OpenAPI schema of a list of `metav1.Condition`s, keyed by type.
fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            "properties": {
                "type": {"type": "string"},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "observedGeneration": {"type": "integer", "format": "int64"},
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "reason": {"type": "string"},
                "message": {"type": "string"}
            }
        }
    })
}

impl PodCountStatus {
    fn ready(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == READY)
    }
}

/// The ClusterRole the controller needs (`podcount rbac`).
fn cluster_role(install_crd: bool) -> ClusterRole {
    let rule = |group: &str, resources: &[&str], verbs: &[&str], names: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|&r| r.to_owned()).collect()),
        verbs: verbs.iter().map(|&v| v.to_owned()).collect(),
        resource_names: (!names.is_empty()).then(|| names.iter().map(|&n| n.to_owned()).collect()),
        ..PolicyRule::default()
    };
    let group = "examples.ferrokube.dev";
    let mut rules = vec![
        rule(
            group,
            &["podcounts"],
            &["get", "list", "watch", "update", "patch"],
            &[],
        ),
        rule(
            group,
            &["podcounts/status"],
            &["get", "update", "patch"],
            &[],
        ),
        rule(group, &["podcounts/finalizers"], &["update"], &[]),
        rule("", &["pods"], &["get", "list", "watch"], &[]),
        rule("events.k8s.io", &["events"], &["create", "patch"], &[]),
        // --leader-elect
        rule(
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "update"],
            &[],
        ),
    ];
    if install_crd {
        rules.push(rule(
            "apiextensions.k8s.io",
            &["customresourcedefinitions"],
            &["create"],
            &[],
        ));
        rules.push(rule(
            "apiextensions.k8s.io",
            &["customresourcedefinitions"],
            &["get", "patch"],
            &["podcounts.examples.ferrokube.dev"],
        ));
    }
    let mut role = ClusterRole {
        rules: Some(rules),
        ..ClusterRole::default()
    };
    role.metadata.name = Some("podcount".to_owned());
    role
}

// === the command line ===

/// The PodCount operator: counts the Pods matching each PodCount's selector and reports
/// whether there are enough.
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
    /// Print the PodCount CustomResourceDefinition as YAML (pipe it to `kubectl apply -f -`):
    /// `v1` (stored) and `v2`, converted by the webhook server.
    Crd {
        /// Only `v1`, without the conversion webhook (what `run --install-crd` installs): for a
        /// controller running without its webhook server.
        #[arg(long)]
        single_version: bool,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Print the MutatingWebhookConfiguration and ValidatingWebhookConfiguration as YAML.
    Webhooks {
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Print the ClusterRole the controller needs as YAML.
    Rbac {
        /// Also allow what `run --install-crd` needs (create and patch the CRD).
        #[arg(long)]
        install_crd: bool,
    },
    /// Run the controller until SIGINT or SIGTERM.
    Run(RunArgs),
}

/// Where the API server calls the webhook server.
#[derive(Args, Debug)]
struct EndpointArgs {
    /// The webhook server's Service, `NAMESPACE/NAME` (port 443).
    #[arg(
        long,
        value_name = "NS/NAME",
        default_value = "podcount-system/podcount-webhook-service"
    )]
    webhook_service: String,
    /// A base URL instead of a Service, e.g. `https://172.18.0.1:9443` for a kind cluster
    /// calling `run --webhook-port 9443` on the host (the serving certificate must name it).
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
    /// The CA (PEM) that signed the serving certificate, written as `caBundle`.
    #[arg(long, value_name = "FILE")]
    webhook_ca_file: Option<PathBuf>,
}

impl EndpointArgs {
    fn endpoint(&self) -> Result<webhooks::Endpoint, BoxError> {
        let Some((namespace, name)) = self.webhook_service.split_once('/') else {
            return Err(format!(
                "--webhook-service {:?} is not NAMESPACE/NAME",
                self.webhook_service
            )
            .into());
        };
        let ca_bundle = match &self.webhook_ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| format!("reading --webhook-ca-file {}: {e}", path.display()))?,
            ),
            None => None,
        };
        Ok(webhooks::Endpoint {
            service: (namespace.to_owned(), name.to_owned()),
            url: self.webhook_url.clone(),
            ca_bundle,
        })
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Install (or update) the PodCount CRD before starting.
    #[arg(long)]
    install_crd: bool,
    /// Watch PodCounts and Pods in this namespace only (default: all namespaces).
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: Option<String>,
    /// Where to serve /metrics, /healthz and /readyz: `host:port`, `:port` (all interfaces)
    /// or `0` (no server).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    metrics_bind_address: BindAddress,
    /// Reconcile only while holding the leader election Lease, so that replicas can stand by.
    #[arg(long)]
    leader_elect: bool,
    /// The namespace of the Lease (default: --namespace, else the kubeconfig context's).
    #[arg(long, value_name = "NS")]
    lease_namespace: Option<String>,
    /// This replica's identity in the Lease (default: hostname and a random suffix).
    #[arg(long, value_name = "ID")]
    identity: Option<String>,
    /// How long shutdown waits for reconciles in flight (e.g. 30s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = examples::parse_duration)]
    graceful_shutdown_timeout: Duration,
    /// How many PodCounts are reconciled at once.
    #[arg(long, value_name = "N", default_value_t = 2)]
    max_concurrent_reconciles: usize,
    /// Serve the defaulting, validating and conversion webhooks over HTTPS on this port
    /// (controller-runtime's is 9443; default: no webhook server).
    #[arg(long, value_name = "PORT")]
    webhook_port: Option<u16>,
    /// The address the webhook server listens on.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    webhook_host: IpAddr,
    /// The folder holding the webhook server's `tls.crt` and `tls.key` (re-read when they
    /// change; default: controller-runtime's, `$TMPDIR/k8s-webhook-server/serving-certs`).
    #[arg(long, value_name = "DIR")]
    webhook_cert_dir: Option<PathBuf>,
}

/// `host:port`, `:port` (every interface, as Go's `net.Listen` reads it), or `0` for no
/// server (controller-runtime's conventions).
#[derive(Clone, Copy, Debug, PartialEq)]
struct BindAddress(Option<SocketAddr>);

impl FromStr for BindAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "0" {
            return Ok(Self(None));
        }
        let parsed = match s.strip_prefix(':') {
            Some(port) => port
                .parse::<u16>()
                .map(|port| SocketAddr::from(([0, 0, 0, 0], port)))
                .map_err(|e| e.to_string()),
            None => s
                .parse()
                .map_err(|e: std::net::AddrParseError| e.to_string()),
        };
        parsed
            .map(|a| Self(Some(a)))
            .map_err(|e| format!("{s:?} is not host:port, :port or 0: {e}"))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    examples::init_tracing();
    examples::exit(run(cli).await)
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Crd {
            single_version: true,
            ..
        } => examples::print_yaml("CustomResourceDefinition", &PodCount::crd())?,
        Command::Crd { endpoint, .. } => {
            let crd = webhooks::crd(&endpoint.endpoint()?)?;
            examples::print_yaml("CustomResourceDefinition", &crd)?;
        }
        Command::Webhooks { endpoint } => {
            let (mutating, validating) = webhooks::configurations(&endpoint.endpoint()?);
            examples::print_yaml("MutatingWebhookConfiguration", &mutating)?;
            println!("---");
            examples::print_yaml("ValidatingWebhookConfiguration", &validating)?;
        }
        Command::Rbac { install_crd } => {
            examples::print_yaml("ClusterRole", &cluster_role(install_crd))?;
        }
        Command::Run(args) => run_controller(&cli.cluster, args).await?,
    }
    Ok(())
}

// === the manager ===

async fn run_controller(cluster: &ClusterArgs, args: RunArgs) -> Result<(), BoxError> {
    // controller-runtime's client defaults (client-go's 5 QPS are for kubectl-like tools).
    let config = cluster.config().await?.with_qps(20.0).with_burst(30);
    let client = config.build()?;
    // Fail fast, with one clear line, on an unreachable cluster or a missing CRD.
    examples::connect(&client, &config).await?;
    if args.install_crd {
        examples::install_crd(&client, &PodCount::crd(), FIELD_MANAGER).await?;
    }
    let namespace = args.namespace.as_deref();
    examples::check_served::<PodCount>(&client, &config, namespace, "podcount").await?;

    let mut cache = CacheOptions::default();
    if let Some(ns) = namespace {
        cache = cache.namespaces([ns]);
    }
    let mut options = ManagerOptions::default()
        .cache(cache)
        .bind_address(args.metrics_bind_address.0)
        .graceful_shutdown_timeout(args.graceful_shutdown_timeout)
        .field_manager(FIELD_MANAGER);
    if args.leader_elect {
        let lease_namespace = args
            .lease_namespace
            .or(args.namespace.clone())
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let mut election = LeaderElectionOptions::new(lease_namespace, LEASE_NAME)
            // The process exits when the manager stops: hand the Lease over at once.
            .release_on_cancel(true);
        if let Some(identity) = args.identity {
            election = election.identity(identity);
        }
        options = options.leader_election(election);
    }
    if let Some(port) = args.webhook_port {
        let mut webhook = WebhookOptions::default().host(args.webhook_host).port(port);
        if let Some(dir) = &args.webhook_cert_dir {
            webhook = webhook.cert_dir(dir);
        }
        options = options.webhook_server(webhook);
    }
    let manager = Manager::new(&config, options)?;
    if args.webhook_port.is_some() {
        let paths = webhooks::register(manager.webhook_server())?;
        tracing::info!(?paths, "serving the PodCount webhooks and /convert");
    }

    // Pods by label, `key=value`: a PodCount looks up the Pods carrying one of its labels
    // instead of testing every Pod of its namespace.
    manager
        .cache()
        .index_field::<Pod>(LABEL_INDEX, |pod: &Pod| {
            pod.metadata
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect()
        })?;

    let selectors = Selectors::default();
    let pod_to_podcounts = {
        let selectors = selectors.clone();
        handler::map_fn(move |pod: &Pod| selectors.podcounts_for(pod))
    };
    Builder::new(&manager)
        .named("podcount")
        .for_::<PodCount>()
        .watches::<Pod>(pod_to_podcounts)
        .options(
            ControllerOptions::default().max_concurrent_reconciles(args.max_concurrent_reconciles),
        )
        .complete(PodCounter {
            client: manager.client(),
            recorder: manager.event_recorder(REPORTING_CONTROLLER),
            selectors,
            reported: ReportedReady::default(),
        })?;

    tracing::info!(
        namespace = namespace.unwrap_or("(all)"),
        identity = manager.identity(),
        "starting the manager; SIGINT or SIGTERM stops it"
    );
    manager.start(shutdown_signal()?).await?;
    tracing::info!("stopped");
    Ok(())
}

// === the reconciler ===

/// Each PodCount's selector as last reconciled, so that a Pod event finds the PodCounts that
/// count it. (controller-runtime's map functions read the cache; ferrokube's are synchronous
/// and its cache reads async, so the reconciler keeps this table.) Nothing is missed while
/// a PodCount is not in it yet: its own first reconcile counts every Pod already cached.
#[derive(Clone, Default)]
struct Selectors(Arc<RwLock<HashMap<Request, Selector>>>);

impl Selectors {
    fn remember(&self, podcount: &Request, selector: Selector) {
        let mut table = self.0.write().unwrap_or_else(PoisonError::into_inner);
        table.insert(podcount.clone(), selector);
    }

    fn forget(&self, podcount: &Request) {
        let mut table = self.0.write().unwrap_or_else(PoisonError::into_inner);
        table.remove(podcount);
    }

    /// The PodCounts of `pod`'s namespace whose selector matches its labels. An update maps
    /// the old and the new Pod, so a relabelled Pod updates the PodCounts it left too.
    fn podcounts_for(&self, pod: &Pod) -> Vec<Request> {
        let table = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let labels = pod.metadata.labels.as_ref();
        table
            .iter()
            .filter(|(podcount, selector)| {
                podcount.namespace() == pod.metadata.namespace.as_deref()
                    && selector.matches(labels)
            })
            .map(|(podcount, _)| podcount.clone())
            .collect()
    }
}

/// The `Ready` condition this process last wrote for each PodCount (by namespace/name, for
/// the object with this uid). Flips are decided from it rather than from the cache, which may
/// not show the last status patch yet: the finalizer's update requeues the PodCount, and a
/// reconcile reading the cache before the patch's watch event arrives would count the same
/// flip twice (a duplicate Event and a rewritten `lastTransitionTime`). Until this process
/// writes a PodCount's status, the cached one is the best knowledge there is.
#[derive(Clone, Default)]
struct ReportedReady(Arc<RwLock<HashMap<Request, Reported>>>);

/// One PodCount's `Ready` condition as last written.
#[derive(Clone)]
struct Reported {
    uid: Option<String>,
    status: String,
    last_transition_time: Time,
}

impl ReportedReady {
    /// What was last written for this PodCount, unless it was for an earlier object of the
    /// same name.
    fn get(&self, podcount: &Request, uid: Option<&str>) -> Option<Reported> {
        let table = self.0.read().unwrap_or_else(PoisonError::into_inner);
        table
            .get(podcount)
            .filter(|r| r.uid.as_deref() == uid)
            .cloned()
    }

    fn remember(&self, podcount: &Request, reported: Reported) {
        let mut table = self.0.write().unwrap_or_else(PoisonError::into_inner);
        table.insert(podcount.clone(), reported);
    }

    fn forget(&self, podcount: &Request) {
        let mut table = self.0.write().unwrap_or_else(PoisonError::into_inner);
        table.remove(podcount);
    }
}

struct PodCounter {
    client: CachedClient,
    recorder: Recorder,
    selectors: Selectors,
    reported: ReportedReady,
}

impl Reconciler for PodCounter {
    type Error = cached_client::Error;

    async fn reconcile(&self, request: Request, _ctx: Context) -> Result<Action, Self::Error> {
        let Some(podcount) = self.client.get_request::<PodCount>(&request).await? else {
            self.selectors.forget(&request);
            self.reported.forget(&request);
            return Ok(Action::done()); // deleted
        };
        if podcount.metadata.deletion_timestamp.is_some() {
            self.selectors.forget(&request);
            self.reported.forget(&request);
            return self.finalize(&request, &podcount).await;
        }
        let podcount = if contains_finalizer(&*podcount, FINALIZER) {
            podcount
        } else {
            // An update, not a patch: a stale copy fails with a conflict and is retried.
            let mut with_finalizer = (*podcount).clone();
            add_finalizer(&mut with_finalizer, FINALIZER);
            Arc::new(self.client.update(&with_finalizer).await?)
        };

        let namespace = request.namespace().unwrap_or_default();
        let observed = match to_selector(&podcount.spec.selector) {
            Ok(selector) => {
                self.selectors.remember(&request, selector.clone());
                let pods = self
                    .matching_pods(namespace, &podcount.spec.selector, selector)
                    .await?;
                Observed::Counted(i32::try_from(pods.len()).unwrap_or(i32::MAX))
            }
            Err(e) => {
                self.selectors.forget(&request);
                Observed::InvalidSelector(e.to_string())
            }
        };
        self.update_status(&podcount, &observed).await?;
        Ok(Action::done())
    }
}

/// What a reconcile found.
enum Observed {
    /// This many Pods match.
    Counted(i32),
    /// The selector cannot be used (why).
    InvalidSelector(String),
}

impl PodCounter {
    /// The Pods of `namespace` that `selector` matches. With `matchLabels`, the label index
    /// narrows the search to the Pods carrying one of them; the cache then applies the whole
    /// selector.
    async fn matching_pods(
        &self,
        namespace: &str,
        spec: &LabelSelector,
        selector: Selector,
    ) -> Result<Vec<Arc<Pod>>, cached_client::Error> {
        let mut params = ListParams::default()
            .namespace(namespace)
            .selector(selector);
        if let Some((key, value)) = spec.match_labels.iter().flatten().next() {
            params = params.field(LABEL_INDEX, format!("{key}={value}"));
        }
        self.client.list::<Pod>(&params).await
    }

    /// Writes the status if it changed; records an Event when `Ready` flips.
    async fn update_status(
        &self,
        podcount: &PodCount,
        observed: &Observed,
    ) -> Result<(), cached_client::Error> {
        let old = podcount.status.clone().unwrap_or_default();
        let desired = podcount.spec.count.unwrap_or(DEFAULT_COUNT);
        let generation = podcount.metadata.generation;
        let (matching, ready, reason, message) = match observed {
            Observed::Counted(matching) => {
                let ready = *matching >= desired;
                let message = format!("{matching} of {desired} desired pods match");
                let reason = if ready { "EnoughPods" } else { "TooFewPods" };
                (*matching, ready, reason, message)
            }
            Observed::InvalidSelector(why) => {
                (0, false, "InvalidSelector", format!("spec.selector: {why}"))
            }
        };
        let status = if ready { "True" } else { "False" };
        // The previous condition: what this process wrote last, else (nothing written yet)
        // the cached one.
        let request = Request::for_object(podcount);
        let uid = podcount.metadata.uid.as_deref();
        let previous = self.reported.get(&request, uid).or_else(|| {
            old.ready().map(|c| Reported {
                uid: uid.map(str::to_owned),
                status: c.status.clone(),
                last_transition_time: c.last_transition_time.clone(),
            })
        });
        let flipped = previous.as_ref().map(|p| p.status.as_str()) != Some(status);
        let last_transition_time = match previous {
            Some(p) if !flipped => p.last_transition_time,
            _ => Time(Timestamp::now()),
        };
        let new = PodCountStatus {
            observed_generation: generation,
            matching,
            desired,
            conditions: vec![Condition {
                type_: READY.to_owned(),
                status: status.to_owned(),
                observed_generation: generation,
                last_transition_time: last_transition_time.clone(),
                reason: reason.to_owned(),
                message: message.clone(),
            }],
        };
        if new == old {
            return Ok(());
        }
        let patch = serde_json::json!({ "status": new });
        self.client
            .patch_status(podcount, &Patch::Merge(patch))
            .await?;
        self.reported.remember(
            &request,
            Reported {
                uid: uid.map(str::to_owned),
                status: status.to_owned(),
                last_transition_time,
            },
        );
        tracing::info!(
            podcount = %request,
            matching,
            desired,
            ready,
            "status updated"
        );
        if flipped {
            let (type_, reason) = if ready {
                (EventType::Normal, "Ready")
            } else {
                (EventType::Warning, "NotReady")
            };
            self.recorder
                .event(podcount, None, type_, reason, "CountPods", message);
        }
        Ok(())
    }

    /// The PodCount is being deleted: clean up, then remove the finalizer.
    async fn finalize(
        &self,
        request: &Request,
        podcount: &PodCount,
    ) -> Result<Action, cached_client::Error> {
        if !contains_finalizer(podcount, FINALIZER) {
            return Ok(Action::done()); // ours is done; another finalizer holds it
        }
        // A PodCount made nothing, so there is nothing to release: a real operator would
        // delete its external resources here, and return an error to retry if that failed.
        let mut without = podcount.clone();
        remove_finalizer(&mut without, FINALIZER);
        match self.client.update(&without).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(Action::done()),
            Err(e) => return Err(e),
        }
        tracing::info!(podcount = %request, "deleted; finalizer removed");
        self.recorder.event(
            podcount,
            None,
            EventType::Normal,
            "Finalized",
            "Finalize",
            "PodCount deleted: nothing to clean up; finalizer removed",
        );
        Ok(Action::done())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_address_forms() {
        let parse = |s: &str| s.parse::<BindAddress>();
        assert_eq!(parse("0"), Ok(BindAddress(None)));
        assert_eq!(
            parse(":8080"),
            Ok(BindAddress(Some(([0, 0, 0, 0], 8080).into())))
        );
        assert_eq!(
            parse("127.0.0.1:8081"),
            Ok(BindAddress(Some(([127, 0, 0, 1], 8081).into())))
        );
        assert_eq!(
            parse("[::1]:9090"),
            Ok(BindAddress(Some("[::1]:9090".parse().unwrap())))
        );
        assert!(parse(":").is_err());
        assert!(parse(":99999").is_err());
        assert!(parse("localhost").is_err());
    }
}
