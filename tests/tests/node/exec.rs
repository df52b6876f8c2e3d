//! Exec and attach against real containers: stdout and stderr, stdin, exit codes, a terminal
//! and its size, and attaching to a container that reads its standard input.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use ferrokube_runtime::client::exec::{TerminalSize, exit_code};
use ferrokube_runtime::client::{AttachOptions, ExecOptions};
use serde_json::json;
use tests::{Context, Test};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::fixtures::{busybox_pod, pods, run_pod};

pub fn tests() -> Vec<Test> {
    vec![
        Test::new(
            "exec::stdout_stderr_and_exit_codes",
            stdout_stderr_and_exit_codes,
        ),
        Test::new("exec::stdin", stdin),
        Test::new("exec::tty_and_resize", tty_and_resize),
        Test::new("attach::reads_stdin", attach_reads_stdin),
    ]
}

async fn read_all(stream: Option<impl AsyncRead + Unpin>) -> anyhow::Result<String> {
    let mut out = String::new();
    if let Some(mut s) = stream {
        s.read_to_string(&mut out).await?;
    }
    Ok(out)
}

/// Reads from `stream` until what was read contains `needle` (or 30 s pass).
async fn read_until(
    stream: &mut (impl AsyncRead + Unpin),
    seen: &mut String,
    needle: &str,
) -> anyhow::Result<()> {
    let read = async {
        let mut buf = [0u8; 1024];
        while !seen.contains(needle) {
            let n = stream.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "the stream ended");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .with_context(|| format!("{needle:?} not seen; got {seen:?}"))?
        .with_context(|| format!("{needle:?} not seen; got {seen:?}"))
}

async fn stdout_stderr_and_exit_codes(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    run_pod(&pods, &busybox_pod("shell", "sleep 3600", json!({}))).await?;

    let command = ["sh", "-c", "echo out; echo err >&2; exit 3"];
    let mut process = pods.exec("shell", command, &ExecOptions::default()).await?;
    let (stdout, stderr) = (process.stdout(), process.stderr());
    let (out, err) = tokio::try_join!(read_all(stdout), read_all(stderr))?;
    let status = process.join().await?.context("no exit status")?;
    ensure!(
        out == "out\n" && err == "err\n",
        "stdout {out:?}, stderr {err:?}"
    );
    ensure!(exit_code(&status) == Some(3), "status {status:?}");

    let process = pods
        .exec("shell", ["true"], &ExecOptions::default())
        .await?;
    let status = process.join().await?.context("no exit status")?;
    ensure!(exit_code(&status) == Some(0), "status {status:?}");

    let missing = pods
        .exec("shell", ["/no/such/binary"], &ExecOptions::default())
        .await?;
    let status = missing.join().await?.context("no exit status")?;
    ensure!(
        exit_code(&status) != Some(0),
        "a missing binary fails: {status:?}"
    );
    Ok(())
}

async fn stdin(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    run_pod(&pods, &busybox_pod("cat", "sleep 3600", json!({}))).await?;
    let options = ExecOptions::default().stdin(true);
    let mut process = pods
        .exec("cat", ["sh", "-c", "tr a-z A-Z"], &options)
        .await?;
    let mut input = process.stdin().context("stdin")?;
    input.write_all(b"hello\nworld\n").await?;
    input.shutdown().await?;
    drop(input);
    let out = read_all(process.stdout()).await?;
    let status = process.join().await?.context("no exit status")?;
    ensure!(out == "HELLO\nWORLD\n", "stdout {out:?}");
    ensure!(exit_code(&status) == Some(0), "status {status:?}");
    Ok(())
}

async fn tty_and_resize(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    run_pod(&pods, &busybox_pod("terminal", "sleep 3600", json!({}))).await?;
    let options = ExecOptions::default().stdin(true).tty(true).stderr(false);
    let mut process = pods.exec("terminal", ["sh"], &options).await?;
    let mut input = process.stdin().context("stdin")?;
    let mut output = process.stdout().context("stdout")?;
    let sizes = process.terminal_size().context("terminal size sender")?;
    let mut seen = String::new();

    sizes
        .send(TerminalSize {
            width: 123,
            height: 45,
        })
        .await?;
    input.write_all(b"stty size\n").await?;
    read_until(&mut output, &mut seen, "45 123").await?;

    sizes
        .send(TerminalSize {
            width: 99,
            height: 33,
        })
        .await?;
    input.write_all(b"stty size; exit 7\n").await?;
    read_until(&mut output, &mut seen, "33 99").await?;
    drop((input, output, sizes));
    let status = process.join().await?.context("no exit status")?;
    ensure!(exit_code(&status) == Some(7), "status {status:?}");
    Ok(())
}

async fn attach_reads_stdin(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    let script = "while read line; do echo got:$line; done";
    run_pod(
        &pods,
        &busybox_pod("reader", script, json!({"stdin": true})),
    )
    .await?;
    let options = AttachOptions::default().stdin(true).stderr(false);
    let mut process = pods.attach("reader", &options).await?;
    let mut input = process.stdin().context("stdin")?;
    let mut output = process.stdout().context("stdout")?;
    let mut seen = String::new();
    input.write_all(b"ping\n").await?;
    read_until(&mut output, &mut seen, "got:ping\n").await?;
    input.write_all(b"pong\n").await?;
    read_until(&mut output, &mut seen, "got:pong\n").await?;
    process.abort();
    Ok(())
}
