//! Shutdown on SIGINT/SIGTERM (controller-runtime's `SetupSignalHandler`).

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM; a second signal exits the process at
/// once with status 1. Pass it to [`Manager::start`](super::Manager::start).
///
/// # Errors
///
/// If the signal handlers cannot be installed.
///
/// # Panics
///
/// Outside a tokio runtime.
#[doc(alias = "SetupSignalHandler")]
pub fn shutdown_signal() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let cancel = token.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("shutdown signal received; a second signal exits at once");
            cancel.cancel();
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            eprintln!("second shutdown signal: exiting");
            std::process::exit(1);
        });
    }
    #[cfg(not(unix))]
    {
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(1);
                }
            }
        });
    }
    Ok(token)
}
