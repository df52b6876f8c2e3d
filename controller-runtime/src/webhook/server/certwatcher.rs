//! [`CertWatcher`]: the serving certificate, read from its files and re-read when they change
//! (controller-runtime's `pkg/certwatcher`).
//!
//! cert-manager and the kubelet rotate a mounted secret by swapping a symlink, which file
//! events do not reliably report; the watcher polls both files, compares their bytes with what
//! it loaded last, and loads a new pair only when they changed. A pair that does not load (a
//! half-written file, a key that does not match) is logged and the old certificate stays in
//! use. New TLS connections get the current certificate; open ones keep theirs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use super::Error;
use crate::metrics::Metrics;

/// The serving certificate and key, reloaded from their files. Cheap to clone: clones share
/// the current certificate. Give it to rustls as the server's certificate resolver.
#[derive(Clone)]
pub struct CertWatcher {
    inner: Arc<Inner>,
    metrics: Option<Metrics>,
}

struct Inner {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Loaded>,
}

/// A loaded pair and the file contents it came from.
struct Loaded {
    certified: Arc<CertifiedKey>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl fmt::Debug for CertWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertWatcher")
            .field("cert_path", &self.inner.cert_path)
            .field("key_path", &self.inner.key_path)
            .finish_non_exhaustive()
    }
}

impl CertWatcher {
    /// Reads the PEM certificate chain at `cert_path` and the PEM private key (PKCS#8, PKCS#1
    /// or SEC1) at `key_path` now.
    ///
    /// # Errors
    ///
    /// [`Error::ReadCertificate`] if a file cannot be read, [`Error::InvalidCertificate`] if it
    /// holds no usable certificate or key, [`Error::KeyMismatch`] if the key is not the
    /// certificate's.
    pub fn new(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Result<Self, Error> {
        Self::build(cert_path.into(), key_path.into(), None)
    }

    /// As [`CertWatcher::new`], counting every read in `metrics`
    /// (`certwatcher_read_certificate_total`, `certwatcher_read_certificate_errors_total`).
    ///
    /// # Errors
    ///
    /// As [`CertWatcher::new`].
    pub fn with_metrics(
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
        metrics: Metrics,
    ) -> Result<Self, Error> {
        Self::build(cert_path.into(), key_path.into(), Some(metrics))
    }

    fn build(
        cert_path: PathBuf,
        key_path: PathBuf,
        metrics: Option<Metrics>,
    ) -> Result<Self, Error> {
        let read = read_pair(&cert_path, &key_path).and_then(|(cert_pem, key_pem)| {
            let certified = load(&cert_path, &cert_pem, &key_path, &key_pem)?;
            Ok((certified, cert_pem, key_pem))
        });
        if let Some(metrics) = &metrics {
            metrics.certificate_read(read.is_err());
        }
        let (certified, cert_pem, key_pem) = read?;
        Ok(Self {
            metrics,
            inner: Arc::new(Inner {
                cert_path,
                key_path,
                current: RwLock::new(Loaded {
                    certified,
                    cert_pem,
                    key_pem,
                }),
            }),
        })
    }

    /// The certificate chain's path.
    pub fn cert_path(&self) -> &Path {
        &self.inner.cert_path
    }

    /// The private key's path.
    pub fn key_path(&self) -> &Path {
        &self.inner.key_path
    }

    /// The certificate new connections get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.inner.current.read().certified)
    }

    /// Reads both files again and, if their contents changed, loads and uses the new pair.
    /// Returns whether the certificate changed.
    ///
    /// # Errors
    ///
    /// As [`CertWatcher::new`]; the current certificate stays in use.
    #[doc(alias = "ReadCertificate")]
    pub fn reload(&self) -> Result<bool, Error> {
        let reloaded = self.read_and_swap();
        if let Some(metrics) = &self.metrics {
            metrics.certificate_read(reloaded.is_err());
        }
        reloaded
    }

    fn read_and_swap(&self) -> Result<bool, Error> {
        let inner = &self.inner;
        let (cert_pem, key_pem) = read_pair(&inner.cert_path, &inner.key_path)?;
        {
            let current = inner.current.read();
            if current.cert_pem == cert_pem && current.key_pem == key_pem {
                return Ok(false);
            }
        }
        let certified = load(&inner.cert_path, &cert_pem, &inner.key_path, &key_pem)?;
        *inner.current.write() = Loaded {
            certified,
            cert_pem,
            key_pem,
        };
        tracing::info!(cert = %inner.cert_path.display(), "updated the webhook serving certificate");
        Ok(true)
    }

    /// Reloads every `interval` until `cancel` fires. A pair that fails to load is logged as
    /// a warning and the old certificate stays in use.
    pub async fn watch(self, interval: Duration, cancel: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is now: the pair was just loaded
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            // Reading two small files: quick enough for the runtime's thread.
            if let Err(error) = self.reload() {
                tracing::warn!(
                    error = %error,
                    "cannot load the new webhook serving certificate; still serving the previous one"
                );
            }
        }
    }
}

impl ResolvesServerCert for CertWatcher {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| Error::ReadCertificate {
            path: path.to_owned(),
            source,
        })
    };
    Ok((read(cert_path)?, read(key_path)?))
}

fn load(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, Error> {
    let invalid = |path: &Path, reason: String| Error::InvalidCertificate {
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert_path, format!("malformed PEM: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(cert_path, "no PEM CERTIFICATE block".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        invalid(
            key_path,
            format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let provider = rustls::crypto::ring::default_provider();
    match CertifiedKey::from_der(chain, key, &provider) {
        Ok(certified) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(Error::KeyMismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
        }),
        Err(rustls::Error::General(reason)) => Err(invalid(key_path, reason)),
        Err(e) => Err(invalid(cert_path, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::server::test_support::{self, TestCert};

    fn write(dir: &Path, cert: &TestCert) {
        std::fs::write(dir.join("tls.crt"), &cert.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &cert.key_pem).unwrap();
    }

    fn served(watcher: &CertWatcher) -> Vec<u8> {
        watcher.current().cert[0].to_vec()
    }

    #[test]
    fn loads_reloads_on_change_and_keeps_the_old_pair_when_the_new_one_is_bad() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (test_support::generate(), test_support::generate());
        write(dir.path(), &first);
        let metrics = Metrics::new();
        let watcher = CertWatcher::with_metrics(
            dir.path().join("tls.crt"),
            dir.path().join("tls.key"),
            metrics.clone(),
        )
        .unwrap();
        assert_eq!(served(&watcher), first.der);
        assert!(!watcher.reload().unwrap(), "unchanged files");

        write(dir.path(), &second);
        assert!(watcher.reload().unwrap());
        assert_eq!(served(&watcher), second.der);

        // A certificate with another pair's key: refused, the current pair stays.
        std::fs::write(dir.path().join("tls.crt"), &first.cert_pem).unwrap();
        let err = watcher.reload().unwrap_err();
        assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
        assert_eq!(served(&watcher), second.der);

        // A truncated certificate file, then a missing key.
        std::fs::write(dir.path().join("tls.crt"), &first.cert_pem[..40]).unwrap();
        let err = watcher.reload().unwrap_err();
        assert!(
            matches!(err, Error::InvalidCertificate { ref path, .. } if path.ends_with("tls.crt")),
            "{err}"
        );
        std::fs::write(dir.path().join("tls.crt"), &first.cert_pem).unwrap();
        std::fs::remove_file(dir.path().join("tls.key")).unwrap();
        let err = watcher.reload().unwrap_err();
        assert!(
            matches!(err, Error::ReadCertificate { ref path, .. } if path.ends_with("tls.key")),
            "{err}"
        );
        assert!(err.to_string().contains("tls.key"), "{err}");
        assert_eq!(served(&watcher), second.der);

        // A good pair again.
        write(dir.path(), &first);
        assert!(watcher.reload().unwrap());
        assert_eq!(served(&watcher), first.der);

        // Every read counted (controller-runtime's certwatcher series): 7 reads, 3 failed.
        let text = metrics.encode();
        for line in [
            "certwatcher_read_certificate_total 7",
            "certwatcher_read_certificate_errors_total 3",
        ] {
            assert!(
                text.contains(&format!("\n{line}\n")),
                "{line} missing in\n{text}"
            );
        }
    }

    #[test]
    fn start_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let err = CertWatcher::new(&crt, &key).unwrap_err();
        assert!(err.to_string().contains("tls.crt"), "{err}");

        let cert = test_support::generate();
        std::fs::write(&crt, &cert.cert_pem).unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let err = CertWatcher::new(&crt, &key).unwrap_err();
        assert!(
            matches!(err, Error::InvalidCertificate { ref path, .. } if *path == key),
            "{err}"
        );
        assert!(err.to_string().contains("tls.key"), "{err}");

        std::fs::write(&crt, "").unwrap();
        std::fs::write(&key, &cert.key_pem).unwrap();
        let err = CertWatcher::new(&crt, &key).unwrap_err();
        assert!(
            matches!(err, Error::InvalidCertificate { ref path, .. } if *path == crt),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn watch_polls_until_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (test_support::generate(), test_support::generate());
        write(dir.path(), &first);
        let watcher =
            CertWatcher::new(dir.path().join("tls.crt"), dir.path().join("tls.key")).unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(
            watcher
                .clone()
                .watch(Duration::from_secs(10), cancel.clone()),
        );
        tokio::task::yield_now().await;
        write(dir.path(), &second);
        assert_eq!(served(&watcher), first.der, "not before the next poll");
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(served(&watcher), second.der);
        cancel.cancel();
        task.await.unwrap();
    }
}
