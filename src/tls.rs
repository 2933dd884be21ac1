//! The one TLS client setup of nemoclaw (rustls with the ring provider): the inference
//! gateway's backends and git sources over https both trust the Mozilla roots (webpki-roots)
//! plus the PEM certificates of an optional CA file (`NEMOCLAW_CA_FILE`), for servers behind a
//! private CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The environment variable naming an extra CA file (PEM) to trust.
pub const CA_FILE_ENV: &str = "NEMOCLAW_CA_FILE";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("CA file {} (it must hold PEM certificates; see {CA_FILE_ENV})", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: CaFileError,
    },
    #[error("TLS setup")]
    Setup(#[source] rustls::Error),
}

/// What is wrong with the CA file.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error(transparent)]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("no PEM certificates in it")]
    NoCertificates,
    #[error("a certificate is refused")]
    Refused(#[from] rustls::Error),
}

/// The extra CA file named by `NEMOCLAW_CA_FILE`, if any.
pub fn ca_file_from_env() -> Option<PathBuf> {
    std::env::var_os(CA_FILE_ENV).map(PathBuf::from)
}

/// A client configuration trusting the Mozilla roots plus the certificates in `extra_ca`.
pub fn client_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let bad = |source: CaFileError| TlsError::CaFile {
            path: path.to_path_buf(),
            source,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.into()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.into()))?;
        if certs.is_empty() {
            return Err(bad(CaFileError::NoCertificates));
        }
        for c in certs {
            roots.add(c).map_err(|e| bad(e.into()))?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::Setup)?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Whether a connector also speaks plain http (local model servers do; git sources must not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schemes {
    HttpsOnly,
    HttpsOrHttp,
}

/// A hyper connector over [`client_config`]: TCP_NODELAY, HTTP/1, and a connect timeout.
pub fn https_connector(
    extra_ca: Option<&Path>,
    schemes: Schemes,
    connect_timeout: Duration,
) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, TlsError> {
    let tls = client_config(extra_ca)?;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    let builder = match schemes {
        Schemes::HttpsOnly => builder.https_only(),
        Schemes::HttpsOrHttp => builder.https_or_http(),
    };
    Ok(builder.enable_http1().wrap_connector(http))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let e = crate::error_chain(&client_config(Some(&f)).unwrap_err());
        assert!(e.contains(&f.display().to_string()), "{e}");
        assert!(e.contains("no PEM certificates"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = crate::error_chain(&client_config(Some(&missing)).unwrap_err());
        assert!(e.contains("missing.pem"), "{e}");
    }

    #[test]
    fn the_mozilla_roots_alone_make_a_config() {
        assert!(client_config(None).is_ok());
    }
}
