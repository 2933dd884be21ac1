//! git over https for git2: libgit2's smart HTTP protocol (fetch only) carried by nemoclaw's own
//! HTTP stack (hyper, rustls with the Mozilla roots plus `NEMOCLAW_CA_FILE`), registered as
//! libgit2's `https://` transport.
//!
//! Why not libgit2's built-in https: on Linux it needs OpenSSL, which nemoclaw then linked
//! statically. That was 25,000 of the binary's 60,000 load-time relocations and a CPU probe at
//! every start, paid by every `nemoclaw` exec (the supervisor, `run`, `exec`), a second TLS stack
//! beside rustls, and a minute of clean build. The protocol is two requests:
//!
//! - `GET <repo>/info/refs?service=git-upload-pack`: the ref advertisement (redirects followed,
//!   and the pack request goes where the advertisement came from, as git does);
//! - `POST <repo>/git-upload-pack`: libgit2 writes the negotiation, then reads the pack.
//!
//! Credentials in the URL (`https://user:token@host/repo`) are sent as HTTP Basic auth to that
//! host only, never to a redirect's other host, and never appear in an error message
//! ([`redact`]). Plain `http://` is refused ([`preflight`]): what a source says is what nemoclaw
//! runs, so it must not be open to tampering on the way.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::sync::lock;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

const MAX_REDIRECTS: usize = 5;
/// The longest wait for a response head or for the next piece of a body.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const USER_AGENT: &str = concat!("git/2.0 (nemoclaw/", env!("CARGO_PKG_VERSION"), ")");
const REFS_SUFFIX: &str = "/info/refs?service=git-upload-pack";
const ADVERTISEMENT: &str = "application/x-git-upload-pack-advertisement";
const REQUEST: &str = "application/x-git-upload-pack-request";
const RESULT: &str = "application/x-git-upload-pack-result";

/// Registers the `https://` transport once per process. Every fetch calls this first.
pub fn register() -> Result<(), git2::Error> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: libgit2's transport registry is not synchronised. This runs once, inside the
        // OnceLock's initialiser, which other callers wait for; every nemoclaw fetch calls
        // `register` before it touches a remote, so no fetch runs while the registry changes.
        unsafe {
            git2::transport::register("https", |remote| {
                Transport::smart(remote, true, Https::new()?)
            })
        }
        .map_err(|e| e.message().to_string())
    })
    .clone()
    .map_err(|m| git2::Error::from_str(&m))
}

/// Why a source URL cannot be fetched, found before libgit2 is involved.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("plain http is refused for sources (anyone on the way could change what nemoclaw runs): use an https:// URL")]
    PlainHttp,
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Checks, before libgit2 is involved, what would otherwise fail inside it with a vaguer
/// message: the URL's scheme and the TLS setup (the CA file).
pub fn preflight(url: &str) -> Result<(), PreflightError> {
    if url.starts_with("http://") {
        return Err(PreflightError::PlainHttp);
    }
    if url.starts_with("https://") {
        crate::tls::client_config(crate::tls::ca_file_from_env().as_deref())?;
    }
    Ok(())
}

/// `url` with any credentials replaced by `***`, for messages and records.
pub fn redact(url: &str) -> String {
    match split_userinfo(url) {
        Some((_, rest_start, scheme_end)) => {
            format!("{}***@{}", &url[..scheme_end], &url[rest_start..])
        }
        None => url.to_string(),
    }
}

/// For `scheme://userinfo@host/...`: (userinfo, index of the host, index after `://`).
fn split_userinfo(url: &str) -> Option<(&str, usize, usize)> {
    let scheme_end = url.find("://")? + 3;
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    let at = url[scheme_end..authority_end].rfind('@')? + scheme_end;
    Some((&url[scheme_end..at], at + 1, scheme_end))
}

/// The URL without credentials, and the Basic `Authorization` value they make.
fn credentials(url: &str) -> (String, Option<String>) {
    let Some((userinfo, host_start, scheme_end)) = split_userinfo(url) else {
        return (url.to_string(), None);
    };
    let clean = format!("{}{}", &url[..scheme_end], &url[host_start..]);
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let pair = format!("{}:{}", percent_decode(user), percent_decode(pass));
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    (clean, Some(value))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or("")
}

fn git_err(msg: impl std::fmt::Display) -> git2::Error {
    git2::Error::from_str(&msg.to_string())
}

/// What one fetch's requests share: a runtime to drive them, the client (whose pool keeps the
/// connection between the two requests) and where the advertisement came from.
struct Shared {
    rt: tokio::runtime::Runtime,
    client: HttpsClient,
    auth: Mutex<Option<(String, String)>>,
    base: Mutex<Option<String>>,
}

struct Https(Arc<Shared>);

impl Https {
    fn new() -> Result<Https, git2::Error> {
        let ca = crate::tls::ca_file_from_env();
        let https = crate::tls::https_connector(
            ca.as_deref(),
            crate::tls::Schemes::HttpsOnly,
            Duration::from_secs(15),
        )
        .map_err(git_err)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| git_err(format!("cannot start the https client: {e}")))?;
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Https(Arc::new(Shared {
            rt,
            client,
            auth: Mutex::new(None),
            base: Mutex::new(None),
        })))
    }
}

impl SmartSubtransport for Https {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let s = &self.0;
        match action {
            Service::UploadPackLs => {
                let (clean, auth) = credentials(url);
                let base = clean.trim_end_matches('/').to_string();
                if let Some(a) = auth {
                    *lock(&s.auth) = Some((host_of(&base).to_string(), a));
                }
                let (final_url, body) = s.get_refs(format!("{base}{REFS_SUFFIX}"))?;
                let base = final_url
                    .strip_suffix(REFS_SUFFIX)
                    .unwrap_or(&base)
                    .to_string();
                *lock(&s.base) = Some(base);
                Ok(Box::new(Exchange {
                    shared: s.clone(),
                    state: State::Reading {
                        body,
                        chunk: Bytes::new(),
                    },
                }))
            }
            Service::UploadPack => {
                let base = lock(&s.base)
                    .clone()
                    .unwrap_or_else(|| credentials(url).0.trim_end_matches('/').to_string());
                Ok(Box::new(Exchange {
                    shared: s.clone(),
                    state: State::Writing {
                        url: format!("{base}/git-upload-pack"),
                        body: Vec::new(),
                    },
                }))
            }
            Service::ReceivePackLs | Service::ReceivePack => Err(git_err(
                "nemoclaw only fetches from git sources; it never pushes",
            )),
        }
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

impl Shared {
    fn request(
        &self,
        method: Method,
        url: &str,
        body: Vec<u8>,
    ) -> Result<hyper::Response<Incoming>, String> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(url)
            .header(header::USER_AGENT, USER_AGENT)
            .header("Pragma", "no-cache");
        if method == Method::POST {
            req = req
                .header(header::CONTENT_TYPE, REQUEST)
                .header(header::ACCEPT, RESULT);
        } else {
            req = req.header(header::ACCEPT, "*/*");
        }
        if let Some((host, value)) = lock(&self.auth).as_ref() {
            if host_of(url) == host {
                req = req.header(header::AUTHORIZATION, value.as_str());
            }
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("bad URL {}: {e}", redact(url)))?;
        let client = &self.client;
        let answer = self
            .rt
            .block_on(async { tokio::time::timeout(IDLE_TIMEOUT, client.request(req)).await });
        match answer {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(format!(
                "{} {}: {}",
                method,
                redact(url),
                crate::error_chain(&e)
            )),
            Err(_) => Err(format!(
                "{} {}: no response in {}s",
                method,
                redact(url),
                IDLE_TIMEOUT.as_secs()
            )),
        }
    }

    /// The ref advertisement, following redirects; returns the URL it finally came from.
    fn get_refs(&self, mut url: String) -> Result<(String, Incoming), git2::Error> {
        for _ in 0..=MAX_REDIRECTS {
            let resp = self
                .request(Method::GET, &url, Vec::new())
                .map_err(git_err)?;
            let status = resp.status();
            if status.is_redirection() {
                let Some(loc) = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                else {
                    return Err(git_err(format!(
                        "{}: {status} without a Location",
                        redact(&url)
                    )));
                };
                url = resolve_location(&url, loc)?;
                continue;
            }
            check(&url, status, resp.headers(), ADVERTISEMENT)?;
            return Ok((url, resp.into_body()));
        }
        Err(git_err(format!(
            "{}: more than {MAX_REDIRECTS} redirects",
            redact(&url)
        )))
    }
}

fn resolve_location(from: &str, loc: &str) -> Result<String, git2::Error> {
    let next = if loc.starts_with("https://") {
        loc.to_string()
    } else if loc.starts_with('/') && !loc.starts_with("//") {
        let scheme_host = &from[..from.find("://").map_or(0, |i| i + 3) + host_of(from).len()];
        format!("{scheme_host}{loc}")
    } else {
        return Err(git_err(format!(
            "{}: redirected to `{}`, which is not an https URL",
            redact(from),
            redact(loc)
        )));
    };
    Ok(next)
}

fn check(
    url: &str,
    status: StatusCode,
    headers: &hyper::HeaderMap,
    want: &str,
) -> Result<(), git2::Error> {
    let url = redact(url);
    match status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(git_err(format!(
                "{url}: {status}: the repository needs credentials (https://USER:TOKEN@host/...) or refused them"
            )))
        }
        StatusCode::NOT_FOUND => {
            return Err(git_err(format!("{url}: {status}: no such repository")))
        }
        s => return Err(git_err(format!("{url}: the server answered {s}"))),
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.starts_with(want) {
        return Err(git_err(format!(
            "{url}: answered `{ctype}` instead of `{want}`: not a git smart-HTTP server (the dumb HTTP protocol is not supported)"
        )));
    }
    Ok(())
}

/// One request/response: libgit2 writes the request body, then reads the response body.
struct Exchange {
    shared: Arc<Shared>,
    state: State,
}

enum State {
    Writing { url: String, body: Vec<u8> },
    Reading { body: Incoming, chunk: Bytes },
    Failed,
}

impl Read for Exchange {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let State::Writing { .. } = self.state {
            let State::Writing { url, body } = std::mem::replace(&mut self.state, State::Failed)
            else {
                unreachable!()
            };
            let resp = self
                .shared
                .request(Method::POST, &url, body)
                .map_err(io::Error::other)?;
            check(&url, resp.status(), resp.headers(), RESULT)
                .map_err(|e| io::Error::other(e.message().to_string()))?;
            self.state = State::Reading {
                body: resp.into_body(),
                chunk: Bytes::new(),
            };
        }
        let State::Reading { body, chunk } = &mut self.state else {
            return Err(io::Error::other("the request failed earlier"));
        };
        loop {
            if !chunk.is_empty() {
                let n = buf.len().min(chunk.len());
                buf[..n].copy_from_slice(&chunk.split_to(n));
                return Ok(n);
            }
            let next = self
                .shared
                .rt
                .block_on(async { tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await });
            match next {
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the server sent nothing for {}s", IDLE_TIMEOUT.as_secs()),
                    ))
                }
                Ok(None) => return Ok(0),
                Ok(Some(Err(e))) => return Err(io::Error::other(crate::error_chain(&e))),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        *chunk = data;
                    }
                }
            }
        }
    }
}

impl Write for Exchange {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.state {
            State::Writing { body, .. } => {
                body.extend_from_slice(data);
                Ok(data.len())
            }
            _ => Err(io::Error::other("git wrote after reading the answer")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_basic_auth_and_leave_the_url() {
        let (clean, auth) = credentials("https://bot:s3cr%3At@git.example.com/org/repo.git");
        assert_eq!(clean, "https://git.example.com/org/repo.git");
        let want = base64::engine::general_purpose::STANDARD.encode("bot:s3cr:t");
        assert_eq!(auth.unwrap(), format!("Basic {want}"));
        let (clean, auth) = credentials("https://git.example.com/a@b");
        assert_eq!(clean, "https://git.example.com/a@b");
        assert!(auth.is_none());
        let (_, auth) = credentials("https://ghp_token@github.com/o/r");
        let want = base64::engine::general_purpose::STANDARD.encode("ghp_token:");
        assert_eq!(auth.unwrap(), format!("Basic {want}"));
    }

    #[test]
    fn redact_hides_credentials_only() {
        assert_eq!(
            redact("https://bot:tok@host.example/r.git"),
            "https://***@host.example/r.git"
        );
        assert_eq!(
            redact("https://host.example/r.git"),
            "https://host.example/r.git"
        );
        assert_eq!(redact("file:///srv/r.git"), "file:///srv/r.git");
        assert_eq!(
            redact("https://host.example/p@th"),
            "https://host.example/p@th"
        );
    }

    #[test]
    fn redirects_stay_on_https() {
        let from = "https://a.example/r.git/info/refs?service=git-upload-pack";
        assert_eq!(
            resolve_location(from, "/moved/r.git/info/refs?service=git-upload-pack").unwrap(),
            "https://a.example/moved/r.git/info/refs?service=git-upload-pack"
        );
        assert_eq!(
            resolve_location(from, "https://b.example/x").unwrap(),
            "https://b.example/x"
        );
        assert!(resolve_location(from, "http://b.example/x").is_err());
        assert!(resolve_location(from, "//b.example/x").is_err());
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
