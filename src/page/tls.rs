//! HTTPS for the page: `[page.tls] certs` (PEM chain + key), chosen by SNI among the names
//! each certificate covers (its subject alternative names, else its common name; `*.` covers
//! one label). A client that sends no name, or one no certificate covers, gets the first.
//! Connections are served with hyper (HTTP/1.1 and HTTP/2 by ALPN) and drained on cancel.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After cancel, connections get this long to finish before they are cut.
pub const DRAIN: Duration = Duration::from_secs(5);

/// The certificates, and the names each covers.
#[derive(Debug)]
pub struct Certs {
    /// In config order; the first is the default.
    keys: Vec<Arc<CertifiedKey>>,
    /// Exact names (lowercase, no trailing dot) to an index of `keys`.
    exact: HashMap<String, usize>,
    /// `*.example.test` as "example.test" to an index of `keys`.
    wildcard: HashMap<String, usize>,
    /// The names of each certificate, for logs.
    pub names: Vec<Vec<String>>,
}

impl Certs {
    /// The certificate for `name` (SNI), else the first.
    pub fn find(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let idx = name.and_then(|n| {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&n).copied().or_else(|| {
                n.split_once('.')
                    .and_then(|(_, parent)| self.wildcard.get(parent).copied())
            })
        });
        self.keys.get(idx.unwrap_or(0)).cloned()
    }
}

/// The DNS names (and IP addresses, as text) a leaf certificate covers.
fn names_of(der: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for g in &san.value.general_names {
            match g {
                GeneralName::DNSName(n) => names.push(n.trim_end_matches('.').to_ascii_lowercase()),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    names.extend(ip.map(|i| i.to_string()));
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase()),
        );
    }
    names
}

fn invalid(path: &std::path::Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

/// Reads every (certificate chain, key) pair; an unreadable or mismatched pair is an error
/// naming its file.
pub fn load(pairs: &[(PathBuf, PathBuf)], provider: &CryptoProvider) -> io::Result<Certs> {
    let mut certs = Certs {
        keys: Vec::new(),
        exact: HashMap::new(),
        wildcard: HashMap::new(),
        names: Vec::new(),
    };
    for (cert_path, key_path) in pairs {
        let chain = CertificateDer::pem_file_iter(cert_path)
            .map_err(|e| invalid(cert_path, format!("cannot read certificates: {e}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(cert_path, format!("invalid PEM: {e}")))?;
        let Some(leaf) = chain.first() else {
            return Err(invalid(cert_path, "no certificate in the file"));
        };
        let names = names_of(leaf);
        let key = PrivateKeyDer::from_pem_file(key_path)
            .map_err(|e| invalid(key_path, format!("cannot read a private key: {e}")))?;
        let ck = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
            invalid(
                key_path,
                format!("key does not fit {}: {e}", cert_path.display()),
            )
        })?;
        let idx = certs.keys.len();
        for n in &names {
            match n.strip_prefix("*.") {
                Some(parent) => {
                    certs.wildcard.entry(parent.to_string()).or_insert(idx);
                }
                None => {
                    certs.exact.entry(n.clone()).or_insert(idx);
                }
            }
        }
        certs.keys.push(Arc::new(ck));
        certs.names.push(names);
    }
    if certs.keys.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "[page.tls] listens but names no certificate in certs",
        ));
    }
    Ok(certs)
}

/// Chooses a certificate by SNI; the set can be swapped (reload) while serving.
#[derive(Debug)]
pub struct SniResolver {
    /// The current certificates.
    pub certs: ArcSwap<Certs>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certs.load().find(hello.server_name())
    }
}

/// A rustls server configuration around `resolver` (TLS 1.2 and 1.3, ALPN h2 and
/// http/1.1).
pub fn server_config(
    resolver: Arc<SniResolver>,
    provider: Arc<CryptoProvider>,
) -> io::Result<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Accepts TLS connections on `listener` and serves `router` on each until `cancel`; then
/// stops accepting, asks every connection to finish, and waits at most [`DRAIN`].
pub async fn run(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    cancel: CancellationToken,
) -> io::Result<()> {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    conns.spawn(connection(tcp, peer, acceptor.clone(), router.clone(), cancel.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!("page (HTTPS): accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        debug!("page (HTTPS): cutting connections still open after {DRAIN:?}");
        conns.shutdown().await;
    }
    Ok(())
}

/// One connection: the handshake (bounded), then HTTP until the client is done or cancel.
async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    cancel: CancellationToken,
) {
    let stream = tokio::select! {
        _ = cancel.cancelled() => return,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                debug!(%peer, "page (HTTPS): handshake failed: {e}");
                return;
            }
            Err(_) => {
                debug!(%peer, "page (HTTPS): handshake timed out");
                return;
            }
        },
    };
    let service = TowerToHyperService::new(router);
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(%peer, "page (HTTPS): connection ended: {e}");
                }
                return;
            }
            _ = cancel.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
