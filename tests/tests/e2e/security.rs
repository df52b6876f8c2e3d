//! Security against a real API server: credentials (a service-account token, the same token
//! from an exec plugin, a client certificate and key) and Secret data never appear in `Debug`
//! output, error messages or TRACE-level logs while the client and an informer read and
//! write Secrets; and the manager's metrics/health server binds only where it is told.
//!
//! Each scenario runs on a current-thread runtime in a thread of its own whose default
//! subscriber writes every event at TRACE into a buffer, so everything the client, kube's
//! transport and the informer log (their tasks run on that thread) is captured and searched.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use ferrokube_runtime::CancellationToken;
use ferrokube_runtime::client::{Config, ListOptions, WriteOptions};
use ferrokube_runtime::informer::SharedInformerFactory;
use ferrokube_runtime::prelude::{Manager, ManagerOptions};
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, PostParams};
use parking_lot::Mutex;
use serde_json::json;
use tests::{Context, Test};

pub fn tests() -> Vec<Test> {
    vec![
        Test::new(
            "security::credentials_and_secret_data_stay_out_of_debug_errors_and_trace_logs",
            credentials_stay_hidden,
        ),
        Test::new(
            "security::metrics_server_binds_only_where_configured",
            binds_only_where_configured,
        ),
    ]
}

/// The Secret's value, as written and as the API server sends it (base64).
const SECRET_VALUE: &str = "s3cr3t-VALUE-7f1c2e";

// === captured logs ===

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `work` to completion on a current-thread runtime in a new thread whose default
/// subscriber records everything at TRACE; returns its output and the log.
async fn captured<F, T>(work: F) -> anyhow::Result<(T, String)>
where
    F: Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let handle = std::thread::spawn(move || {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(work)
        })
    });
    let output = tokio::task::spawn_blocking(move || handle.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the captured scenario panicked"))??;
    let log = String::from_utf8_lossy(&buffer.0.lock()).into_owned();
    Ok((output, log))
}

// === credentials ===

/// A kubeconfig (JSON) for the test cluster with `user` as its credentials.
fn kubeconfig(admin: &serde_json::Value, user: serde_json::Value) -> serde_json::Value {
    let mut config = admin.clone();
    config["users"][0]["user"] = user;
    config
}

/// What one credential scenario did, in text: `Debug` of the config, client, objects' errors.
struct Shown {
    text: Vec<String>,
    requests: usize,
}

/// Loads `path`, builds a client, then writes, reads, lists and caches (informer) a Secret
/// holding [`SECRET_VALUE`] in `namespace`, and makes requests that fail (a missing Secret;
/// kube-system's Secrets, forbidden to the service account). Returns every `Debug`/`Display`
/// it produced.
async fn exercise(
    path: std::path::PathBuf,
    namespace: String,
    name: String,
) -> anyhow::Result<Shown> {
    let mut text = Vec::new();
    let config = Config::from_kubeconfig(&path, None).await?;
    text.push(format!("{config:?} {config:#?}"));
    let client = config.build()?;
    text.push(format!("{client:?}"));
    let secrets = client.namespaced::<Secret>(&namespace);
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.clone());
    secret.data = Some(BTreeMap::from([(
        "password".to_owned(),
        ByteString(SECRET_VALUE.as_bytes().to_vec()),
    )]));
    secrets.create(&secret, &WriteOptions::default()).await?;
    let read = secrets.get(&name).await?;
    ensure!(
        read.data == secret.data,
        "the Secret read back differs from the one written"
    );
    let listed = secrets.list(&ListOptions::default()).await?;
    ensure!(!listed.items.is_empty(), "the list holds no Secret");
    let mut requests = 3;

    // Through an informer: list + watch, then the cache.
    let factory = SharedInformerFactory::new(client.clone(), Some(Duration::from_secs(1)))
        .namespace(&namespace);
    let _informer = factory.informer_for::<Secret>();
    let lister = factory.lister_for::<Secret>();
    factory.start();
    let synced = factory.wait_for_cache_sync(&CancellationToken::new()).await;
    ensure!(
        synced.values().all(|s| *s),
        "the Secret informer did not sync"
    );
    let cached = lister
        .get(Some(&namespace), &name)
        .context("the Secret is not in the informer's cache")?;
    ensure!(cached.data == secret.data, "the cached Secret differs");
    // An update the informer sees through its watch.
    let mut updated = (*cached).clone();
    updated
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert("touched".into(), "yes".into());
    secrets.update(&updated, &WriteOptions::default()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while lister.get(Some(&namespace), &name).is_none_or(|s| {
        s.metadata
            .labels
            .as_ref()
            .is_none_or(|l| !l.contains_key("touched"))
    }) {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the informer never saw the update"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    factory.shutdown().await;
    requests += 2;

    // Requests that fail: their errors are shown too.
    let missing = secrets
        .get("no-such-secret")
        .await
        .expect_err("a missing Secret is an error");
    text.push(format!("{missing} {missing:?}"));
    let elsewhere = client
        .namespaced::<Secret>("kube-system")
        .list(&ListOptions::default())
        .await;
    if let Err(e) = &elsewhere {
        text.push(format!("{e} {e:?}"));
    }
    requests += 2;
    Ok(Shown { text, requests })
}

async fn credentials_stay_hidden(ctx: Context) -> anyhow::Result<()> {
    let path = ctx
        .env
        .read()
        .await
        .kubeconfig_path()
        .map(Path::to_owned)
        .context("the security test needs the test control plane's kubeconfig")?;
    let admin: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    let ns = ctx.namespace.clone();

    // A service account that may use Secrets in the test namespace (only), and a token for it.
    let accounts = Api::<ServiceAccount>::namespaced(ctx.client.clone(), &ns);
    let mut account = ServiceAccount::default();
    account.metadata.name = Some("security-probe".into());
    accounts.create(&PostParams::default(), &account).await?;
    // A Role of its own: the bootstrap `admin` ClusterRole is aggregated, and without a
    // controller manager it holds no rules.
    let role = Role {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("security-probe".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: [
                "get", "list", "watch", "create", "update", "patch", "delete",
            ]
            .map(String::from)
            .to_vec(),
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(ctx.client.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await?;
    let binding = RoleBinding {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("security-probe".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "security-probe".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "security-probe".into(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(ctx.client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await?;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request("security-probe", &PostParams::default(), &request)
        .await?
        .status
        .context("no token in the TokenRequest's status")?
        .token;
    // The JWT's signature: never in any output either.
    let signature = token.rsplit('.').next().unwrap_or_default().to_owned();

    // The admin's client key, inline (client-key-data) so its bytes are in the config.
    let user = &admin["users"][0]["user"];
    let read_pem = |field: &str| -> anyhow::Result<String> {
        let file = user[field]
            .as_str()
            .with_context(|| format!("no {field} in the admin kubeconfig"))?;
        Ok(std::fs::read_to_string(file)?)
    };
    let (cert_pem, key_pem) = (read_pem("client-certificate")?, read_pem("client-key")?);
    let key_data = base64(key_pem.as_bytes());
    let key_lines: Vec<String> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 32)
        .map(str::to_owned)
        .collect();
    ensure!(!key_lines.is_empty(), "the client key has no base64 lines");

    // An exec plugin that prints the token.
    let dir = tempfile_dir(&ns)?;
    let plugin = dir.join("credential-plugin.sh");
    let credential = json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": token},
    });
    std::fs::write(
        &plugin,
        format!("#!/bin/sh\ncat <<'EOF'\n{credential}\nEOF\n"),
    )?;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o700))?;

    let scenarios = [
        ("token", json!({"token": token})),
        (
            "exec",
            json!({"exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": plugin,
                "interactiveMode": "Never",
            }}),
        ),
        (
            "client-certificate",
            json!({
                "client-certificate-data": base64(cert_pem.as_bytes()),
                "client-key-data": key_data,
            }),
        ),
    ];
    let mut secrets: Vec<String> = vec![
        token.clone(),
        signature,
        key_data.clone(),
        SECRET_VALUE.to_owned(),
        base64(SECRET_VALUE.as_bytes()),
        // A Secret's bytes as `Debug` of a byte string prints them.
        format!("{:?}", SECRET_VALUE.as_bytes()),
    ];
    secrets.extend(key_lines);
    let mut summary = Vec::new();
    for (label, user) in scenarios {
        let file = dir.join(format!("{label}-kubeconfig"));
        std::fs::write(&file, kubeconfig(&admin, user).to_string())?;
        let (shown, log) = captured(exercise(file, ns.clone(), format!("probe-{label}")))
            .await
            .with_context(|| format!("{label}: the scenario failed"))?;
        // The capture works: the requests were logged at TRACE/DEBUG.
        ensure!(
            log.lines().count() >= shown.requests,
            "{label}: only {} log lines for {} requests: is TRACE captured?\n{log}",
            log.lines().count(),
            shown.requests
        );
        let detailed = log
            .lines()
            .filter(|l| l.contains(" TRACE ") || l.contains(" DEBUG "))
            .count();
        ensure!(
            detailed > 0,
            "{label}: no TRACE or DEBUG line captured:\n{log}"
        );
        for secret in &secrets {
            if let Some(line) = log.lines().find(|l| l.contains(secret.as_str())) {
                anyhow::bail!("{label}: a credential or Secret value is in the logs: {line}");
            }
            for text in &shown.text {
                ensure!(
                    !text.contains(secret.as_str()),
                    "{label}: a credential or Secret value is shown: {text}"
                );
            }
        }
        summary.push(format!(
            "{label}: {} log lines ({detailed} TRACE/DEBUG), {} outputs",
            log.lines().count(),
            shown.text.len()
        ));
    }

    // A token the server refuses: the 401 error does not repeat it.
    let bad = "BAD-TOKEN-eyJhbGciOiJSUzI1NiJ9.refused";
    let file = dir.join("bad-token-kubeconfig");
    std::fs::write(&file, kubeconfig(&admin, json!({"token": bad})).to_string())?;
    let ((), log) = captured(async move {
        let client = Config::from_kubeconfig(&file, None).await?.build()?;
        let err = client
            .namespaced::<Secret>("default")
            .list(&ListOptions::default())
            .await
            .expect_err("a refused token is an error");
        ensure!(err.is_unauthorized(), "{err:?}");
        let shown = format!("{err} {err:?}");
        ensure!(
            !shown.contains(bad),
            "the refused token is in the error: {shown}"
        );
        Ok(())
    })
    .await?;
    ensure!(!log.contains(bad), "the refused token is in the logs");
    std::fs::remove_dir_all(&dir)?;
    println!("security: nothing leaked ({})", summary.join("; "));
    Ok(())
}

fn tempfile_dir(namespace: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ferrokube-security-{namespace}"));
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// === bind address ===

/// The machine's addresses other than loopback (from `hostname -I`), if any.
fn other_interfaces() -> Vec<IpAddr> {
    std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|a| a.parse::<IpAddr>().ok())
                .filter(|a| !a.is_loopback())
                .collect()
        })
        .unwrap_or_default()
}

async fn binds_only_where_configured(ctx: Context) -> anyhow::Result<()> {
    let kube_config = ctx.env.read().await.config().clone();
    let config = Config::from_kube(kube_config);

    // No address: no server, and nothing says it serves.
    let no_server = config.clone();
    let (address, log) = captured(async move {
        let manager = Manager::new(&no_server, ManagerOptions::default().bind_address(None))?;
        let stop = CancellationToken::new();
        let running = {
            let manager = manager.clone();
            let stop = stop.clone();
            tokio::spawn(async move { manager.start(stop).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let address = manager.server_address();
        stop.cancel();
        running.await??;
        Ok(address)
    })
    .await?;
    ensure!(
        address.is_none(),
        "bind_address(None) serves on {address:?}"
    );
    ensure!(
        !log.contains("serving metrics and health probes"),
        "bind_address(None) started the server:\n{log}"
    );

    // 127.0.0.1: bound there only; other interfaces refuse the port.
    let others = other_interfaces();
    let ((address, reached), log) = captured(async move {
        let manager = Manager::new(
            &config,
            ManagerOptions::default().bind_address(Some(([127, 0, 0, 1], 0).into())),
        )?;
        let stop = CancellationToken::new();
        let running = {
            let manager = manager.clone();
            let stop = stop.clone();
            tokio::spawn(async move { manager.start(stop).await })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let address = loop {
            if let Some(address) = manager.server_address() {
                break address;
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "the server never bound"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut reached = Vec::new();
        for ip in std::iter::once(address.ip()).chain(others) {
            let target = SocketAddr::new(ip, address.port());
            let connected = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(target),
            )
            .await
            .is_ok_and(|c| c.is_ok());
            reached.push((target, connected));
        }
        stop.cancel();
        running.await??;
        Ok((address, reached))
    })
    .await?;
    ensure!(
        log.contains("serving metrics and health probes"),
        "the bound server did not say it serves:\n{log}"
    );
    ensure!(
        address.ip() == IpAddr::from([127, 0, 0, 1]),
        "bound to {address}"
    );
    let (loopback, others): (Vec<_>, Vec<_>) = reached
        .iter()
        .partition(|(target, _)| target.ip().is_loopback());
    ensure!(
        loopback.iter().all(|(_, connected)| *connected),
        "the server is not reachable on {address}"
    );
    ensure!(
        others.iter().all(|(_, connected)| !connected),
        "the server bound to 127.0.0.1 is reachable elsewhere: {others:?}"
    );
    println!(
        "security: bind_address(None) bound nothing; 127.0.0.1 bound {address}, refused on {:?}",
        others
            .iter()
            .map(|(t, _)| t.to_string())
            .collect::<Vec<_>>()
    );
    Ok(())
}
