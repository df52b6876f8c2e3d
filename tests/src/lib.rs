//! The end-to-end harness: one control plane per test binary, one namespace per test.
//!
//! Test binaries use `harness = false` and call [`run`] with their tests (or [`run_node`] for
//! the node tier, where pods really run). The control plane comes from `KUBEBUILDER_ASSETS`
//! (default `/usr/local/kubebuilder/bin`) or, with `USE_EXISTING_CLUSTER=true`, from
//! `KUBECONFIG`. When neither is available every test is reported as ignored and one line says
//! why: the suite never pretends to have run.

pub mod fault_proxy;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_runtime::envtest::{Environment, EnvironmentOptions, NodeOptions};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use libtest_mimic::{Arguments, Failed, Trial};

/// How long one test may run before it fails.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(180);

/// What a test gets: a client, its own namespace, and the environment.
pub struct Context {
    /// A client for the test cluster, authenticated as an admin.
    pub client: kube::Client,
    /// A namespace created for this test alone.
    pub namespace: String,
    /// The shared environment (for its kubeconfig, or to restart the API server).
    pub env: Arc<tokio::sync::RwLock<Environment>>,
}

/// The future a test returns.
pub type TestFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// One end-to-end test.
pub struct Test {
    name: String,
    body: Box<dyn Fn(Context) -> TestFuture + Send + Sync>,
    needs_own_control_plane: bool,
}

impl Test {
    /// A test that runs `body` with its own namespace on the shared control plane.
    pub fn new<F, Fut>(name: impl Into<String>, body: F) -> Self
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            name: name.into(),
            body: Box::new(move |ctx| Box::pin(body(ctx))),
            needs_own_control_plane: false,
        }
    }

    /// Marks a test that starts control planes of its own (skipped on an existing cluster).
    #[must_use]
    pub fn starts_control_planes(mut self) -> Self {
        self.needs_own_control_plane = true;
        self
    }
}

struct Suite {
    runtime: tokio::runtime::Runtime,
    env: Arc<tokio::sync::RwLock<Environment>>,
    /// With a node, a test's namespace is handed over once its `default` ServiceAccount exists
    /// (pods are admitted only then).
    node: bool,
}

/// Starts the control plane, runs `tests` (honouring libtest's command-line filters), stops
/// the control plane, and returns the exit code.
pub fn run(tests: Vec<Test>) -> ExitCode {
    run_suite("e2e", EnvironmentOptions::default(), tests)
}

/// As [`run`], with `label` (e.g. `chaos`) starting the lines the suite prints about its
/// control plane instead of `e2e`.
pub fn run_as(label: &str, tests: Vec<Test>) -> ExitCode {
    run_suite(label, EnvironmentOptions::default(), tests)
}

/// As [`run`], with the node tier (kube-scheduler, containerd, a kubelet): pods really run.
/// Without root, a kubelet or the host tools, one line (`node: SKIPPED: …`) says why and every
/// test is reported as ignored; likewise with `USE_EXISTING_CLUSTER=true` (the tests use the
/// node tier's own images).
pub fn run_node(tests: Vec<Test>) -> ExitCode {
    run_suite(
        "node",
        EnvironmentOptions::default().node(NodeOptions::default()),
        tests,
    )
}

fn run_suite(label: &str, options: EnvironmentOptions, tests: Vec<Test>) -> ExitCode {
    let args = Arguments::from_args();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube_client::client::builder=off".into()),
        )
        .with_test_writer()
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{label}: cannot build a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let existing = options.uses_existing_cluster();
    let assets = options.resolved_assets_dir();
    let has_assets = assets.join("etcd").is_file() && assets.join("kube-apiserver").is_file();
    let unavailable = if existing && options.has_node() {
        Some(
            "USE_EXISTING_CLUSTER=true: the node tests run the node tier's own images \
             (ferrokube.local/busybox, never pulled), which an existing cluster does not have"
                .to_owned(),
        )
    } else if !existing && !has_assets {
        Some(format!(
            "no control plane: {} holds no etcd and kube-apiserver \
             (set KUBEBUILDER_ASSETS, or USE_EXISTING_CLUSTER=true to use KUBECONFIG)",
            assets.display()
        ))
    } else {
        options.preflight().err().map(|e| e.to_string())
    };
    if let Some(reason) = unavailable {
        println!("{label}: SKIPPED: {reason}");
        let trials = tests
            .into_iter()
            .map(|t| Trial::test(t.name, || Ok(())).with_ignored_flag(true))
            .collect();
        return exit_code(libtest_mimic::run(&args, trials));
    }
    if args.list {
        let trials = tests
            .into_iter()
            .map(|t| Trial::test(t.name, || Ok(())))
            .collect();
        return exit_code(libtest_mimic::run(&args, trials));
    }
    let node = options.has_node();
    let env = match runtime.block_on(options.start()) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("{label}: FAILED to start the control plane: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            return ExitCode::FAILURE;
        }
    };
    if existing {
        println!("{label}: running against the existing cluster from KUBECONFIG");
    } else if let Some(name) = env.node_name() {
        println!(
            "{label}: running against a control plane and node {name} from {}",
            assets.display()
        );
    } else {
        println!(
            "{label}: running against a control plane from {}",
            assets.display()
        );
    }
    let suite = Arc::new(Suite {
        runtime,
        env: Arc::new(tokio::sync::RwLock::new(env)),
        node,
    });
    let trials = tests
        .into_iter()
        .map(|test| {
            let ignored = existing && test.needs_own_control_plane;
            let suite = Arc::clone(&suite);
            let name = test.name.clone();
            Trial::test(test.name, move || suite.run_one(&name, &test.body))
                .with_ignored_flag(ignored)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    match Arc::try_unwrap(suite) {
        Ok(suite) => {
            let Suite { runtime, env, .. } = suite;
            drop(env);
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
        Err(_) => eprintln!("{label}: a test still holds the environment; it is stopped at exit"),
    }
    exit_code(conclusion)
}

fn exit_code(conclusion: libtest_mimic::Conclusion) -> ExitCode {
    if conclusion.has_failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

// === impl Suite ===

impl Suite {
    fn run_one(
        &self,
        name: &str,
        body: &(dyn Fn(Context) -> TestFuture + Send + Sync),
    ) -> Result<(), Failed> {
        self.runtime.block_on(async {
            let client = self.env.read().await.client().map_err(fail)?;
            let namespace = namespace_for(name);
            let namespaces = kube::Api::<Namespace>::all(client.clone());
            let mut ns = Namespace::default();
            ns.metadata.name = Some(namespace.clone());
            namespaces
                .create(&PostParams::default(), &ns)
                .await
                .map_err(|e| format!("creating namespace {namespace}: {e}"))?;
            if self.node {
                let accounts = kube::Api::<ServiceAccount>::namespaced(client.clone(), &namespace);
                eventually(
                    "the namespace's default ServiceAccount",
                    Duration::from_secs(30),
                    || {
                        let accounts = accounts.clone();
                        async move { accounts.get_opt("default").await.ok().flatten() }
                    },
                )
                .await
                .map_err(fail)?;
            }
            let ctx = Context {
                client,
                namespace: namespace.clone(),
                env: Arc::clone(&self.env),
            };
            let outcome = tokio::time::timeout(TEST_TIMEOUT, body(ctx)).await;
            // Best effort: a namespace without a namespace controller stays Terminating.
            let _ = namespaces
                .delete(&namespace, &DeleteParams::default())
                .await;
            match outcome {
                Ok(result) => result.map_err(|e| Failed::from(format!("{e:#}"))),
                Err(_) => Err(format!("timed out after {TEST_TIMEOUT:?}").into()),
            }
        })
    }
}

fn fail(e: impl std::fmt::Display) -> Failed {
    Failed::from(e.to_string())
}

/// A unique, valid namespace name derived from a test name.
fn namespace_for(test: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut base: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(40);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pid = std::process::id();
    format!("t-{}-{pid}-{n}", base.trim_matches('-'))
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
