//! The example programs (`examples/examples/*.rs`), run as child processes against the test
//! control plane, as a user runs them against kind: `podcount`, `sample_controller`,
//! `leader_election`, the YAML they print, and their one-line errors.
//!
//! **Building the examples.** `cargo test -p tests` does not build the `examples` package's
//! examples, so the suite builds them itself, once, before the harness starts (when one of
//! these tests is selected and a control plane is available): outside the tests' timeouts,
//! since a cold build takes minutes. It runs
//! `cargo build --workspace --example podcount --example … --message-format=json` (`$CARGO`,
//! else `cargo` on the `PATH`), and cargo's JSON messages say where each executable is.
//! `--workspace` resolves features as `cargo test --workspace` does, so after that command
//! the build is a no-op. Set `FERROKUBE_EXAMPLES_DIR` to a folder of built examples (e.g.
//! `target/debug/examples`) to skip it.
//!
//! The children get the control plane's kubeconfig with `--kubeconfig` (an existing cluster:
//! `KUBECONFIG`, inherited). There is no kubelet: Pods stay Pending (PodCount counts Pods in
//! any phase) and the test writes the Deployment status a kubelet would cause.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use ferrokube_runtime::envtest::EnvironmentOptions;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tests::{Context, Test, eventually};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a condition on the cluster may take to show up.
const CONVERGE: Duration = Duration::from_secs(45);

/// The examples these tests run.
const EXAMPLES: &[&str] = &[
    "podcount",
    "sample_controller",
    "leader_election",
    "list_pods",
    "informer_events",
    "pod_logs",
    "envtest",
];

/// The tests' names, in the order of [`tests`].
const NAMES: [&str; 6] = [
    "examples::podcount_counts_flips_ready_records_events_finalizes_and_stops_on_sigterm",
    "examples::sample_controller_creates_scales_and_mirrors_its_deployment",
    "examples::leader_election_hands_over_after_the_leader_is_killed",
    "examples::printed_crds_and_cluster_role_pass_a_server_dry_run",
    "examples::bad_kubeconfig_and_unreachable_cluster_give_one_error_line",
    "examples::envtest_example_runs_a_control_plane_without_the_crds",
];

pub fn tests() -> Vec<Test> {
    if will_run_any(&NAMES) {
        println!("e2e: building the examples (cargo build --workspace --example …)");
        let _ = BUILT.set(build_examples().map_err(|e| format!("{e:#}")));
    }
    vec![
        Test::new(NAMES[0], podcount),
        Test::new(NAMES[1], sample_controller),
        Test::new(NAMES[2], leader_election),
        Test::new(NAMES[3], printed_yaml),
        Test::new(NAMES[4], config_errors),
        Test::new(NAMES[5], missing_crds).starts_control_planes(),
    ]
}

/// Whether the harness will run one of the tests `names`: not listing, a control plane
/// available, and one of them selected by the command line's filters.
fn will_run_any(names: &[&str]) -> bool {
    let args = libtest_mimic::Arguments::from_args();
    let options = EnvironmentOptions::default();
    let assets = options.resolved_assets_dir();
    let has_control_plane = options.uses_existing_cluster()
        || (assets.join("etcd").is_file() && assets.join("kube-apiserver").is_file());
    !args.list
        && has_control_plane
        && names.iter().any(|name| {
            let trial = libtest_mimic::Trial::test(*name, || Ok(()));
            !args.is_filtered_out(&trial)
        })
}

// === building and running the examples ===

/// The built examples (or why the build failed), by name.
static BUILT: OnceLock<Result<HashMap<String, PathBuf>, String>> = OnceLock::new();

/// The executable of example `name` (see the module docs).
async fn binary(name: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FERROKUBE_EXAMPLES_DIR") {
        let path = Path::new(&dir).join(name);
        ensure!(
            path.is_file(),
            "FERROKUBE_EXAMPLES_DIR has no {name}: {}",
            path.display()
        );
        return Ok(path);
    }
    let built = match BUILT.get() {
        Some(built) => built,
        // Not built up front (the filters were not understood): build now.
        None => {
            let result = tokio::task::spawn_blocking(build_examples)
                .await
                .context("the build task")?
                .map_err(|e| format!("{e:#}"));
            BUILT.get_or_init(|| result)
        }
    };
    let built = built
        .as_ref()
        .map_err(|e| anyhow::anyhow!("building the examples: {e}"))?;
    built
        .get(name)
        .cloned()
        .with_context(|| format!("cargo built no example named {name} (built: {built:?})"))
}

/// Builds [`EXAMPLES`]; returns each one's executable.
fn build_examples() -> anyhow::Result<HashMap<String, PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let started = std::time::Instant::now();
    let mut command = std::process::Command::new(&cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--workspace", "--message-format=json-render-diagnostics"]);
    for example in EXAMPLES {
        command.args(["--example", example]);
    }
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", Path::new(&cargo).display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        bail!(
            "cargo build of the examples failed ({}):\n{}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let mut binaries = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let is_example = message["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "example"));
        if message["reason"] == "compiler-artifact"
            && is_example
            && let (Some(name), Some(exe)) = (
                message["target"]["name"].as_str(),
                message["executable"].as_str(),
            )
        {
            binaries.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    println!(
        "e2e: {} examples built in {:.1?}",
        binaries.len(),
        started.elapsed()
    );
    Ok(binaries)
}

/// The flags that point an example at the test cluster.
async fn cluster_flags(ctx: &Context) -> Vec<String> {
    match ctx.env.read().await.kubeconfig_path() {
        Some(path) => vec!["--kubeconfig".into(), path.display().to_string()],
        None => Vec::new(), // an existing cluster: KUBECONFIG is inherited
    }
}

/// What a child printed so far.
#[derive(Default)]
struct Output {
    stdout: Vec<String>,
    /// stdout and stderr, interleaved as read, for failure reports.
    all: Vec<String>,
}

/// How long a dropped [`Running`] waits for its example to exit after SIGTERM before the
/// SIGKILL of `kill_on_drop`.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// A running example. Dropped while the example still runs (a failed test), it sends SIGTERM
/// and waits up to [`TERM_GRACE`] before SIGKILL, so that the example cleans up (envtest
/// stops its control plane and removes its data, a leader releases its Lease).
pub(crate) struct Running {
    name: String,
    child: Child,
    output: Arc<Mutex<Output>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub(crate) async fn start(name: &str, args: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(binary(name).await?)
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let output = Arc::new(Mutex::new(Output::default()));
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            let output = Arc::clone(&output);
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut o = output.lock();
                    o.all.push(format!("[stdout] {line}"));
                    o.stdout.push(line);
                }
            }));
        }
        if let Some(stderr) = child.stderr.take() {
            let output = Arc::clone(&output);
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    output.lock().all.push(format!("[stderr] {line}"));
                }
            }));
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            output,
            readers,
        })
    }

    /// The last lines the example printed, for failure reports.
    pub(crate) fn tail(&self) -> String {
        let output = self.output.lock();
        let start = output.all.len().saturating_sub(40);
        format!(
            "last output of {}:\n{}",
            self.name,
            output.all[start..].join("\n")
        )
    }

    fn printed(&self, line: &str) -> bool {
        self.output.lock().stdout.iter().any(|l| l == line)
    }

    /// Waits until the example prints `line` on stdout.
    async fn wait_for_line(&self, line: &str, timeout: Duration) -> anyhow::Result<()> {
        eventually(
            &format!("{} to print {line:?}", self.name),
            timeout,
            || async { self.printed(line).then_some(()) },
        )
        .await
        .with_context(|| self.tail())
    }

    /// Sends `signal` (`TERM`, `KILL`…) with kill(1).
    pub(crate) async fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.child.id().context("the example has exited")?;
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .await
            .context("running kill")?;
        ensure!(status.success(), "kill -s {signal} {pid}: {status}");
        Ok(())
    }

    /// Waits for the example to exit, and for its output to be read to the end.
    pub(crate) async fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => bail!(
                "{} did not exit within {timeout:?}\n{}",
                self.name,
                self.tail()
            ),
        };
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        Ok(status)
    }
}

/// Runs an example to completion with the default logging (`RUST_LOG` unset): its exit
/// status, stdout and stderr.
pub(crate) async fn run_once(
    name: &str,
    args: &[String],
) -> anyhow::Result<(ExitStatus, String, String)> {
    let output = Command::new(binary(name).await?)
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .with_context(|| format!("{name} {args:?} did not exit within 60s"))??;
    Ok((
        output.status,
        String::from_utf8(output.stdout)?,
        String::from_utf8(output.stderr)?,
    ))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

// === cluster helpers ===

fn custom(client: &kube::Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let resource =
        ApiResource::from_gvk(&GroupVersionKind::gvk("examples.ferrokube.dev", "v1", kind));
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// Waits until the example has installed its CRD and the API server serves it.
async fn wait_served(api: &Api<DynamicObject>, example: &Running) -> anyhow::Result<()> {
    eventually("the CRD to be served", CONVERGE, || async {
        api.list(&Default::default()).await.ok().map(|_| ())
    })
    .await
    .with_context(|| example.tail())
}

fn pod(name: &str, labels: Value) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]},
    }))?)
}

/// The Events in `ns` about `kind/name` with `reason`.
async fn events(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    name: &str,
    reason: &str,
) -> anyhow::Result<Vec<Event>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    Ok(events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
                && e.reason.as_deref() == Some(reason)
        })
        .collect())
}

/// A free loopback port (released again: the example binds it soon after).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Drop for Running {
    fn drop(&mut self) {
        // Exited and reaped: nothing to stop.
        let Some(pid) = self.child.id() else { return };
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let termed = std::process::Command::new("kill")
            .args(["-s", "TERM", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if termed {
            // Drop cannot await: poll, with the worker thread's other tasks moved elsewhere
            // meanwhile (the suite's runtime is multi-threaded).
            let mut wait = || {
                let deadline = std::time::Instant::now() + TERM_GRACE;
                while matches!(self.child.try_wait(), Ok(None)) {
                    if std::time::Instant::now() >= deadline {
                        eprintln!(
                            "{} ignored SIGTERM for {TERM_GRACE:?}: killing it",
                            self.name
                        );
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            };
            let multi_thread = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            if multi_thread {
                tokio::task::block_in_place(wait);
            } else {
                wait();
            }
        }
        // Still running: `kill_on_drop` sends SIGKILL when the child is dropped.
    }
}

// === podcount ===

/// `status.matching` and the `Ready` condition's status of a PodCount.
fn podcount_state(podcount: &DynamicObject) -> (Option<i64>, Option<String>) {
    let status = &podcount.data["status"];
    let ready = status["conditions"].as_array().and_then(|conditions| {
        conditions
            .iter()
            .find(|c| c["type"] == "Ready")
            .and_then(|c| c["status"].as_str())
            .map(str::to_owned)
    });
    (status["matching"].as_i64(), ready)
}

async fn wait_podcount(
    api: &Api<DynamicObject>,
    example: &Running,
    matching: i64,
    ready: &str,
) -> anyhow::Result<DynamicObject> {
    eventually(
        &format!("PodCount web to have matching={matching} and Ready={ready}"),
        CONVERGE,
        || async {
            let podcount = api.get("web").await.ok()?;
            (podcount_state(&podcount) == (Some(matching), Some(ready.to_owned())))
                .then_some(podcount)
        },
    )
    .await
    .with_context(|| example.tail())
}

async fn podcount(ctx: Context) -> anyhow::Result<()> {
    let ns = ctx.namespace.clone();
    let port = free_port()?;
    let shutdown_timeout = Duration::from_secs(10);
    let mut args = strings(&["run", "--install-crd", "--leader-elect"]);
    args.extend(cluster_flags(&ctx).await);
    args.extend([
        "--namespace".into(),
        ns.clone(),
        "--metrics-bind-address".into(),
        format!("127.0.0.1:{port}"),
        "--graceful-shutdown-timeout".into(),
        format!("{}s", shutdown_timeout.as_secs()),
        "--identity".into(),
        "podcount-e2e".into(),
    ]);
    let mut example = Running::start("podcount", &args).await?;
    let podcounts = custom(&ctx.client, &ns, "PodCount");
    wait_served(&podcounts, &example).await?;

    let podcount: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "examples.ferrokube.dev/v1",
        "kind": "PodCount",
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "count": 2},
    }))?;
    podcounts.create(&PostParams::default(), &podcount).await?;

    // No pod yet: not Ready, finalizer added, status for this generation.
    let seen = wait_podcount(&podcounts, &example, 0, "False").await?;
    ensure!(
        seen.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "examples.ferrokube.dev/podcount-cleanup"),
        "no finalizer on {:?}",
        seen.metadata
    );
    ensure!(
        seen.data["status"]["desired"] == 2
            && seen.data["status"]["observedGeneration"].as_i64() == seen.metadata.generation,
        "status {} for generation {:?}",
        seen.data["status"],
        seen.metadata.generation
    );

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PostParams::default();
    pods.create(&pp, &pod("web-1", json!({"app": "web"}))?)
        .await?;
    pods.create(&pp, &pod("db-1", json!({"app": "db"}))?)
        .await?;
    wait_podcount(&podcounts, &example, 1, "False").await?;
    pods.create(&pp, &pod("web-2", json!({"app": "web", "tier": "front"}))?)
        .await?;
    wait_podcount(&podcounts, &example, 2, "True").await?;
    eventually("a Ready Event", CONVERGE, || async {
        let found = events(&ctx.client, &ns, "PodCount", "web", "Ready").await;
        found.ok().filter(|e| !e.is_empty()).map(|_| ())
    })
    .await
    .with_context(|| example.tail())?;

    // Creation flipped Ready to False once: one NotReady, not a duplicate from a reconcile
    // that read the cache before the status patch showed up. (A repeat would only bump a
    // series in the recorder's memory until its next flush, so the count is checked again
    // once the example has stopped and flushed.)
    let before = not_ready_occurrences(&ctx.client, &ns).await?;
    ensure!(
        before == 1,
        "{before} NotReady occurrences after creation, expected 1\n{}",
        example.tail()
    );

    // A deleted pod, then a relabelled one.
    pods.delete("web-1", &DeleteParams::default()).await?;
    wait_podcount(&podcounts, &example, 1, "False").await?;
    eventually("a NotReady Event after Ready", CONVERGE, || async {
        let now = not_ready_occurrences(&ctx.client, &ns).await.ok()?;
        (now > before).then_some(())
    })
    .await
    .with_context(|| example.tail())?;
    pods.patch(
        "db-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await?;
    wait_podcount(&podcounts, &example, 2, "True").await?;

    // Metrics and probes are served.
    let address = ([127, 0, 0, 1], port).into();
    let (code, _) = crate::runtime::http_get(address, "/healthz").await?;
    ensure!(code == 200, "/healthz answered {code}");
    let (code, body) = crate::runtime::http_get(address, "/readyz").await?;
    ensure!(code == 200, "/readyz answered {code}: {body}");
    let (code, body) = crate::runtime::http_get(address, "/metrics").await?;
    ensure!(
        code == 200 && body.contains(r#"controller_runtime_reconcile_total{controller="podcount""#),
        "/metrics answered {code} without the podcount controller's reconciles:\n{body}"
    );

    // Deleting the PodCount: the controller removes its finalizer and the object goes.
    podcounts.delete("web", &DeleteParams::default()).await?;
    eventually("PodCount web to be gone", CONVERGE, || async {
        matches!(podcounts.get_opt("web").await, Ok(None)).then_some(())
    })
    .await
    .with_context(|| example.tail())?;
    eventually("a Finalized Event", CONVERGE, || async {
        let found = events(&ctx.client, &ns, "PodCount", "web", "Finalized").await;
        found.ok().filter(|e| !e.is_empty()).map(|_| ())
    })
    .await
    .with_context(|| example.tail())?;

    // SIGTERM: a clean exit within the shutdown timeout, the Lease released.
    let lease: Api<Lease> = Api::namespaced(ctx.client.clone(), &ns);
    let holder = lease
        .get("podcount.examples.ferrokube.dev")
        .await?
        .spec
        .and_then(|s| s.holder_identity);
    ensure!(
        holder.as_deref() == Some("podcount-e2e"),
        "the Lease is held by {holder:?}"
    );
    let sent = Instant::now();
    example.signal("TERM").await?;
    let status = example
        .wait(shutdown_timeout + Duration::from_secs(20))
        .await?;
    let took = sent.elapsed();
    ensure!(
        status.success(),
        "podcount exited with {status} after SIGTERM\n{}",
        example.tail()
    );
    ensure!(
        took <= shutdown_timeout + Duration::from_secs(2),
        "podcount took {took:?} to stop (shutdown timeout {shutdown_timeout:?})\n{}",
        example.tail()
    );
    let holder = lease
        .get("podcount.examples.ferrokube.dev")
        .await?
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    ensure!(holder.is_empty(), "the Lease is still held by {holder:?}");

    // Its recorder flushed on the way out: Ready flipped to False twice (at creation and
    // when web-1 went), so exactly two NotReady occurrences.
    let occurrences = not_ready_occurrences(&ctx.client, &ns).await?;
    ensure!(
        occurrences == 2,
        "{occurrences} NotReady occurrences, expected 2 (creation, web-1 deleted)\n{}",
        example.tail()
    );
    Ok(())
}

/// How many times PodCount web's NotReady Event occurred: its Events, each counting its
/// series.
async fn not_ready_occurrences(client: &kube::Client, ns: &str) -> anyhow::Result<i32> {
    let found = events(client, ns, "PodCount", "web", "NotReady").await?;
    Ok(found
        .iter()
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum())
}

// === sample_controller ===

fn replicas(deployment: &Deployment) -> Option<i32> {
    deployment.spec.as_ref().and_then(|s| s.replicas)
}

async fn sample_controller(ctx: Context) -> anyhow::Result<()> {
    let ns = ctx.namespace.clone();
    let mut args = strings(&["run", "--install-crd", "--workers", "2"]);
    args.extend(cluster_flags(&ctx).await);
    args.extend(strings(&[
        "--namespace",
        &ns,
        "--image",
        "registry.invalid/nginx:e2e",
        "--image-pull-policy",
        "Never",
    ]));
    let mut example = Running::start("sample_controller", &args).await?;
    let foos = custom(&ctx.client, &ns, "Foo");
    wait_served(&foos, &example).await?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);

    let new_foo = |name: &str, deployment: &str| -> anyhow::Result<DynamicObject> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "examples.ferrokube.dev/v1",
            "kind": "Foo",
            "metadata": {"name": name},
            "spec": {"deploymentName": deployment, "replicas": 1},
        }))?)
    };
    let created = foos
        .create(
            &PostParams::default(),
            &new_foo("example-foo", "example-foo")?,
        )
        .await?;

    // The Deployment, controlled by the Foo.
    let deployment = eventually("the Deployment to be created", CONVERGE, || async {
        deployments.get_opt("example-foo").await.ok().flatten()
    })
    .await
    .with_context(|| example.tail())?;
    let controller = deployment
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .context("the Deployment has no controller")?;
    ensure!(
        controller.kind == "Foo" && Some(&controller.uid) == created.metadata.uid.as_ref(),
        "the Deployment's controller is {controller:?}"
    );
    ensure!(replicas(&deployment) == Some(1), "{:?}", deployment.spec);
    let container = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .context("the Deployment has no container")?;
    ensure!(
        container.image.as_deref() == Some("registry.invalid/nginx:e2e")
            && container.image_pull_policy.as_deref() == Some("Never"),
        "--image and --image-pull-policy not applied: {container:?}"
    );

    // Scaling the Foo scales the Deployment.
    foos.patch(
        "example-foo",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await?;
    eventually("the Deployment to have 3 replicas", CONVERGE, || async {
        let d = deployments.get("example-foo").await.ok()?;
        (replicas(&d) == Some(3)).then_some(())
    })
    .await
    .with_context(|| example.tail())?;

    // What a kubelet would cause: 2 available replicas, mirrored into the Foo.
    deployments
        .patch_status(
            "example-foo",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2
            }})),
        )
        .await?;
    eventually("the Foo's availableReplicas to be 2", CONVERGE, || async {
        let mirrored = foos.get("example-foo").await.ok()?;
        (mirrored.data["status"]["availableReplicas"] == 2).then_some(())
    })
    .await
    .with_context(|| example.tail())?;
    eventually("a Synced Event", CONVERGE, || async {
        let found = events(&ctx.client, &ns, "Foo", "example-foo", "Synced").await;
        found.ok().filter(|e| !e.is_empty()).map(|_| ())
    })
    .await
    .with_context(|| example.tail())?;

    // A Deployment the Foo does not own: reported, left alone.
    let mut taken = deployment.clone();
    taken.metadata = kube::api::ObjectMeta {
        name: Some("taken".into()),
        ..Default::default()
    };
    if let Some(spec) = taken.spec.as_mut() {
        spec.replicas = Some(5);
    }
    deployments.create(&PostParams::default(), &taken).await?;
    foos.create(&PostParams::default(), &new_foo("squatter", "taken")?)
        .await?;
    let reported = eventually("an ErrResourceExists Event", CONVERGE, || async {
        let found = events(&ctx.client, &ns, "Foo", "squatter", "ErrResourceExists").await;
        found.ok().and_then(|e| e.into_iter().next())
    })
    .await
    .with_context(|| example.tail())?;
    ensure!(
        reported.type_.as_deref() == Some("Warning")
            && reported.note.as_deref()
                == Some(r#"Resource "taken" already exists and is not managed by Foo"#),
        "{reported:?}"
    );
    let taken = deployments.get("taken").await?;
    ensure!(
        taken.metadata.owner_references.is_none() && replicas(&taken) == Some(5),
        "the Deployment not owned by the Foo was changed: {:?} {:?}",
        taken.metadata.owner_references,
        taken.spec
    );

    example.signal("TERM").await?;
    let status = example.wait(Duration::from_secs(30)).await?;
    ensure!(
        status.success(),
        "sample_controller exited with {status} after SIGTERM\n{}",
        example.tail()
    );
    Ok(())
}

// === leader_election ===

async fn leader_election(ctx: Context) -> anyhow::Result<()> {
    let ns = ctx.namespace.clone();
    let lease_name = "example-e2e";
    let candidate = |identity: &str| {
        let mut args = strings(&[
            "--identity",
            identity,
            "--lease-name",
            lease_name,
            "--lease-duration",
            "4s",
            "--renew-deadline",
            "3s",
            "--retry-period",
            "500ms",
        ]);
        args.extend(["--lease-namespace".into(), ns.clone()]);
        args
    };
    let flags = cluster_flags(&ctx).await;
    let with_flags = |mut args: Vec<String>| {
        args.extend(flags.iter().cloned());
        args
    };
    let lease_text = format!("(lease {ns}/{lease_name})");

    let mut a = Running::start("leader_election", &with_flags(candidate("a"))).await?;
    a.wait_for_line(&format!("a: started leading {lease_text}"), CONVERGE)
        .await?;
    let mut b = Running::start("leader_election", &with_flags(candidate("b"))).await?;
    b.wait_for_line("b: the leader is a", CONVERGE).await?;
    ensure!(
        !b.printed(&format!("b: started leading {lease_text}")),
        "two leaders\n{}",
        b.tail()
    );

    // Kill the leader: no release, b waits for the Lease to expire and takes over.
    a.signal("KILL").await?;
    let status = a.wait(Duration::from_secs(10)).await?;
    ensure!(!status.success(), "a exited with {status} after SIGKILL");
    b.wait_for_line(&format!("b: started leading {lease_text}"), CONVERGE)
        .await?;
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), &ns);
    let spec = leases.get(lease_name).await?.spec.unwrap_or_default();
    ensure!(
        spec.holder_identity.as_deref() == Some("b") && spec.lease_transitions == Some(1),
        "the Lease after the handover: {spec:?}"
    );

    // SIGTERM: b stops leading, releases the Lease and exits cleanly.
    b.signal("TERM").await?;
    let status = b.wait(Duration::from_secs(20)).await?;
    ensure!(status.success(), "b exited with {status}\n{}", b.tail());
    ensure!(
        b.printed("b: stopped leading: shutting down"),
        "b did not say it stopped leading\n{}",
        b.tail()
    );
    let holder = leases
        .get(lease_name)
        .await?
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    ensure!(holder.is_empty(), "the Lease is still held by {holder:?}");
    Ok(())
}

// === printed YAML ===

/// `kubectl apply --server-side --dry-run=server -f -`: a server-side apply with
/// `dryRun=All`, which validates the object whether or not it exists.
async fn dry_run_apply<K>(client: &kube::Client, yaml: &str) -> anyhow::Result<K>
where
    K: kube::Resource<DynamicType = ()>
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Clone
        + std::fmt::Debug,
{
    let object: K = serde_saphyr::from_str(yaml).context("parsing the printed YAML")?;
    let name = object.meta().name.clone().context("no metadata.name")?;
    let api: Api<K> = Api::all(client.clone());
    let params = PatchParams::apply("kubectl").force().dry_run();
    api.patch(&name, &params, &Patch::Apply(&object))
        .await
        .with_context(|| format!("dry-run apply of {} {name}", K::kind(&())))
}

async fn printed_yaml(ctx: Context) -> anyhow::Result<()> {
    for (example, kind, columns) in [
        (
            "podcount",
            "PodCount",
            ["Desired", "Matching", "Ready", "Age"],
        ),
        (
            "sample_controller",
            "Foo",
            ["Deployment", "Replicas", "Available", ""],
        ),
    ] {
        let (status, yaml, stderr) = run_once(example, &strings(&["crd"])).await?;
        ensure!(status.success(), "{example} crd: {status}: {stderr}");
        let crd: CustomResourceDefinition = dry_run_apply(&ctx.client, &yaml).await?;
        ensure!(
            crd.spec.group == "examples.ferrokube.dev" && crd.spec.names.kind == kind,
            "{:?}",
            crd.spec
        );
        let version = crd.spec.versions.first().context("no version")?;
        ensure!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some()),
            "{example}: no status subresource"
        );
        let printed: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        let expected: Vec<&str> = columns.into_iter().filter(|c| !c.is_empty()).collect();
        ensure!(
            printed == expected,
            "{example}: printer columns {printed:?}"
        );
    }
    for flags in [&["rbac"][..], &["rbac", "--install-crd"]] {
        let (status, yaml, stderr) = run_once("podcount", &strings(flags)).await?;
        ensure!(status.success(), "podcount {flags:?}: {status}: {stderr}");
        let role: ClusterRole = dry_run_apply(&ctx.client, &yaml).await?;
        let rules = role.rules.unwrap_or_default();
        let grants = |group: &str, resource: &str, verb: &str| {
            rules.iter().any(|r| {
                r.api_groups.iter().flatten().any(|g| g == group)
                    && r.resources.iter().flatten().any(|x| x == resource)
                    && r.verbs.iter().any(|v| v == verb)
            })
        };
        for (group, resource, verb) in [
            ("examples.ferrokube.dev", "podcounts", "watch"),
            ("examples.ferrokube.dev", "podcounts/status", "patch"),
            ("", "pods", "list"),
            ("events.k8s.io", "events", "create"),
            ("coordination.k8s.io", "leases", "update"),
        ] {
            ensure!(
                grants(group, resource, verb),
                "podcount {flags:?} does not grant {verb} {resource}.{group}"
            );
        }
        let installs = grants(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "create",
        );
        ensure!(
            installs == flags.contains(&"--install-crd"),
            "podcount {flags:?}: CRD creation granted: {installs}"
        );
    }
    Ok(())
}

// === errors ===

/// Checks an example's failure: exit code 1 and exactly one line on stderr, `error: …`,
/// holding every `needles`.
fn one_error_line(
    what: &str,
    (status, _, stderr): &(ExitStatus, String, String),
    needles: &[&str],
) -> anyhow::Result<()> {
    ensure!(
        status.code() == Some(1),
        "{what}: exit status {status}, stderr:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    ensure!(
        lines.len() == 1 && lines[0].starts_with("error: "),
        "{what}: stderr is not one error line:\n{stderr}"
    );
    for needle in needles {
        ensure!(
            lines[0].contains(needle),
            "{what}: {needle:?} is not in {:?}",
            lines[0]
        );
    }
    for forbidden in ["panicked", "RUST_BACKTRACE", "{ "] {
        ensure!(
            !lines[0].contains(forbidden),
            "{what}: {forbidden:?} in {:?}",
            lines[0]
        );
    }
    Ok(())
}

async fn config_errors(ctx: Context) -> anyhow::Result<()> {
    let dir = tempfile_dir(&ctx.namespace)?;
    let bad = dir.join("bad-kubeconfig");
    std::fs::write(&bad, "apiVersion: v1\nclusters: [\n")?;
    // Nothing listens on the port of a listener just closed.
    let closed = free_port()?;
    let unreachable = dir.join("unreachable-kubeconfig");
    std::fs::write(
        &unreachable,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{closed}'}}}}]\n\
             users: [{{name: u, user: {{token: t}}}}]\n\
             contexts: [{{name: c, context: {{cluster: c, user: u}}}}]\n"
        ),
    )?;
    // The test control plane's kubeconfig (JSON) with a token the API server rejects (401);
    // an existing cluster's credentials are left alone.
    let bad_token = match ctx.env.read().await.kubeconfig_path() {
        Some(kubeconfig) => {
            let mut config: Value = serde_json::from_str(&std::fs::read_to_string(kubeconfig)?)?;
            config["users"][0]["user"] = json!({"token": "not-a-valid-token"});
            let bad_token = dir.join("bad-token-kubeconfig");
            std::fs::write(&bad_token, config.to_string())?;
            Some(bad_token)
        }
        None => None,
    };
    let path = |p: &Path| p.display().to_string();
    for example in ["podcount", "sample_controller"] {
        // A reachable server that refuses the credentials is not "cannot reach".
        if let Some(bad_token) = &bad_token {
            let args = strings(&["run", "--kubeconfig", &path(bad_token)]);
            one_error_line(
                &format!("{example} with credentials the server rejects"),
                &run_once(example, &args).await?,
                &["refused GET /version (HTTP 401)"],
            )?;
        }
        let args = strings(&["run", "--kubeconfig", &path(&bad)]);
        one_error_line(
            &format!("{example} with a bad kubeconfig"),
            &run_once(example, &args).await?,
            &["kubeconfig", &path(&bad)],
        )?;
        let args = strings(&["run", "--kubeconfig", &path(&unreachable)]);
        one_error_line(
            &format!("{example} against a closed port"),
            &run_once(example, &args).await?,
            &["cannot reach the API server", &closed.to_string()],
        )?;
        let args = strings(&["run", "--kubeconfig", &path(&dir.join("missing"))]);
        one_error_line(
            &format!("{example} with a missing kubeconfig"),
            &run_once(example, &args).await?,
            &["kubeconfig", "No such file"],
        )?;
    }
    for (example, first) in [
        ("leader_election", None),
        ("list_pods", None),
        ("informer_events", None),
        ("pod_logs", Some("some-pod")),
    ] {
        let mut args = strings(&["--kubeconfig", &path(&unreachable)]);
        args.extend(first.map(str::to_owned));
        one_error_line(
            &format!("{example} against a closed port"),
            &run_once(example, &args).await?,
            &["cannot reach the API server"],
        )?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A scratch folder for one test.
fn tempfile_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ferrokube-e2e-{name}"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn missing_crds(_ctx: Context) -> anyhow::Result<()> {
    // A SIGTERM while the control plane is starting stops the example cleanly too (it is
    // handled from before the start, which is dropped: its processes killed, data removed).
    let mut early = Running::start("envtest", &[]).await?;
    eventually("envtest to start its control plane", CONVERGE, || async {
        let output = early.output.lock();
        output
            .stdout
            .iter()
            .any(|l| l.starts_with("starting a control plane from"))
            .then_some(())
    })
    .await
    .with_context(|| early.tail())?;
    early.signal("TERM").await?;
    let status = early.wait(Duration::from_secs(30)).await?;
    ensure!(
        status.success(),
        "envtest exited with {status} after a SIGTERM during startup\n{}",
        early.tail()
    );
    let left = early.output.lock().stdout.iter().find_map(|l| {
        l.strip_prefix("kubeconfig: ")
            .filter(|k| Path::new(k).exists())
            .map(str::to_owned)
    });
    ensure!(left.is_none(), "envtest left {left:?} behind");

    // The envtest example's control plane: the shared one gets the CRDs from the other tests.
    let mut env = Running::start("envtest", &[]).await?;
    let kubeconfig = eventually("envtest to print its kubeconfig", CONVERGE, || async {
        let output = env.output.lock();
        output
            .stdout
            .iter()
            .find_map(|l| l.strip_prefix("kubeconfig: "))
            .map(str::to_owned)
    })
    .await
    .with_context(|| env.tail())?;
    for (example, crd) in [
        ("podcount", "podcounts.examples.ferrokube.dev"),
        ("sample_controller", "foos.examples.ferrokube.dev"),
    ] {
        let args = strings(&["run", "--kubeconfig", &kubeconfig]);
        one_error_line(
            &format!("{example} without its CRD"),
            &run_once(example, &args).await?,
            &[crd, "is not installed", "--install-crd"],
        )?;
    }
    let (status, stdout, stderr) = run_once(
        "list_pods",
        &strings(&["--once", "--kubeconfig", &kubeconfig]),
    )
    .await?;
    ensure!(
        status.success() && stdout == "There are 0 pods in the cluster\n",
        "list_pods: {status}: {stdout:?} {stderr}"
    );
    env.signal("TERM").await?;
    let status = env.wait(Duration::from_secs(30)).await?;
    ensure!(
        status.success(),
        "envtest exited with {status}\n{}",
        env.tail()
    );
    ensure!(
        !Path::new(&kubeconfig).exists(),
        "envtest left {kubeconfig} behind"
    );
    Ok(())
}
