//! What the runnable examples in `examples/examples/` share: the cluster flags every example
//! takes, logging to stderr, one-line error reports, durations on the command line, and the
//! CRD chores of the operator examples (print, install, check that it is served).
//!
//! Each example is a self-contained program: read it from the top of its file. This crate
//! only keeps the examples' command lines and error messages consistent.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ferrokube_runtime::client::{Client, Config, ConfigError, ListOptions, Patch, PatchOptions};
use ferrokube_runtime::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use ferrokube_runtime::kube::Resource;
use serde::de::DeserializeOwned;

/// A boxed error, as the examples' `run` functions return.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// How long an example waits for the API server's first answer before it reports the
/// cluster as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long `--install-crd` waits for a CRD to be established.
pub const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);

/// What the examples' shared chores can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The custom resource is not served: its CRD is not installed.
    #[error(
        "the {kind} CRD ({crd}) is not installed in the cluster at {server}: install it with \
         `cargo run -p examples --example {example} -- crd | kubectl apply -f -`, \
         or run with --install-crd"
    )]
    MissingCrd {
        /// The resource's kind.
        kind: String,
        /// The CRD's name (`plural.group`).
        crd: String,
        /// The example that serves it.
        example: &'static str,
        /// The API server's URL.
        server: String,
    },
    /// The API server did not answer.
    #[error("cannot reach the API server at {server}")]
    Unreachable {
        /// The API server's URL.
        server: String,
        /// What the client reported.
        #[source]
        source: Box<ferrokube_runtime::client::Error>,
    },
    /// The API server did not answer within [`CONNECT_TIMEOUT`].
    #[error("the API server at {server} did not answer within {timeout:?}")]
    Timeout {
        /// The API server's URL.
        server: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The API server answered a check with an error (e.g. 401 Unauthorized, 403 Forbidden).
    #[error("the API server at {server} refused {request} (HTTP {code})")]
    Refused {
        /// The API server's URL.
        server: String,
        /// What was asked: `GET /version`, `to list <plural.group>`.
        request: String,
        /// The answer's HTTP status code.
        code: u16,
        /// The server's answer.
        #[source]
        source: Box<ferrokube_runtime::client::Error>,
    },
    /// `--install-crd` could not apply the CRD.
    #[error("cannot install the CRD {crd}")]
    InstallCrd {
        /// The CRD's name.
        crd: String,
        /// The server's answer.
        #[source]
        source: Box<ferrokube_runtime::client::Error>,
    },
    /// The CRD was applied but not established in time.
    #[error("the CRD {crd} was applied but is not established after {timeout:?}")]
    NotEstablished {
        /// The CRD's name.
        crd: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// An object could not be printed as YAML.
    #[error("cannot print the {kind} as YAML")]
    Yaml {
        /// What was printed.
        kind: &'static str,
        /// Why.
        #[source]
        source: serde_saphyr::SerializeError,
    },
}

/// The flags that say which cluster to talk to, shared by every example
/// (client-go's `--kubeconfig` / `--master`, kubectl's `--context`).
///
/// Without flags, client-go's rules apply: in-cluster first, then `KUBECONFIG` (a path list)
/// or `~/.kube/config` with its current context.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ClusterArgs {
    /// Path to a kubeconfig file (default: in-cluster, then $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "PATH", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, value_name = "NAME", global = true)]
    pub context: Option<String>,
    /// The API server's URL; overrides the kubeconfig's server.
    #[arg(long, value_name = "URL", global = true)]
    pub master: Option<String>,
}

impl ClusterArgs {
    /// The client configuration these flags select.
    ///
    /// # Errors
    ///
    /// A kubeconfig that cannot be read or used, an unknown context, an invalid `--master`.
    pub async fn config(&self) -> Result<Config, ConfigError> {
        let kubeconfig = self
            .kubeconfig
            .as_deref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let master = self.master.as_deref().unwrap_or_default();
        let Some(context) = self.context.as_deref() else {
            return Config::from_flags(master, &kubeconfig).await;
        };
        let mut config = match &self.kubeconfig {
            Some(path) => Config::from_kubeconfig(path, Some(context)).await?,
            None => Config::from_default_kubeconfig(context).await?,
        };
        if !master.is_empty() {
            // The same validation as without --context.
            let url = Config::from_flags(master, "").await?.cluster_url().clone();
            config.kube_config_mut().cluster_url = url;
        }
        Ok(config)
    }
}

/// Installs a `tracing` subscriber writing to stderr (stdout is for the examples' output),
/// honouring `RUST_LOG`. The default is `info`, without kube's own log of a failed
/// connection: the example reports that error itself, once.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client::client::builder=off".into()),
        )
        .try_init();
}

/// `error` and its causes as one line: `a: b: c`. A cause whose text its parent already
/// shows is skipped; of a message on several lines (a YAML parser's snippet of the input)
/// only the first is kept.
pub fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let first_line = |e: &dyn StdError| {
        let text = e.to_string();
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .to_owned()
    };
    let mut line = first_line(error);
    let mut source = error.source();
    while let Some(cause) = source {
        let text = first_line(cause);
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// The exit code for an example's result; an error is printed as one line on stderr
/// (`error: …` with its causes), never as a panic or a `Debug` dump.
pub fn exit(result: Result<(), BoxError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}

/// Parses a duration from the command line: `500ms`, `2s`, `1m`, `1h`, or a number of seconds
/// (`1.5`).
///
/// # Errors
///
/// A string that is none of these.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 2s, 1m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}

/// Prints `object` as a YAML document on stdout (as `kubectl get -o yaml` would).
///
/// # Errors
///
/// If the object cannot be serialized.
pub fn print_yaml<T: serde::Serialize>(kind: &'static str, object: &T) -> Result<(), Error> {
    let yaml = serde_saphyr::to_string(object).map_err(|source| Error::Yaml { kind, source })?;
    print!("{yaml}");
    if !yaml.ends_with('\n') {
        println!();
    }
    Ok(())
}

/// Checks that the API server answers (its `/version`), so that an unreachable cluster or
/// missing credentials give one clear error instead of informers retrying forever.
///
/// # Errors
///
/// [`Error::Refused`] if the server answered with an error (e.g. 401 for bad credentials),
/// [`Error::Unreachable`] if it did not answer, [`Error::Timeout`] after [`CONNECT_TIMEOUT`].
pub async fn connect(client: &Client, config: &Config) -> Result<(), Error> {
    let server = config.cluster_url().to_string();
    match tokio::time::timeout(CONNECT_TIMEOUT, client.server_version()).await {
        Err(_) => Err(Error::Timeout {
            server,
            timeout: CONNECT_TIMEOUT,
        }),
        Ok(Ok(version)) => {
            tracing::debug!(%server, version = %version.git_version, "connected");
            Ok(())
        }
        Ok(Err(source)) if source.status().is_some() => {
            Err(refused(server, "GET /version".to_owned(), source))
        }
        Ok(Err(source)) => Err(Error::Unreachable {
            server,
            source: Box::new(source),
        }),
    }
}

/// Checks that the API server serves `K` (in `namespace`, or everywhere): a missing CRD gives
/// one clear error instead of an informer retrying forever.
///
/// # Errors
///
/// [`Error::MissingCrd`] (404), [`Error::Refused`] (any other answer, e.g. 403),
/// [`Error::Unreachable`], [`Error::Timeout`].
pub async fn check_served<K>(
    client: &Client,
    config: &Config,
    namespace: Option<&str>,
    example: &'static str,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>
        + DeserializeOwned
        + serde::Serialize
        + Clone
        + std::fmt::Debug
        + Send
        + 'static,
{
    let server = config.cluster_url().to_string();
    let api = match namespace {
        Some(ns) => client.namespaced::<K>(ns),
        None => client.all::<K>(),
    };
    let resource = format!("{}.{}", K::plural(&()), K::group(&()));
    let first_page = ListOptions::default().limit(1);
    let list = api.list(&first_page);
    match tokio::time::timeout(CONNECT_TIMEOUT, list).await {
        Err(_) => Err(Error::Timeout {
            server,
            timeout: CONNECT_TIMEOUT,
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.is_not_found() => Err(Error::MissingCrd {
            kind: K::kind(&()).into_owned(),
            crd: resource,
            example,
            server,
        }),
        Ok(Err(source)) if source.status().is_some() => {
            Err(refused(server, format!("to list {resource}"), source))
        }
        Ok(Err(source)) => Err(Error::Unreachable {
            server,
            source: Box::new(source),
        }),
    }
}

/// [`Error::Refused`] for an error answer (`source` carries a `Status`).
fn refused(server: String, request: String, source: ferrokube_runtime::client::Error) -> Error {
    Error::Refused {
        server,
        request,
        code: source.status().map_or(0, |s| s.code),
        source: Box::new(source),
    }
}

/// Installs `crd` (server-side apply as `field_manager`, so running it again updates it) and
/// waits until the API server serves it.
///
/// # Errors
///
/// [`Error::InstallCrd`] if the apply fails, [`Error::NotEstablished`] after
/// [`CRD_ESTABLISHED_TIMEOUT`].
pub async fn install_crd(
    client: &Client,
    crd: &CustomResourceDefinition,
    field_manager: &str,
) -> Result<(), Error> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let api = client.all::<CustomResourceDefinition>();
    let patch = Patch::apply(crd).map_err(|e| Error::InstallCrd {
        crd: name.clone(),
        source: Box::new(ferrokube_runtime::client::Error::InvalidRequest(
            e.to_string(),
        )),
    })?;
    let applied = api
        .patch(&name, &patch, &PatchOptions::apply(field_manager).force())
        .await
        .map_err(|source| Error::InstallCrd {
            crd: name.clone(),
            source: Box::new(source),
        })?;
    tracing::info!(crd = %name, "CRD applied; waiting for it to be established");
    let deadline = tokio::time::Instant::now() + CRD_ESTABLISHED_TIMEOUT;
    let mut current = applied;
    loop {
        if is_established(&current) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::NotEstablished {
                crd: name,
                timeout: CRD_ESTABLISHED_TIMEOUT,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        current = api.get(&name).await.map_err(|source| Error::InstallCrd {
            crd: name.clone(),
            source: Box::new(source),
        })?;
    }
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// This host's name, for default identities.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle: inner")]
    struct Middle(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[test]
    fn error_chains_are_one_line_without_repeats() {
        assert_eq!(error_chain(&Outer(Middle(Inner))), "outer: middle: inner");
        assert_eq!(error_chain(&Inner), "inner");
        let multi: BoxError = "line 1: unclosed bracket\n --> <input>:1:10\n  |".into();
        assert_eq!(error_chain(&*multi), "line 1: unclosed bracket");
    }

    #[test]
    fn cluster_flags_parse_everywhere() {
        use clap::Parser;

        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            cluster: ClusterArgs,
        }
        let cli = Cli::try_parse_from(["x", "--kubeconfig", "/k", "--context", "kind-kind"])
            .expect("valid flags");
        assert_eq!(cli.cluster.kubeconfig, Some(PathBuf::from("/k")));
        assert_eq!(cli.cluster.context.as_deref(), Some("kind-kind"));
        assert_eq!(cli.cluster.master, None);
    }
}
