//! envtest itself: control planes start, stop cleanly and start again.

use std::net::TcpListener;
use std::path::Path;

use anyhow::{Context as _, ensure};
use ferrokube_runtime::envtest::{EnvironmentOptions, Error};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use tests::{Context, Test};

pub fn tests() -> Vec<Test> {
    vec![
        Test::new(
            "control_plane::second_environment_starts_after_first_stopped",
            restart_cleanly,
        )
        .starts_control_planes(),
        Test::new(
            "control_plane::controller_manager_collects_garbage",
            garbage_collection,
        )
        .starts_control_planes(),
        Test::new("control_plane::missing_assets_are_named", missing_assets),
    ]
}

fn ports_of(kubeconfig_url: &str, etcd_url: &str) -> anyhow::Result<Vec<u16>> {
    [kubeconfig_url, etcd_url]
        .iter()
        .map(|url| {
            url.rsplit(':')
                .next()
                .and_then(|p| p.trim_end_matches('/').parse().ok())
                .with_context(|| format!("no port in {url}"))
        })
        .collect()
}

async fn restart_cleanly(_ctx: Context) -> anyhow::Result<()> {
    for round in 0..2 {
        let env = EnvironmentOptions::default().start().await?;
        let namespaces = Api::<Namespace>::all(env.client()?);
        let listed = namespaces.list(&Default::default()).await?;
        ensure!(
            !listed.items.is_empty(),
            "round {round}: no namespaces listed"
        );

        let pids = env.process_ids();
        ensure!(
            pids.len() == 2,
            "round {round}: expected etcd + kube-apiserver, got {pids:?}"
        );
        let api_url = env.config().cluster_url.to_string();
        let etcd_url = env.etcd_url().context("no etcd url")?.to_owned();
        let dir = env
            .kubeconfig_path()
            .and_then(Path::parent)
            .context("no kubeconfig")?
            .to_owned();
        env.stop();

        for (binary, pid) in pids {
            let proc_dir = Path::new("/proc").join(pid.to_string());
            ensure!(
                !proc_dir.exists(),
                "round {round}: {binary} (pid {pid}) still running"
            );
        }
        for port in ports_of(&api_url, &etcd_url)? {
            TcpListener::bind(("127.0.0.1", port))
                .with_context(|| format!("round {round}: port {port} still in use"))?;
        }
        ensure!(
            !dir.exists(),
            "round {round}: {} not removed",
            dir.display()
        );
    }
    Ok(())
}

async fn missing_assets(_ctx: Context) -> anyhow::Result<()> {
    let empty = tempfile_dir()?;
    let result = EnvironmentOptions::default()
        .use_existing_cluster(false)
        .assets_dir(&empty)
        .start()
        .await;
    match result {
        Err(e @ Error::AssetNotFound { .. }) => {
            let message = e.to_string();
            ensure!(
                message.contains("etcd") && message.contains(&*empty.to_string_lossy()),
                "unhelpful message: {message}"
            );
        }
        other => anyhow::bail!("expected AssetNotFound, got {other:?}"),
    }
    std::fs::remove_dir_all(&empty)?;
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ferrokube-empty-assets-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn garbage_collection(_ctx: Context) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::{DeleteParams, PostParams};

    let assets = EnvironmentOptions::default().resolved_assets_dir();
    if !assets.join("kube-controller-manager").is_file() {
        println!(
            "skipped: no kube-controller-manager in {}",
            assets.display()
        );
        return Ok(());
    }
    let env = EnvironmentOptions::default()
        .controller_manager(true)
        .start()
        .await?;
    ensure!(
        env.process_ids().len() == 3,
        "expected 3 processes: {:?}",
        env.process_ids()
    );
    let api = Api::<ConfigMap>::namespaced(env.client()?, "default");
    let mut owner = ConfigMap::default();
    owner.metadata.name = Some("owner".into());
    let owner = api.create(&PostParams::default(), &owner).await?;
    let mut child = ConfigMap::default();
    child.metadata.name = Some("child".into());
    child.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().context("owner has no uid")?,
        ..OwnerReference::default()
    }]);
    api.create(&PostParams::default(), &child).await?;
    api.delete("owner", &DeleteParams::default()).await?;
    tests::eventually(
        "the garbage collector to delete the child",
        std::time::Duration::from_secs(60),
        || async { matches!(api.get_opt("child").await, Ok(None)).then_some(()) },
    )
    .await?;
    Ok(())
}
