//! [`Client`]: a cheaply cloneable handle on a throttled kube client.

use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::core::{ApiResource, DynamicObject};

use crate::api::Api;
use crate::config::{Config, ConfigError};
use crate::error::Result;
use crate::metrics::RequestMetricsLayer;
use crate::throttle::ThrottleLayer;

/// A Kubernetes client: kube's transport and auth, client-go's throttling, `Retry-After`
/// handling and timeouts, and typed, dynamic and raw access.
#[derive(Clone)]
#[doc(alias = "Clientset")]
#[doc(alias = "RESTClient")]
pub struct Client {
    kube: kube::Client,
    inner: Arc<Inner>,
}

struct Inner {
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("default_namespace", &self.kube.default_namespace())
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client from `config`: a kube client with the throttling layer inside it, so
    /// every request (typed, dynamic, raw, watch) takes a token. Needs a tokio runtime.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let mut kube_config = config.kube_config().clone();
        // Retries are ours (client-go's Retry-After rules), not kube's.
        kube_config.default_retry = false;
        let url = kube_config.cluster_url.to_string();
        let user_agent = http::HeaderValue::from_str(config.user_agent()).map_err(|source| {
            ConfigError::InvalidUserAgent {
                user_agent: config.user_agent().to_owned(),
                source,
            }
        })?;
        kube_config
            .headers
            .push((http::header::USER_AGENT, user_agent));
        if config.qps() > 0.0 && config.burst() == 0 {
            return Err(ConfigError::ZeroBurst { qps: config.qps() });
        }
        let insecure = kube_config.accept_invalid_certs;
        let builder = kube::client::ClientBuilder::try_from(kube_config).map_err(|source| {
            ConfigError::Client {
                url: url.clone(),
                source,
            }
        })?;
        if insecure {
            tracing::warn!(
                server = %url,
                "TLS verification of the API server is off (insecure-skip-tls-verify): \
                 its identity is not checked"
            );
        }
        // Inside the throttle: a request is counted once it is sent.
        let metrics = config.request_metrics().map(|metrics| {
            RequestMetricsLayer::for_cluster(Arc::clone(metrics), config.cluster_url())
        });
        let builder = builder.with_layer(&tower::util::option_layer(metrics));
        let kube = match ThrottleLayer::new(config.qps(), config.burst()) {
            Some(layer) => builder.with_layer(&layer).build(),
            None => builder.build(),
        };
        Ok(Self {
            kube,
            inner: Arc::new(Inner {
                timeout: config.timeout(),
            }),
        })
    }

    /// A client from [`Config::infer`] (kubeconfig, then in-cluster).
    pub async fn try_default() -> Result<Self, ConfigError> {
        Config::infer().await?.build()
    }

    /// Wraps an existing kube client as it is (its own middleware, no extra throttling).
    pub fn from_kube(kube: kube::Client) -> Self {
        Self {
            kube,
            inner: Arc::new(Inner { timeout: None }),
        }
    }

    /// The underlying kube client (shares this client's throttling).
    pub fn kube(&self) -> &kube::Client {
        &self.kube
    }

    /// The namespace from the configuration's context.
    pub fn default_namespace(&self) -> &str {
        self.kube.default_namespace()
    }

    pub(crate) fn default_timeout(&self) -> Option<Duration> {
        self.inner.timeout
    }

    /// Typed access to `K` in one namespace.
    pub fn namespaced<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource,
        K::DynamicType: Default,
    {
        Api::new(self.clone(), Some(namespace), &K::DynamicType::default())
    }

    /// Typed access to `K` in the configuration's default namespace.
    pub fn default_namespaced<K>(&self) -> Api<K>
    where
        K: Resource,
        K::DynamicType: Default,
    {
        let ns = self.default_namespace().to_owned();
        Api::new(self.clone(), Some(&ns), &K::DynamicType::default())
    }

    /// Typed access to a cluster-scoped `K`, or to a namespaced `K` across all namespaces.
    pub fn all<K>(&self) -> Api<K>
    where
        K: Resource,
        K::DynamicType: Default,
    {
        Api::new(self.clone(), None, &K::DynamicType::default())
    }

    /// Dynamic access to any resource, by its [`ApiResource`] (see [`crate::discovery`]).
    pub fn dynamic(&self, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        Api::new(self.clone(), namespace, resource)
    }

    /// The server's version (`/version`).
    pub async fn server_version(&self) -> Result<k8s_openapi::apimachinery::pkg::version::Info> {
        self.get().abs_path("/version").decode().await
    }
}
