//! Reconcile benchmark: a manager with one controller on `Widget`s
//! (`widgets.bench.ferrokube.dev/v1`) that writes a token into every Widget's status, then
//! prints one `RESULT` line and exits. It follows the contract in `shared/bench/README.md`, so
//! the whole process can be measured side by side with kube-rs's and controller-runtime's
//! (Go) controllers on the same API server and data.
//!
//! ```text
//! python3 ../shared/bench/load.py widgets bench-widgets 2000      # CRD + 2,000 Widgets
//! cargo build --release -p ferrokube-runtime --example reconcile_bench
//! /usr/bin/time -v target/release/examples/reconcile_bench \
//!     --namespace bench-widgets --expect 2000 --workers 4 [--token T] [--kubeconfig PATH]
//! ```
//!
//! * The manager caches Widgets of the one namespace; no leader election, no HTTP server,
//!   client-side throttling off.
//! * Each reconcile reads its Widget from the cache; if `status.token` is not the token it
//!   merge-patches the status subresource with `{"status":{"token":"T"}}`.
//! * Once `--expect` distinct Widgets have been reconciled with the token (patched, or found
//!   with it already), it prints
//!   `RESULT objects=N workers=W seconds=S reconciles_per_sec=R` (S from process start) and
//!   exits at once, without teardown.
//!
//! The token defaults to the process id, so every run patches every Widget again.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use ferrokube_runtime::cached_client::Error as ClientError;
use ferrokube_runtime::prelude::*;
use kube::CustomResource;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The benchmark's Widget (`load.py` installs its CRD).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize)]
#[kube(
    group = "bench.ferrokube.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    schema = "disabled"
)]
struct WidgetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tier: Option<String>,
}

/// What the benchmark writes.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

/// Writes a token into the status of every Widget in a namespace, as fast as it can.
#[derive(Parser, Debug)]
struct Args {
    /// The Widgets' namespace.
    #[arg(long, default_value = "bench-widgets")]
    namespace: String,
    /// How many distinct Widgets must carry the token before the result is printed.
    #[arg(long, default_value_t = 2000)]
    expect: usize,
    /// Concurrent reconciles.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// The token to write (default: the process id).
    #[arg(long)]
    token: Option<String>,
    /// The kubeconfig (default: KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

struct TokenWriter {
    client: CachedClient,
    token: String,
    /// `{"status":{"token":T}}`, built once.
    patch: Patch,
    /// Names of the Widgets that carry the token.
    done: Mutex<HashSet<String>>,
    expect: usize,
    workers: usize,
    started: Instant,
}

impl Reconciler for TokenWriter {
    type Error = ClientError;

    async fn reconcile(&self, request: Request, _ctx: Context) -> Result<Action, ClientError> {
        let Some(widget) = self.client.get_request::<Widget>(&request).await? else {
            return Ok(Action::done()); // deleted
        };
        let has_token = widget
            .status
            .as_ref()
            .and_then(|s| s.token.as_deref())
            .is_some_and(|t| t == self.token);
        if !has_token && let Err(e) = self.client.patch_status(&*widget, &self.patch).await {
            eprintln!("patching the status of Widget {request} failed: {e}");
            return Err(e);
        }
        self.reconciled(request.name);
        Ok(Action::done())
    }
}

impl TokenWriter {
    /// Counts a Widget that carries the token; prints the result and exits on the last one.
    fn reconciled(&self, name: String) {
        let count = {
            let mut done = self.done.lock();
            done.insert(name);
            done.len()
        };
        if count == self.expect {
            let seconds = self.started.elapsed().as_secs_f64();
            println!(
                "RESULT objects={} workers={} seconds={seconds:.3} reconciles_per_sec={:.1}",
                self.expect,
                self.workers,
                self.expect as f64 / seconds
            );
            std::process::exit(0);
        }
    }
}

async fn run(args: Args, started: Instant) -> Result<(), Box<dyn std::error::Error>> {
    if args.expect == 0 {
        return Err("--expect must be at least 1".into());
    }
    let config = match &args.kubeconfig {
        Some(path) => Config::from_kubeconfig(path, None).await?,
        None => Config::infer().await?,
    }
    .with_qps(0.0); // client-side throttling off
    let manager = Manager::new(
        &config,
        ManagerOptions::default()
            .bind_address(None)
            .cache(CacheOptions::default().namespaces([args.namespace.as_str()])),
    )?;
    let token = args.token.unwrap_or_else(|| std::process::id().to_string());
    let patch = Patch::Merge(serde_json::json!({ "status": { "token": token } }));
    Builder::new(&manager)
        .for_::<Widget>()
        .options(ControllerOptions::default().max_concurrent_reconciles(args.workers))
        .complete(TokenWriter {
            client: manager.client(),
            token,
            patch,
            done: Mutex::new(HashSet::with_capacity(args.expect)),
            expect: args.expect,
            workers: args.workers,
            started,
        })?;
    manager.start(shutdown_signal()?).await?;
    Err(format!(
        "the manager stopped before {} Widgets in {} carried the token",
        args.expect, args.namespace
    )
    .into())
}

#[tokio::main]
async fn main() -> ExitCode {
    let started = Instant::now();
    let args = Args::parse();
    match run(args, started).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reconcile_bench: {}", reconcile::Chain(&*e));
            ExitCode::FAILURE
        }
    }
}
