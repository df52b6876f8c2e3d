//! `pods/log` against real containers: follow, tail, since, timestamps, limit-bytes, and the
//! previous instance after a restart.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use ferrokube_runtime::client::LogOptions;
use futures::StreamExt;
use serde_json::json;
use tests::{Context, Test, eventually};

use crate::fixtures::{busybox_pod, pods, run_pod};

pub fn tests() -> Vec<Test> {
    vec![
        Test::new("logs::follow_a_running_container", follow),
        Test::new("logs::tail_limit_and_timestamps", tail_limit_and_timestamps),
        Test::new("logs::since_seconds", since_seconds),
        Test::new("logs::previous_after_a_restart", previous_after_restart),
    ]
}

async fn follow(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    let script = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done";
    run_pod(&pods, &busybox_pod("counter", script, json!({}))).await?;
    let stream = pods
        .log_stream("counter", &LogOptions::default().follow(true))
        .await?;
    let lines: Vec<String> =
        tokio::time::timeout(Duration::from_secs(30), stream.take(10).collect::<Vec<_>>())
            .await
            .context("10 lines did not arrive within 30 s")?
            .into_iter()
            .map(|l| l.map(|b| String::from_utf8_lossy(&b).into_owned()))
            .collect::<Result<_, _>>()?;
    let expected: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
    ensure!(lines == expected, "followed lines: {lines:?}");
    Ok(())
}

/// Waits until the container's whole log is `expected`.
async fn wait_for_log(
    pods: &ferrokube_runtime::client::Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    expected: &str,
) -> anyhow::Result<()> {
    eventually(
        &format!("the log of {name}"),
        Duration::from_secs(30),
        || async {
            let log = pods.logs(name, &LogOptions::default()).await.ok()?;
            (log == expected.as_bytes()).then_some(())
        },
    )
    .await
}

async fn tail_limit_and_timestamps(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    let script = "for l in a b c d e; do echo $l; done; sleep 3600";
    run_pod(&pods, &busybox_pod("letters", script, json!({}))).await?;
    wait_for_log(&pods, "letters", "a\nb\nc\nd\ne\n").await?;

    let tail = pods
        .logs("letters", &LogOptions::default().tail_lines(2))
        .await?;
    ensure!(tail == "d\ne\n".as_bytes(), "tail 2: {tail:?}");
    let limited = pods
        .logs("letters", &LogOptions::default().limit_bytes(3))
        .await?;
    ensure!(limited == "a\nb".as_bytes(), "limit 3 bytes: {limited:?}");

    let stamped = pods
        .logs("letters", &LogOptions::default().timestamps(true))
        .await?;
    let stamped = String::from_utf8_lossy(&stamped).into_owned();
    let lines: Vec<&str> = stamped.lines().collect();
    ensure!(lines.len() == 5, "timestamped log: {stamped:?}");
    for (line, letter) in lines.iter().zip(["a", "b", "c", "d", "e"]) {
        let (stamp, text) = line.split_once(' ').context("no timestamp")?;
        ensure!(text == letter, "line {line:?}");
        stamp
            .parse::<k8s_openapi::jiff::Timestamp>()
            .with_context(|| format!("{stamp:?} is not RFC 3339"))?;
    }
    Ok(())
}

async fn since_seconds(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    // Eight seconds between the lines; asked right after the second, "since 4 s" holds only
    // it (with 4 s to spare either way on a busy machine).
    let script = "echo old; sleep 8; echo new; sleep 3600";
    run_pod(&pods, &busybox_pod("ages", script, json!({}))).await?;
    wait_for_log(&pods, "ages", "old\nnew\n").await?;
    let recent = pods
        .logs("ages", &LogOptions::default().since(Duration::from_secs(4)))
        .await?;
    ensure!(recent == "new\n".as_bytes(), "since 4 s: {recent:?}");
    Ok(())
}

async fn previous_after_restart(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    // The first instance leaves a mark in an emptyDir (which outlives container restarts)
    // and fails; the second one stays.
    let script = "if [ -e /data/ran ]; then echo second; sleep 3600; \
                  else touch /data/ran; echo first; exit 3; fi";
    let mut pod = busybox_pod(
        "restarter",
        script,
        json!({"volumeMounts": [{"name": "data", "mountPath": "/data"}]}),
    );
    let spec = pod.spec.as_mut().context("spec")?;
    spec.restart_policy = Some("Always".to_owned());
    spec.volumes = Some(vec![serde_json::from_value(
        json!({"name": "data", "emptyDir": {}}),
    )?]);
    pods.create(&pod, &Default::default()).await?;
    // The kubelet waits 10 s before the first restart.
    eventually("the second instance", Duration::from_secs(60), || async {
        let pod = pods.get("restarter").await.ok()?;
        let status = pod.status?.container_statuses?.into_iter().next()?;
        (status.restart_count >= 1 && status.state?.running.is_some()).then_some(())
    })
    .await?;
    let previous = pods
        .logs("restarter", &LogOptions::default().previous(true))
        .await?;
    ensure!(previous == "first\n".as_bytes(), "previous: {previous:?}");
    wait_for_log(&pods, "restarter", "second\n").await?;
    Ok(())
}
