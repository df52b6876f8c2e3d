//! Port forwarding to a container's HTTP server: local TCP ports (`kubectl port-forward`),
//! a stream per port, and the error a closed port reports.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use ferrokube_runtime::client::portforward::{ForwardedPort, PortForwardError, PortForwardOptions};
use tests::{Context, Test, eventually};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixtures::{http_pod, pods, run_pod};

pub fn tests() -> Vec<Test> {
    vec![
        Test::new("portforward::local_ports", local_ports),
        Test::new("portforward::stream_per_port", stream_per_port),
        Test::new("portforward::closed_port_reports_an_error", closed_port),
    ]
}

/// Sends `GET /index.html` over `stream` and returns the whole answer.
pub async fn http_get(mut stream: impl AsyncRead + AsyncWrite + Unpin) -> anyhow::Result<String> {
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
        .await?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut answer))
        .await
        .context("no answer within 30 s")??;
    Ok(answer)
}

async fn local_ports(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    run_pod(&pods, &http_pod("web")).await?;
    let ports = [":8080".parse::<ForwardedPort>()?];
    let forwarder = pods
        .forward_ports("web", &ports, &PortForwardOptions::default())
        .await?;
    let local = forwarder
        .local_addr(8080)
        .context("no local address for 8080")?;
    ensure!(local.port() != 0 && forwarder.ports()[0].remote == 8080);
    // The server may need a moment after the container started.
    eventually(
        "an answer through the forwarded port",
        Duration::from_secs(30),
        || async {
            let answer = http_get(TcpStream::connect(local).await.ok()?).await.ok()?;
            answer.contains("hello from web").then_some(())
        },
    )
    .await?;
    // Every connection is forwarded on its own: three at once.
    let answers = futures::future::try_join_all(
        (0..3).map(|_| async { http_get(TcpStream::connect(local).await?).await }),
    )
    .await?;
    for answer in answers {
        ensure!(
            answer.starts_with("HTTP/1.") && answer.contains("hello from web"),
            "{answer:?}"
        );
    }
    forwarder.shutdown().await;
    ensure!(
        TcpStream::connect(local).await.is_err(),
        "the local port is closed after shutdown"
    );
    Ok(())
}

async fn stream_per_port(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    run_pod(&pods, &http_pod("web")).await?;
    let answer = eventually(
        "an answer over the port's stream",
        Duration::from_secs(30),
        || async {
            let mut forwarder = pods.portforward("web", &[8080]).await.ok()?;
            let stream = forwarder.take_stream(8080)?;
            let answer = http_get(stream).await.ok()?;
            answer.contains("hello from web").then_some(answer)
        },
    )
    .await?;
    ensure!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer:?}"
    );
    Ok(())
}

async fn closed_port(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    run_pod(&pods, &http_pod("web")).await?;
    let ports = [ForwardedPort::new(0, 9)];
    let mut forwarder = pods
        .forward_ports("web", &ports, &PortForwardOptions::default())
        .await?;
    let local = forwarder.local_addr(9).context("no local address")?;
    let mut connection = TcpStream::connect(local).await?;
    connection.write_all(b"anyone?\n").await?;
    let error = tokio::time::timeout(Duration::from_secs(30), forwarder.next_error())
        .await
        .context("no error reported within 30 s")?
        .context("forwarding stopped without an error")?;
    ensure!(
        matches!(&error, PortForwardError::Remote { remote: 9, .. }),
        "expected the server's error for port 9, got {error:?}"
    );
    Ok(())
}
