//! `leader_election`: client-go's leader election example. Processes started with different
//! identities contend for one `coordination.k8s.io/v1` Lease; each prints when it starts and
//! stops leading, and who the leader is. Kill the leader (`kill -9`) and another takes over
//! once the Lease expires (`--lease-duration`); stop it with SIGINT/SIGTERM and it releases
//! the Lease, so another takes over at once.
//!
//! ```text
//! cargo run -p examples --example leader_election -- --identity a &
//! cargo run -p examples --example leader_election -- --identity b &
//! #   a: started leading (lease default/example)
//! #   b: the leader is a
//! kill -9 %1
//! #   b: started leading (lease default/example)      ~15 s later
//! ```
//!
//! The Lease is field-compatible with client-go's `LeaseLock`: Go processes can contend too.
//! A replica that loses the Lease (it could not renew it in time) stops its work at once and
//! joins the election again as a candidate.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use examples::{BoxError, ClusterArgs};
use ferrokube_runtime::CancellationToken;
use ferrokube_runtime::client::leader_election::{
    LeaderElectionConfig, LeaderElector, LeaderEvent, StopReason,
};
use ferrokube_runtime::manager::shutdown_signal;
use futures::StreamExt;

/// Contend for a Lease with other processes; print when this one starts and stops leading.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// This process's identity, unique among the candidates (default: hostname_pid).
    #[arg(long, value_name = "ID")]
    identity: Option<String>,
    /// The Lease's name.
    #[arg(long, value_name = "NAME", default_value = "example")]
    lease_name: String,
    /// The Lease's namespace (default: the kubeconfig context's namespace).
    #[arg(long, value_name = "NS")]
    lease_namespace: Option<String>,
    /// How long the others wait, after the Lease last changed, before taking it over.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = examples::parse_duration)]
    lease_duration: Duration,
    /// How long the leader tries to renew the Lease before it gives up leading.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = examples::parse_duration)]
    renew_deadline: Duration,
    /// How often candidates try to acquire, and the leader to renew, the Lease.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = examples::parse_duration)]
    retry_period: Duration,
    /// Keep the Lease on SIGINT/SIGTERM instead of releasing it (the others then wait for it
    /// to expire).
    #[arg(long)]
    keep_lease_on_exit: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    examples::init_tracing();
    examples::exit(run(cli).await)
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    let config = cli.cluster.config().await?;
    let client = config.build()?;
    examples::connect(&client, &config).await?;
    let id = cli
        .identity
        .unwrap_or_else(|| format!("{}_{}", examples::hostname(), std::process::id()));
    let namespace = cli
        .lease_namespace
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let lease = format!("{namespace}/{}", cli.lease_name);
    let elector = LeaderElector::new(
        client,
        LeaderElectionConfig::new(namespace, cli.lease_name, id.clone())
            .with_lease_duration(cli.lease_duration)
            .with_renew_deadline(cli.renew_deadline)
            .with_retry_period(cli.retry_period)
            .with_release_on_cancel(!cli.keep_lease_on_exit),
    )?;

    let shutdown = shutdown_signal()?;
    println!("{id}: contending for lease {lease}");
    loop {
        let mut events = elector.run(shutdown.child_token());
        while let Some(event) = events.next().await {
            match event {
                LeaderEvent::StartedLeading(leading) => {
                    println!("{id}: started leading (lease {lease})");
                    tokio::spawn(work(leading));
                }
                LeaderEvent::StoppedLeading(reason) => {
                    println!("{id}: stopped leading: {}", describe(&reason));
                }
                // We got the Lease: StartedLeading says so.
                LeaderEvent::NewLeader(holder) if holder == id => {}
                LeaderEvent::NewLeader(holder) if holder.is_empty() => {
                    println!("{id}: the lease was released");
                }
                LeaderEvent::NewLeader(holder) => println!("{id}: the leader is {holder}"),
            }
        }
        if shutdown.is_cancelled() {
            return Ok(());
        }
        // Leadership was lost (the Lease could not be renewed in time): stand again.
        println!("{id}: joining the election again");
    }
}

/// What only the leader does: here, a log line every few seconds until `leading` is
/// cancelled (leadership lost, or shutdown).
async fn work(leading: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = leading.cancelled() => return,
            _ = tick.tick() => tracing::info!("doing the leader's work"),
        }
    }
}

fn describe(reason: &StopReason) -> String {
    match reason {
        StopReason::Cancelled => "shutting down".to_owned(),
        StopReason::RenewDeadlineExceeded => "the lease could not be renewed in time".to_owned(),
        StopReason::LeaseTaken { holder } => format!("the lease was taken by {holder}"),
        StopReason::Aborted => "the election was aborted".to_owned(),
        // StopReason is non-exhaustive: a reason added after this example was written.
        _ => "leadership ended for a reason this example does not know".to_owned(),
    }
}
