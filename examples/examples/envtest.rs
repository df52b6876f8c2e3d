//! `envtest`: a throwaway control plane for trying the other examples without a cluster —
//! etcd and kube-apiserver (and, with `--controller-manager`, kube-controller-manager) from
//! `KUBEBUILDER_ASSETS` (default `/usr/local/kubebuilder/bin`), as the end-to-end tests use.
//!
//! ```text
//! cargo run -p examples --example envtest
//! #   kubeconfig: /tmp/.tmpXXXX/kubeconfig
//! cargo run -p examples --example podcount -- run --install-crd --kubeconfig /tmp/.tmpXXXX/kubeconfig
//! ```
//!
//! It runs until SIGINT or SIGTERM, then stops the processes and removes their data. There is
//! no kubelet: Pods are stored but stay Pending, and without `--controller-manager` nothing
//! garbage-collects owned objects or turns Deployments into ReplicaSets.

use std::process::ExitCode;

use clap::Parser;
use examples::BoxError;
use ferrokube_runtime::envtest::EnvironmentOptions;
use ferrokube_runtime::manager::shutdown_signal;

/// Run a local etcd + kube-apiserver (controller-runtime's envtest) until SIGINT/SIGTERM.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Also run kube-controller-manager (garbage collection, Deployments → ReplicaSets → Pods).
    #[arg(long)]
    controller_manager: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    examples::init_tracing();
    examples::exit(run(cli).await)
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    let options = EnvironmentOptions::default()
        // This example always starts its own control plane.
        .use_existing_cluster(false)
        .controller_manager(cli.controller_manager);
    // Signals are handled from here on, so that one arriving while the control plane starts
    // still stops it: dropping the unfinished start kills the processes already running and
    // removes their data.
    let shutdown = shutdown_signal()?;
    println!(
        "starting a control plane from {}",
        options.resolved_assets_dir().display()
    );
    let env = tokio::select! {
        env = options.start() => env?,
        () = shutdown.cancelled() => {
            println!("stopped while starting");
            return Ok(());
        }
    };
    println!("kube-apiserver: {}", env.config().cluster_url);
    if let Some(kubeconfig) = env.kubeconfig_path() {
        println!("kubeconfig: {}", kubeconfig.display());
        println!("  export KUBECONFIG={}", kubeconfig.display());
    }
    println!("SIGINT or SIGTERM stops it");
    shutdown.cancelled().await;
    println!("stopping");
    env.stop();
    Ok(())
}
