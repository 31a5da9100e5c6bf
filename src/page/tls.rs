//! HTTPS for the page: `[page.tls] certs` (PEM chain + key), chosen by SNI among the names
//! each certificate covers (its subject alternative names, else its common name; `*.` covers
//! one label). A client that sends no name, or one no certificate covers, gets the first.
//! Connections are served by [`crate::http`] (HTTP/1.1 and HTTP/2 by ALPN).

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

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
