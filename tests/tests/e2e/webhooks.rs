//! Admission and conversion webhooks called by the real kube-apiserver: envtest installs the
//! configurations (pointing at `https://127.0.0.1:<port>`, its own CA), a webhook server
//! serves them.
//!
//! Webhook configurations are cluster-wide: each test's select its own namespace
//! (`namespaceSelector` on `kubernetes.io/metadata.name`), so the tests running beside it are
//! not affected; the conversion test has a CRD group of its own. The podcount example's test
//! starts a control plane of its own (its CRD's conversion is cluster-wide).
//!
//! With `USE_EXISTING_CLUSTER=true` the cluster's API server must reach `127.0.0.1` of this
//! host: a kind cluster's cannot (it runs in a container), so there these tests fail with
//! `failed calling webhook`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use ferrokube_runtime::envtest::{WebhookInstallOptions, WebhookInstallation};
use ferrokube_runtime::manager::ManagerOptions;
use ferrokube_runtime::metrics::Metrics;
use ferrokube_runtime::webhook::admission::{
    Defaulter, Denied, ValidatingWebhook, Validator, Warnings, WebhookBuilder,
};
use ferrokube_runtime::webhook::conversion::{BoxError, ConversionWebhook, Convertible, Hub};
use ferrokube_runtime::webhook::server::{Options, WebhookServer};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use kube::api::{Api, DeleteParams, PostParams};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tests::{Context, Test, eventually};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_util::sync::CancellationToken;

pub fn tests() -> Vec<Test> {
    vec![
        Test::new(
            "webhooks::create_defaulted_invalid_refused_warning_returned",
            create_defaulted_invalid_refused,
        ),
        Test::new(
            "webhooks::update_sees_old_object_delete_is_validated",
            update_and_delete,
        ),
        Test::new(
            "webhooks::v1_read_as_v2_and_back_through_conversion",
            conversion_round_trip,
        ),
        Test::new(
            "webhooks::server_stopped_fail_refuses_ignore_admits",
            failure_policy,
        ),
        Test::new(
            "webhooks::rotated_certificate_served_without_restart",
            certificate_rotation,
        ),
        Test::new(
            "webhooks::podcount_example_defaults_validates_and_serves_v2",
            podcount_example,
        )
        .starts_control_planes(),
    ]
}

/// How long the API server may take to notice a new webhook configuration.
const EFFECTIVE: Duration = Duration::from_secs(20);

// === the admission test type ===

/// The group of the admission tests' CRD (installed once, shared; the webhooks are scoped by
/// namespace).
const WIDGET_GROUP: &str = "webhooks.e2e.ferrokube.dev";

/// A widget: `count` is defaulted to 1 and may not be negative nor decrease; `note: keep`
/// protects it from deletion, `note: warn` gets a warning.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "webhooks.e2e.ferrokube.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    schema = "disabled"
)]
pub struct WidgetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The `(old, new)` counts of each update the validator saw.
type SeenUpdates = Arc<Mutex<Vec<(Option<i32>, Option<i32>)>>>;

/// Defaults and validates Widgets; remembers the old objects it saw.
#[derive(Clone, Default)]
struct WidgetHooks {
    seen_old: SeenUpdates,
}

impl Defaulter<Widget> for WidgetHooks {
    async fn apply_defaults(&self, widget: &mut Widget) -> Result<(), Denied> {
        widget.spec.count.get_or_insert(1);
        Ok(())
    }
}

impl Validator<Widget> for WidgetHooks {
    async fn validate_create(&self, widget: &Widget) -> Result<Warnings, Denied> {
        check_count(widget)?;
        Ok(match widget.spec.note.as_deref() {
            Some("warn") => vec!["widgets with a warn note are deprecated".to_owned()],
            _ => Warnings::new(),
        })
    }

    async fn validate_update(&self, old: &Widget, new: &Widget) -> Result<Warnings, Denied> {
        self.seen_old.lock().push((old.spec.count, new.spec.count));
        check_count(new)?;
        match (old.spec.count, new.spec.count) {
            (Some(before), Some(after)) if after < before => Err(Denied::invalid(format!(
                "spec.count may not decrease (from {before} to {after})"
            ))),
            _ => Ok(Warnings::new()),
        }
    }

    async fn validate_delete(&self, widget: &Widget) -> Result<Warnings, Denied> {
        if widget.spec.note.as_deref() == Some("keep") {
            return Err(Denied::new(format!(
                "widget {} is kept (spec.note: keep)",
                widget.metadata.name.as_deref().unwrap_or_default()
            )));
        }
        Ok(Warnings::new())
    }
}

fn check_count(widget: &Widget) -> Result<(), Denied> {
    match widget.spec.count {
        Some(count) if count < 0 => Err(Denied::invalid(format!(
            "spec.count must not be negative, got {count}"
        ))),
        _ => Ok(()),
    }
}

fn widget(name: &str, count: Option<i32>, note: Option<&str>) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            count,
            note: note.map(str::to_owned),
        },
    )
}

/// Installs the Widget CRD if needed and waits until it is established.
async fn install_widget_crd(client: &kube::Client) -> anyhow::Result<()> {
    let crd = crd_json(
        WIDGET_GROUP,
        "Widget",
        "widgets",
        &[("v1", true)],
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    )?;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => return Err(e).context("creating the Widget CRD"),
    }
    let widgets = Api::<Widget>::all(client.clone());
    eventually("the Widget CRD to be served", EFFECTIVE, || async {
        widgets.list(&Default::default()).await.ok().map(|_| ())
    })
    .await
}

/// A CRD of `kind` in `group`, with `versions` (name, storage), each with `spec_schema`.
fn crd_json(
    group: &str,
    kind: &str,
    plural: &str,
    versions: &[(&str, bool)],
    spec_schema: Value,
) -> anyhow::Result<CustomResourceDefinition> {
    let versions: Vec<Value> = versions
        .iter()
        .map(|(name, storage)| {
            json!({
                "name": name, "served": true, "storage": storage,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": spec_schema},
                }},
            })
        })
        .collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural},
            "versions": versions,
        },
    }))?)
}

// === webhook configurations ===

/// One webhook of a configuration: served at `path`, for `resource` (`group`, `version`,
/// `plural`) and `operations`, in namespace `ns` only, with `failure_policy`.
struct Hook<'a> {
    name: &'a str,
    path: &'a str,
    rule: (&'a str, &'a str, &'a str),
    operations: &'a [&'a str],
    ns: &'a str,
    failure_policy: &'a str,
    object_selector: Option<Value>,
}

impl Hook<'_> {
    fn to_json(&self) -> Value {
        let (group, version, plural) = self.rule;
        let mut hook = json!({
            "name": self.name,
            "clientConfig": {"url": self.path},
            "rules": [{
                "apiGroups": [group], "apiVersions": [version],
                "operations": self.operations, "resources": [plural],
            }],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.ns}},
            "failurePolicy": self.failure_policy,
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        });
        if let Some(selector) = &self.object_selector {
            hook["objectSelector"] = selector.clone();
        }
        hook
    }
}

fn mutating(name: &str, hooks: &[Hook<'_>]) -> anyhow::Result<MutatingWebhookConfiguration> {
    let hooks: Vec<Value> = hooks.iter().map(Hook::to_json).collect();
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name}, "webhooks": hooks}),
    )?)
}

fn validating(name: &str, hooks: &[Hook<'_>]) -> anyhow::Result<ValidatingWebhookConfiguration> {
    let hooks: Vec<Value> = hooks.iter().map(Hook::to_json).collect();
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name}, "webhooks": hooks}),
    )?)
}

/// The Widget defaulter and validator, for namespace `ns`, as envtest installs them.
fn widget_webhooks(ns: &str, paths: (&str, &str)) -> anyhow::Result<WebhookInstallOptions> {
    let rule = (WIDGET_GROUP, "v1", "widgets");
    let mutate = Hook {
        name: "mwidget.webhooks.e2e.ferrokube.dev",
        path: paths.0,
        rule,
        operations: &["CREATE", "UPDATE"],
        ns,
        failure_policy: "Fail",
        object_selector: None,
    };
    let validate = Hook {
        name: "vwidget.webhooks.e2e.ferrokube.dev",
        path: paths.1,
        rule,
        operations: &["CREATE", "UPDATE", "DELETE"],
        ns,
        failure_policy: "Fail",
        object_selector: None,
    };
    Ok(WebhookInstallOptions::default()
        .mutating(mutating(&format!("{ns}-mutate"), &[mutate])?)
        .validating(validating(&format!("{ns}-validate"), &[validate])?))
}

// === a running webhook server ===

/// A webhook server run by the test (so that it can stop it), on the installation's port with
/// its certificates.
struct Running {
    server: WebhookServer,
    stop: CancellationToken,
    task: JoinHandle<Result<(), ferrokube_runtime::webhook::server::Error>>,
}

/// The webhook server options for an installation: its address and certificate folder.
fn server_options(installation: &WebhookInstallation, cert_poll_interval: Duration) -> Options {
    Options::default()
        .host(installation.host())
        .port(installation.port())
        .cert_dir(installation.cert_dir())
        .cert_poll_interval(cert_poll_interval)
        .shutdown_timeout(Duration::from_secs(2))
}

impl Running {
    async fn start(
        installation: &WebhookInstallation,
        cert_poll_interval: Duration,
        register: impl FnOnce(&WebhookServer) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let options = server_options(installation, cert_poll_interval);
        let server = WebhookServer::new(options, Metrics::new());
        register(&server)?;
        let bound = server.bind().await?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(bound.serve(stop.clone()));
        Ok(Self { server, stop, task })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await??;
        ensure!(!self.server.is_listening(), "still listening after stop");
        Ok(())
    }
}

/// The message of an API error (`kube::Error::Api`), or the error.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

// === the tests ===

async fn create_defaulted_invalid_refused(ctx: Context) -> anyhow::Result<()> {
    let ns = ctx.namespace.clone();
    install_widget_crd(&ctx.client).await?;
    let hooks = <WidgetHooks as Default>::default();
    let paths = (
        ferrokube_runtime::webhook::admission::mutate_path::<Widget>(&()),
        ferrokube_runtime::webhook::admission::validate_path::<Widget>(&()),
    );
    ensure!(
        paths.0 == "/mutate-webhooks-e2e-ferrokube-dev-v1-widget",
        "{}",
        paths.0
    );
    let installation = widget_webhooks(&ns, (&paths.0, &paths.1))?
        .install(&ctx.client)
        .await?;
    // Served by a manager, as an operator does.
    let manager = crate::runtime::manager(
        &ctx,
        ManagerOptions::default()
            .webhook_server(server_options(&installation, Duration::from_secs(10))),
    );
    let registered = WebhookBuilder::<Widget>::new()
        .with_defaulter(hooks.clone())
        .with_validator(hooks.clone())
        .complete(manager.webhook_server())?;
    ensure!(registered.mutate.as_deref() == Some(paths.0.as_str()));
    ensure!(registered.validate.as_deref() == Some(paths.1.as_str()));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (manager, shutdown) = (manager.clone(), shutdown.clone());
        async move { manager.start(shutdown).await }
    });
    eventually(
        "the manager's webhook server to listen",
        EFFECTIVE,
        || async {
            (manager.webhook_server_address() == Some(installation.address())).then_some(())
        },
    )
    .await?;
    let widgets = Api::<Widget>::namespaced(ctx.client.clone(), &ns);

    // A create without a count is defaulted (dry runs until the API server calls the webhook).
    eventually("the defaulting webhook to be called", EFFECTIVE, || async {
        let dry = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let made = widgets.create(&dry, &widget("probe", None, None)).await;
        made.ok().filter(|w| w.spec.count == Some(1))
    })
    .await?;
    let created = widgets
        .create(&PostParams::default(), &widget("plain", None, None))
        .await?;
    ensure!(
        created.spec.count == Some(1),
        "not defaulted: {:?}",
        created.spec
    );
    let explicit = widgets
        .create(&PostParams::default(), &widget("three", Some(3), None))
        .await?;
    ensure!(explicit.spec.count == Some(3), "{:?}", explicit.spec);

    // A negative count is refused with the validator's reason and code.
    let err = widgets
        .create(&PostParams::default(), &widget("negative", Some(-2), None))
        .await
        .err()
        .context("a negative count was admitted")?;
    let message = api_message(&err);
    ensure!(
        message.contains("spec.count must not be negative, got -2") && message.contains("(422)"),
        "{message}"
    );
    ensure!(
        widgets.get_opt("negative").await?.is_none(),
        "the refused widget exists"
    );

    // The validator's warning reaches the client as a `Warning` header.
    let body = serde_json::to_vec(&widget("warned", Some(1), Some("warn")))?;
    let request = http::Request::post(format!("/apis/{WIDGET_GROUP}/v1/namespaces/{ns}/widgets"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)?;
    let response = ctx
        .client
        .send(request.map(kube::client::Body::from))
        .await?;
    ensure!(
        response.status() == http::StatusCode::CREATED,
        "{}",
        response.status()
    );
    let warnings: Vec<String> = response
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    ensure!(
        warnings
            .iter()
            .any(|w| w.starts_with("299 ") && w.contains("widgets with a warn note are deprecated")),
        "warnings: {warnings:?}"
    );

    shutdown.cancel();
    running.await??;
    ensure!(
        !manager.webhook_server().is_listening(),
        "the webhook server outlived the manager"
    );
    installation.uninstall(&ctx.client).await?;
    Ok(())
}

async fn update_and_delete(ctx: Context) -> anyhow::Result<()> {
    let ns = ctx.namespace.clone();
    install_widget_crd(&ctx.client).await?;
    let hooks = <WidgetHooks as Default>::default();
    let paths = ("/mutate-widget", "/validate-widget");
    let installation = widget_webhooks(&ns, paths)?.install(&ctx.client).await?;
    let server = Running::start(&installation, Duration::from_secs(10), |server| {
        let _ = WebhookBuilder::<Widget>::new()
            .with_defaulter(hooks.clone())
            .with_mutate_path(paths.0)
            .with_validator(hooks.clone())
            .with_validate_path(paths.1)
            .complete(server)?;
        Ok(())
    })
    .await?;
    let widgets = Api::<Widget>::namespaced(ctx.client.clone(), &ns);
    eventually("the validating webhook to be called", EFFECTIVE, || async {
        let dry = PostParams {
            dry_run: true,
            ..Default::default()
        };
        widgets
            .create(&dry, &widget("probe", Some(-1), None))
            .await
            .err()
            .filter(|e| api_message(e).contains("must not be negative"))
    })
    .await?;

    // An update sees the old object: a decrease is refused, an increase admitted.
    let kept = widgets
        .create(
            &PostParams::default(),
            &widget("kept", Some(5), Some("keep")),
        )
        .await?;
    let mut lower = kept.clone();
    lower.spec.count = Some(2);
    let err = widgets
        .replace("kept", &PostParams::default(), &lower)
        .await
        .err()
        .context("a decrease was admitted")?;
    let message = api_message(&err);
    ensure!(
        message.contains("spec.count may not decrease (from 5 to 2)"),
        "{message}"
    );
    let mut higher = kept.clone();
    higher.spec.count = Some(7);
    let updated = widgets
        .replace("kept", &PostParams::default(), &higher)
        .await?;
    ensure!(updated.spec.count == Some(7), "{:?}", updated.spec);
    let seen = hooks.seen_old.lock().clone();
    ensure!(
        seen.contains(&(Some(5), Some(2))) && seen.contains(&(Some(5), Some(7))),
        "the validator saw (old, new) counts {seen:?}"
    );

    // A delete is validated: a kept widget stays, another goes.
    let err = widgets
        .delete("kept", &DeleteParams::default())
        .await
        .err()
        .context("the kept widget was deleted")?;
    let message = api_message(&err);
    ensure!(
        message.contains("widget kept is kept (spec.note: keep)") && message.contains("(403)"),
        "{message}"
    );
    ensure!(widgets.get_opt("kept").await?.is_some(), "kept is gone");
    widgets
        .create(&PostParams::default(), &widget("gone", Some(1), None))
        .await?;
    widgets.delete("gone", &DeleteParams::default()).await?;
    ensure!(
        widgets.get_opt("gone").await?.is_none(),
        "gone is still there"
    );

    server.stop().await?;
    installation.uninstall(&ctx.client).await?;
    Ok(())
}

// === conversion ===

/// The conversion test's CRD group: its own, as the CRD's conversion is cluster-wide.
const CONVERSION_GROUP: &str = "conversion.e2e.ferrokube.dev";

mod v1 {
    use super::*;

    /// v1 (the hub, stored): a flat count.
    #[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
    #[kube(
        group = "conversion.e2e.ferrokube.dev",
        version = "v1",
        kind = "Sprocket",
        namespaced,
        schema = "disabled"
    )]
    pub struct SprocketSpec {
        pub count: i32,
        pub color: String,
    }
}

mod v2 {
    use super::*;

    /// v2: the count moved into `replicas.desired`, `color` renamed `paint`.
    #[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
    #[kube(
        group = "conversion.e2e.ferrokube.dev",
        version = "v2",
        kind = "Sprocket",
        namespaced,
        schema = "disabled"
    )]
    pub struct SprocketSpec {
        pub replicas: Replicas,
        pub paint: String,
    }

    #[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
    pub struct Replicas {
        pub desired: i32,
    }
}

impl Hub for v1::Sprocket {}

impl Convertible for v2::Sprocket {
    type Hub = v1::Sprocket;

    fn convert_to(&self) -> Result<v1::Sprocket, BoxError> {
        let mut hub = v1::Sprocket::new(
            "",
            v1::SprocketSpec {
                count: self.spec.replicas.desired,
                color: self.spec.paint.clone(),
            },
        );
        hub.metadata = self.metadata.clone();
        Ok(hub)
    }

    fn convert_from(hub: &v1::Sprocket) -> Result<Self, BoxError> {
        if hub.spec.color == "invisible" {
            return Err("invisible sprockets have no v2 form".into());
        }
        let mut spoke = v2::Sprocket::new(
            "",
            v2::SprocketSpec {
                replicas: v2::Replicas {
                    desired: hub.spec.count,
                },
                paint: hub.spec.color.clone(),
            },
        );
        spoke.metadata = hub.metadata.clone();
        Ok(spoke)
    }
}

async fn conversion_round_trip(ctx: Context) -> anyhow::Result<()> {
    let ns = ctx.namespace.clone();
    let crd = crd_json(
        CONVERSION_GROUP,
        "Sprocket",
        "sprockets",
        &[("v1", true), ("v2", false)],
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    )?;
    let installation = WebhookInstallOptions::default()
        .conversion_crd(crd)
        .install(&ctx.client)
        .await?;
    let installed = Api::<CustomResourceDefinition>::all(ctx.client.clone())
        .get(&format!("sprockets.{CONVERSION_GROUP}"))
        .await?;
    let conversion = serde_json::to_value(&installed.spec.conversion)?;
    ensure!(
        conversion["strategy"] == "Webhook"
            && conversion["webhook"]["clientConfig"]["url"]
                == installation.url("/convert").as_str()
            && conversion["webhook"]["conversionReviewVersions"] == json!(["v1"]),
        "{conversion}"
    );
    let server = Running::start(&installation, Duration::from_secs(10), |server| {
        ConversionWebhook::new()
            .spoke::<v2::Sprocket>()
            .register(server)?;
        Ok(())
    })
    .await?;

    let sprockets_v1 = Api::<v1::Sprocket>::namespaced(ctx.client.clone(), &ns);
    let sprockets_v2 = Api::<v2::Sprocket>::namespaced(ctx.client.clone(), &ns);
    let mut original = v1::Sprocket::new(
        "s1",
        v1::SprocketSpec {
            count: 3,
            color: "red".to_owned(),
        },
    );
    original.metadata.labels = Some([("app".to_owned(), "web".to_owned())].into());
    let created = sprockets_v1
        .create(&PostParams::default(), &original)
        .await?;

    // Read as v2: converted by the webhook (retried until the API server uses it).
    let as_v2 = eventually("s1 read as v2", EFFECTIVE, || async {
        sprockets_v2.get("s1").await.ok()
    })
    .await?;
    ensure!(
        as_v2.spec
            == v2::SprocketSpec {
                replicas: v2::Replicas { desired: 3 },
                paint: "red".to_owned(),
            },
        "{:?}",
        as_v2.spec
    );
    ensure!(
        as_v2.metadata.labels == created.metadata.labels
            && as_v2.metadata.resource_version == created.metadata.resource_version
            && as_v2.metadata.uid == created.metadata.uid,
        "metadata changed in conversion: {:?}",
        as_v2.metadata
    );
    let listed = sprockets_v2.list(&Default::default()).await?;
    ensure!(listed.items.len() == 1, "{} listed", listed.items.len());

    // Written as v2, stored as v1, read back as v1: the round trip keeps everything.
    let mut changed = as_v2.clone();
    changed.spec.replicas.desired = 4;
    changed.spec.paint = "blue".to_owned();
    let replaced = sprockets_v2
        .replace("s1", &PostParams::default(), &changed)
        .await?;
    ensure!(replaced.spec == changed.spec, "{:?}", replaced.spec);
    let back = sprockets_v1.get("s1").await?;
    ensure!(
        back.spec
            == v1::SprocketSpec {
                count: 4,
                color: "blue".to_owned()
            },
        "{:?}",
        back.spec
    );
    ensure!(back.metadata.labels == original.metadata.labels);

    // A v2 create is stored (as v1) and reads the same both ways.
    let made = sprockets_v2
        .create(
            &PostParams::default(),
            &v2::Sprocket::new(
                "s2",
                v2::SprocketSpec {
                    replicas: v2::Replicas { desired: 9 },
                    paint: "green".to_owned(),
                },
            ),
        )
        .await?;
    let as_v1 = sprockets_v1.get("s2").await?;
    ensure!(
        as_v1.spec.count == 9 && as_v1.spec.color == "green",
        "{:?}",
        as_v1.spec
    );
    ensure!(sprockets_v2.get("s2").await?.spec == made.spec);

    // One object that does not convert fails the whole read, with the webhook's message.
    sprockets_v1
        .create(
            &PostParams::default(),
            &v1::Sprocket::new(
                "s3",
                v1::SprocketSpec {
                    count: 1,
                    color: "invisible".to_owned(),
                },
            ),
        )
        .await?;
    let err = sprockets_v2
        .list(&Default::default())
        .await
        .err()
        .context("a list with an unconvertible object succeeded")?;
    let message = api_message(&err);
    ensure!(
        message.contains("invisible sprockets have no v2 form"),
        "{message}"
    );

    // The API server's v2 cache retries an unconvertible list: the CRD goes with its objects.
    Api::<CustomResourceDefinition>::all(ctx.client.clone())
        .delete(
            &format!("sprockets.{CONVERSION_GROUP}"),
            &DeleteParams::default(),
        )
        .await?;
    server.stop().await?;
    Ok(())
}

// === failure policy ===

/// Refuses ConfigMaps holding `deny`.
struct DenyKey;

impl Validator<ConfigMap> for DenyKey {
    async fn validate_create(&self, cm: &ConfigMap) -> Result<Warnings, Denied> {
        if cm.data.iter().flatten().any(|(k, _)| k == "deny") {
            return Err(Denied::new("configmaps with a deny key are refused"));
        }
        Ok(Warnings::new())
    }
}

fn configmap(name: &str, policy: &str, deny: bool) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_owned());
    cm.metadata.labels = Some([("policy".to_owned(), policy.to_owned())].into());
    if deny {
        cm.data = Some([("deny".to_owned(), "yes".to_owned())].into());
    }
    cm
}

async fn failure_policy(ctx: Context) -> anyhow::Result<()> {
    let ns = ctx.namespace.clone();
    let hook = |name, policy: &'static str| Hook {
        name,
        path: "/validate-configmap",
        rule: ("", "v1", "configmaps"),
        operations: &["CREATE"],
        ns: "",
        failure_policy: policy,
        object_selector: Some(json!({"matchLabels": {"policy": policy}})),
    };
    let (mut fail, mut ignore) = (
        hook("fail.webhooks.e2e.ferrokube.dev", "Fail"),
        hook("ignore.webhooks.e2e.ferrokube.dev", "Ignore"),
    );
    fail.ns = &ns;
    ignore.ns = &ns;
    let installation = WebhookInstallOptions::default()
        .validating(validating(&format!("{ns}-policies"), &[fail, ignore])?)
        .install(&ctx.client)
        .await?;
    let server = Running::start(&installation, Duration::from_secs(10), |server| {
        server.register(
            "/validate-configmap",
            ValidatingWebhook::<ConfigMap, _>::new(DenyKey),
        )?;
        Ok(())
    })
    .await?;
    let configmaps = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns);

    // While the server runs, both webhooks are called.
    for policy in ["Fail", "Ignore"] {
        eventually(
            &format!("the {policy} webhook to be called"),
            EFFECTIVE,
            || async {
                let dry = PostParams {
                    dry_run: true,
                    ..Default::default()
                };
                let refused = configmaps
                    .create(&dry, &configmap("probe", policy, true))
                    .await
                    .err()?;
                api_message(&refused)
                    .contains("configmaps with a deny key are refused")
                    .then_some(())
            },
        )
        .await?;
    }

    server.stop().await?;
    // Nothing listens: Fail refuses the request, Ignore lets it through.
    let err = configmaps
        .create(&PostParams::default(), &configmap("failed", "Fail", false))
        .await
        .err()
        .context("failurePolicy Fail admitted a request with the webhook server stopped")?;
    let message = api_message(&err);
    ensure!(
        message.contains("failed calling webhook")
            && message.contains("fail.webhooks.e2e.ferrokube.dev"),
        "{message}"
    );
    ensure!(configmaps.get_opt("failed").await?.is_none());
    configmaps
        .create(
            &PostParams::default(),
            &configmap("ignored", "Ignore", true),
        )
        .await
        .context("failurePolicy Ignore refused a request with the webhook server stopped")?;

    installation.uninstall(&ctx.client).await?;
    Ok(())
}

// === certificate rotation ===

/// The certificate the server at `addr` presents to a new TLS connection trusting only `ca`.
async fn served_certificate(
    addr: std::net::SocketAddr,
    ca: &str,
) -> anyhow::Result<CertificateDer<'static>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.as_bytes())?)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1")?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let (_, connection) = tls.get_ref();
    match connection.peer_certificates() {
        Some([leaf, ..]) => Ok(leaf.clone().into_owned()),
        _ => bail!("no certificate presented"),
    }
}

fn pem_certificate(pem: &str) -> anyhow::Result<CertificateDer<'static>> {
    Ok(CertificateDer::from_pem_slice(pem.as_bytes())?)
}

async fn certificate_rotation(ctx: Context) -> anyhow::Result<()> {
    let ns = ctx.namespace.clone();
    install_widget_crd(&ctx.client).await?;
    let paths = ("/mutate-widget", "/validate-widget");
    let installation = widget_webhooks(&ns, paths)?.install(&ctx.client).await?;
    let poll = Duration::from_millis(200);
    let hooks = <WidgetHooks as Default>::default();
    let server = Running::start(&installation, poll, |server| {
        let _ = WebhookBuilder::<Widget>::new()
            .with_defaulter(hooks.clone())
            .with_mutate_path(paths.0)
            .with_validator(hooks.clone())
            .with_validate_path(paths.1)
            .complete(server)?;
        Ok(())
    })
    .await?;
    let addr = installation.address();
    let first = pem_certificate(&installation.serving_cert_pem()?)?;
    ensure!(
        served_certificate(addr, installation.ca_pem()).await? == first,
        "the server does not present the installed certificate"
    );
    let widgets = Api::<Widget>::namespaced(ctx.client.clone(), &ns);
    let defaulted = |name: &'static str| {
        let widgets = widgets.clone();
        async move {
            let made = widgets
                .create(&PostParams::default(), &widget(name, None, None))
                .await
                .ok()?;
            (made.spec.count == Some(1)).then_some(())
        }
    };
    eventually("a widget defaulted before the rotation", EFFECTIVE, || {
        defaulted("before")
    })
    .await?;

    installation.rotate_serving_cert()?;
    let second = pem_certificate(&installation.serving_cert_pem()?)?;
    ensure!(second != first, "the rotation wrote the same certificate");
    // New connections get the new certificate once the server has read it (a few polls).
    eventually(
        "the rotated certificate to be served",
        Duration::from_secs(10),
        || async {
            match served_certificate(addr, installation.ca_pem()).await {
                Ok(served) if served == second => Some(()),
                _ => None,
            }
        },
    )
    .await?;
    ensure!(
        server.server.is_listening(),
        "the server restarted or stopped"
    );
    // The API server still calls the webhook (its CA signed the new certificate too).
    let made = widgets
        .create(&PostParams::default(), &widget("after", None, None))
        .await?;
    ensure!(
        made.spec.count == Some(1),
        "not defaulted after the rotation"
    );

    server.stop().await?;
    installation.uninstall(&ctx.client).await?;
    Ok(())
}

// === the podcount example ===

/// The podcount example with `--webhook-port`, on a control plane of its own (its CRD gets a
/// conversion webhook: cluster-wide) where envtest installs what `podcount crd` and
/// `podcount webhooks` print.
async fn podcount_example(_ctx: Context) -> anyhow::Result<()> {
    use crate::examples::{Running as Example, run_once};
    use ferrokube_runtime::envtest::EnvironmentOptions;
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

    let printed = |args: &'static [&'static str]| async move {
        let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        let (status, stdout, stderr) = run_once("podcount", &args).await?;
        ensure!(status.success(), "podcount {args:?}: {status}: {stderr}");
        anyhow::Ok(stdout)
    };
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&printed(&["crd"]).await?)?;
    let manifests = printed(&["webhooks"]).await?;
    let (mutating_yaml, validating_yaml) = manifests
        .split_once("\n---\n")
        .context("podcount webhooks printed one document")?;
    let mutating: MutatingWebhookConfiguration = serde_saphyr::from_str(mutating_yaml)?;
    let validating: ValidatingWebhookConfiguration = serde_saphyr::from_str(validating_yaml)?;

    let env = EnvironmentOptions::default()
        .webhooks(
            WebhookInstallOptions::default()
                .mutating(mutating)
                .validating(validating)
                .conversion_crd(crd),
        )
        .start()
        .await?;
    let installation = env.webhooks().context("no webhooks installed")?;
    let kubeconfig = env.kubeconfig_path().context("no kubeconfig")?;
    let port = env.webhook_port().context("no webhook port")?;
    let cert_dir = env.webhook_cert_dir().context("no certificate folder")?;
    let args: Vec<String> = [
        "run",
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--metrics-bind-address",
        "0",
        "--webhook-host",
        "127.0.0.1",
        "--webhook-port",
        &port.to_string(),
        "--webhook-cert-dir",
        &cert_dir.display().to_string(),
    ]
    .iter()
    .map(|&a| a.to_owned())
    .collect();
    let mut example = Example::start("podcount", &args).await?;

    let client = env.client()?;
    let api = |version: &str| {
        let gvk = GroupVersionKind::gvk("examples.ferrokube.dev", version, "PodCount");
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            "default",
            &ApiResource::from_gvk(&gvk),
        )
    };
    let (v1, v2) = (api("v1"), api("v2"));
    let podcount = |name: &str, count: Option<i32>| -> anyhow::Result<DynamicObject> {
        let mut spec = json!({"selector": {"matchLabels": {"app": name}}});
        if let Some(count) = count {
            spec["count"] = json!(count);
        }
        Ok(serde_json::from_value(json!({
            "apiVersion": "examples.ferrokube.dev/v1", "kind": "PodCount",
            "metadata": {"name": name}, "spec": spec,
        }))?)
    };

    // Refused (failurePolicy Fail) until podcount serves: then defaulted.
    let unset = podcount("web", None)?;
    let created = eventually(
        "podcount to default a PodCount",
        Duration::from_secs(60),
        || async { v1.create(&PostParams::default(), &unset).await.ok() },
    )
    .await
    .with_context(|| example.tail())?;
    ensure!(
        created.data["spec"]["count"] == 1,
        "not defaulted: {}",
        created.data
    );

    let err = v1
        .create(&PostParams::default(), &podcount("negative", Some(-1))?)
        .await
        .err()
        .context("a negative count was admitted")?;
    let message = api_message(&err);
    ensure!(
        message.contains("spec.count must not be negative (got -1)"),
        "{message}"
    );

    // v2 through podcount's conversion webhook: count is minPods; and back.
    let as_v2 = v2.get("web").await.with_context(|| example.tail())?;
    ensure!(
        as_v2.types.as_ref().map(|t| t.api_version.as_str()) == Some("examples.ferrokube.dev/v2")
            && as_v2.data["spec"]["minPods"] == 1
            && as_v2.data["spec"].get("count").is_none(),
        "{}",
        as_v2.data
    );
    // A merge patch (the controller writes the object too: no resourceVersion to conflict on).
    let patch = kube::api::Patch::Merge(json!({"spec": {"minPods": 3}}));
    let patched = v2
        .patch("web", &kube::api::PatchParams::default(), &patch)
        .await?;
    ensure!(patched.data["spec"]["minPods"] == 3, "{}", patched.data);
    let back = v1.get("web").await?;
    ensure!(back.data["spec"]["count"] == 3, "{}", back.data);
    ensure!(
        installation
            .url("/convert")
            .starts_with("https://127.0.0.1:"),
        "{}",
        installation.url("/convert")
    );

    example.signal("TERM").await?;
    let status = example.wait(Duration::from_secs(30)).await?;
    ensure!(
        status.success(),
        "podcount exited with {status}\n{}",
        example.tail()
    );
    Ok(())
}
