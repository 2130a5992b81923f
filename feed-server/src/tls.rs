//! TLS on the gRPC port (rustls): the certificate and key come from PEM files and are reloaded
//! when the files change (checked every `reload-check-ms`) or on SIGHUP, without dropping a
//! connection; with a client CA, client certificates are verified (mTLS) — optional for ordinary
//! callers, required of admin tokens and of calls forwarded by other nodes (see `service`).
//! Also the client side of node-to-node calls: the CA that signs the nodes' certificates, and
//! this node's certificate as its client identity.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// TLS settings of the gRPC port (kebab-case TOML under `[tls]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct TlsConfig {
    /// This server's certificate chain, PEM.
    pub cert_file: PathBuf,
    /// Its private key, PEM.
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates are verified against. Set: mTLS — a client
    /// certificate is optional for ordinary calls, required for admin tokens and forwarded calls.
    pub client_ca_file: Option<PathBuf>,
    /// CA certificates (PEM) that other nodes' server certificates are verified against when
    /// this node forwards a call (cluster mode); default: `client-ca-file`.
    pub peer_ca_file: Option<PathBuf>,
    /// How often the files are checked for changes (they are also reloaded on SIGHUP).
    pub reload_check_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            client_ca_file: None,
            peer_ca_file: None,
            reload_check_ms: 10_000,
        }
    }
}

impl TlsConfig {
    /// The files whose change triggers a reload.
    fn files(&self) -> Vec<&Path> {
        let mut f = vec![self.cert_file.as_path(), self.key_file.as_path()];
        f.extend(self.client_ca_file.as_deref());
        f
    }

    /// The CA that signs the other nodes' certificates.
    pub fn peer_ca(&self) -> Option<&Path> {
        self.peer_ca_file.as_deref().or(self.client_ca_file.as_deref())
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("reading certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server config from the files named in `cfg`.
fn build(cfg: &TlsConfig) -> Result<rustls::ServerConfig, String> {
    let certs = read_certs(&cfg.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file)
        .map_err(|e| format!("reading the private key {}: {e}", cfg.key_file.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &cfg.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut sc = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "certificate {} and key {}: {e}",
            cfg.cert_file.display(),
            cfg.key_file.display()
        )
    })?;
    // HTTP/1.1 too: browsers may speak gRPC-Web over it.
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(sc)
}

/// Modification times and sizes of the watched files.
fn stamp(cfg: &TlsConfig) -> Vec<Option<(SystemTime, u64)>> {
    cfg.files()
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// The TLS state of a running server: the config in force, swapped whole on reload.
#[derive(Debug)]
pub struct Tls {
    cfg: TlsConfig,
    current: RwLock<Arc<rustls::ServerConfig>>,
    seen: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl Tls {
    /// Loads the certificate, key and client CA named in `cfg`.
    pub fn load(cfg: TlsConfig) -> Result<Arc<Tls>, String> {
        let seen = stamp(&cfg);
        let sc = build(&cfg)?;
        Ok(Arc::new(Tls {
            cfg,
            current: RwLock::new(Arc::new(sc)),
            seen: Mutex::new(seen),
        }))
    }

    /// Whether client certificates are verified (admin and forwarded calls must present one).
    pub fn verifies_clients(&self) -> bool {
        self.cfg.client_ca_file.is_some()
    }

    /// Reloads the files now. A failure keeps the config in force and says why.
    pub fn reload(&self) -> Result<(), String> {
        let seen = stamp(&self.cfg);
        let sc = build(&self.cfg)?;
        *self.current.write() = Arc::new(sc);
        *self.seen.lock() = seen;
        tracing::info!(cert = %self.cfg.cert_file.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// Reloads if any file changed since the last load.
    fn reload_if_changed(&self) {
        if stamp(&self.cfg) == *self.seen.lock() {
            return;
        }
        if let Err(e) = self.reload() {
            // Half-written files are common mid-rotation: keep serving, try again next tick.
            tracing::warn!(error = %e, "TLS files changed but do not load; keeping the current certificate");
        }
    }

    /// Checks the files every `reload-check-ms` until the returned task is aborted.
    pub fn watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        let every = Duration::from_millis(self.cfg.reload_check_ms.max(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                tls.reload_if_changed();
            }
        })
    }

    /// TLS connections accepted on `listener`, each handshake on its own task (bounded by 10 s,
    /// so a slow client cannot hold the accept loop). Ends when the receiver is dropped.
    pub fn incoming(
        self: &Arc<Self>,
        listener: TcpListener,
    ) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<tokio::net::TcpStream>>> {
        let (tx, rx) = mpsc::channel(64);
        let tls = self.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = tx.closed() => return,
                };
                let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!(error = %e, "could not set TCP_NODELAY");
                }
                let acceptor = TlsAcceptor::from(tls.current.read().clone());
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => {
                            let _ = tx.send(Ok(s)).await;
                        }
                        Ok(Err(e)) => {
                            metrics::counter!("feedline_tls_handshake_failures_total").increment(1);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

/// The client side of node-to-node calls: the peers' CA, and this node's certificate and key as
/// its identity (for servers that verify client certificates).
pub fn peer_client_config(cfg: &TlsConfig) -> Result<tonic::transport::ClientTlsConfig, String> {
    let mut c = tonic::transport::ClientTlsConfig::new();
    if let Some(ca) = cfg.peer_ca() {
        let pem = std::fs::read(ca).map_err(|e| format!("reading the peer CA {}: {e}", ca.display()))?;
        c = c.ca_certificate(tonic::transport::Certificate::from_pem(pem));
    }
    let cert = std::fs::read(&cfg.cert_file).map_err(|e| format!("reading {}: {e}", cfg.cert_file.display()))?;
    let key = std::fs::read(&cfg.key_file).map_err(|e| format!("reading {}: {e}", cfg.key_file.display()))?;
    Ok(c.identity(tonic::transport::Identity::from_pem(cert, key)))
}

/// Whether `host` (a name or an address) is on this machine only.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "127.5.0.1", "localhost", "[::1]", "::1"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["0.0.0.0", "10.0.0.1", "example.com", "[::]"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
