//! HTTPS GETs for the npm fetch: rustls over [`crate::tls::client_config`] (the Mozilla roots
//! plus `NEMOCLAW_CA_FILE`), through the `HTTPS_PROXY` proxy with CONNECT when one is set (a
//! sandbox's egress proxy) unless `NO_PROXY` names the host, else directly. Redirects are
//! followed (https only); one connection per request.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{header, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest wait for a response head or for the next piece of a body.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 5;
/// The most a proxy's answer to CONNECT may hold before its blank line.
const MAX_PROXY_HEAD: usize = 16 << 10;
const USER_AGENT: &str = concat!("nemoclaw/", env!("CARGO_PKG_VERSION"), " (npm fetch)");
const PROXY_ENV: [&str; 2] = ["HTTPS_PROXY", "https_proxy"];
const NO_PROXY_ENV: [&str; 2] = ["NO_PROXY", "no_proxy"];

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url:?} is not an https:// URL")]
    NotHttps { url: String },
    #[error("{url:?} is not a URL")]
    BadUrl {
        url: String,
        #[source]
        source: hyper::http::Error,
    },
    #[error("the proxy {0:?} (HTTPS_PROXY) is not http://HOST:PORT")]
    BadProxy(String),
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("the proxy {proxy} refused CONNECT {target}: {answer}")]
    ProxyRefused {
        proxy: String,
        target: String,
        answer: String,
    },
    #[error(transparent)]
    TlsSetup(#[from] crate::tls::TlsError),
    #[error("TLS with {host}")]
    Tls {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{url}")]
    Http {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{url}: no answer for {} s", IDLE_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("{url}: more than {MAX_REDIRECTS} redirects")]
    Redirects { url: String },
    #[error("{url}: larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
}

/// A response whose body is still to be read ([`Response::bytes`]).
pub struct Response {
    pub url: String,
    pub status: StatusCode,
    /// The declared `content-length`, if any.
    pub length: Option<u64>,
    location: Option<String>,
    body: Incoming,
}

impl Response {
    /// The whole body, refused past `limit` bytes.
    pub async fn bytes(mut self, limit: usize) -> Result<Bytes, HttpError> {
        let mut out = BytesMut::new();
        loop {
            let frame = tokio::time::timeout(IDLE_TIMEOUT, self.body.frame())
                .await
                .map_err(|_| HttpError::Timeout {
                    url: self.url.clone(),
                })?;
            let Some(frame) = frame else {
                return Ok(out.freeze());
            };
            let frame = frame.map_err(|source| HttpError::Http {
                url: self.url.clone(),
                source,
            })?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > limit {
                    return Err(HttpError::TooLarge {
                        url: self.url,
                        limit,
                    });
                }
                out.extend_from_slice(&data);
            }
        }
    }
}

/// Where connections go: a proxy (`host:port`) for the hosts `NO_PROXY` does not name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Route {
    proxy: Option<String>,
    no_proxy: Vec<String>,
}

impl Route {
    fn from_env() -> Result<Route, HttpError> {
        let var = |names: [&str; 2]| names.iter().find_map(|n| std::env::var(n).ok());
        let proxy = match var(PROXY_ENV).filter(|p| !p.trim().is_empty()) {
            Some(p) => Some(proxy_authority(&p)?),
            None => None,
        };
        let no_proxy = var(NO_PROXY_ENV)
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Ok(Route { proxy, no_proxy })
    }

    /// The proxy to tunnel through to `host`, if any.
    fn proxy_for(&self, host: &str) -> Option<&str> {
        let host = host.to_ascii_lowercase();
        let bypass = self.no_proxy.iter().any(|n| {
            n == "*"
                || host == *n
                || host
                    .strip_suffix(n.as_str())
                    .is_some_and(|h| h.ends_with('.'))
        });
        self.proxy.as_deref().filter(|_| !bypass)
    }
}

/// `host:port` of an `http://host[:port][/]` proxy URL (port 80 when absent).
fn proxy_authority(url: &str) -> Result<String, HttpError> {
    let bad = || HttpError::BadProxy(url.to_string());
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let uri: Uri = with_scheme.parse().map_err(|_| bad())?;
    let auth = uri.authority().ok_or_else(bad)?;
    if uri.scheme_str() != Some("http") || auth.as_str().contains('@') {
        return Err(bad());
    }
    Ok(format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80)))
}

/// An https client for a few GETs.
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    route: Route,
}

impl Client {
    /// From the environment: `NEMOCLAW_CA_FILE`, `HTTPS_PROXY`, `NO_PROXY`.
    pub fn from_env() -> Result<Client, HttpError> {
        let config = crate::tls::client_config(crate::tls::ca_file_from_env().as_deref())?;
        Ok(Client {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            route: Route::from_env()?,
        })
    }

    /// GET `url`, following redirects; the final response whatever its status.
    pub async fn get(&self, url: &str) -> Result<Response, HttpError> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let uri = https_uri(&url)?;
            let resp = self.get_once(&uri, &url).await?;
            match redirect_target(&resp, &uri) {
                Some(next) => url = next,
                None => return Ok(resp),
            }
        }
        Err(HttpError::Redirects { url })
    }

    async fn get_once(&self, uri: &Uri, url: &str) -> Result<Response, HttpError> {
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(443);
        let tcp = self.dial(host, port).await?;
        let tls = self.handshake(host, tcp).await?;
        let http_err = |source| HttpError::Http {
            url: url.to_string(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(http_err)?;
        tokio::spawn(conn);
        let req = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, uri.authority().map_or(host, |a| a.as_str()))
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::ACCEPT, "application/json, */*")
            .body(Empty::<Bytes>::new())
            .map_err(|source| HttpError::BadUrl {
                url: url.to_string(),
                source,
            })?;
        let resp = tokio::time::timeout(IDLE_TIMEOUT, sender.send_request(req))
            .await
            .map_err(|_| HttpError::Timeout { url: url.into() })?
            .map_err(http_err)?;
        Ok(Response {
            url: url.to_string(),
            status: resp.status(),
            length: content_length(resp.headers()),
            location: resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: resp.into_body(),
        })
    }

    /// A TCP connection to `host:port`, tunnelled through the proxy when there is one.
    async fn dial(&self, host: &str, port: u16) -> Result<TcpStream, HttpError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match self.route.proxy_for(bare) {
            Some(proxy) => {
                let mut s = connect(proxy).await?;
                tunnel(&mut s, proxy, &format!("{host}:{port}")).await?;
                Ok(s)
            }
            None => connect(&format!("{host}:{port}")).await,
        }
    }

    async fn handshake(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HttpError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let tls_err = |source| HttpError::Tls {
            host: host.to_string(),
            source,
        };
        let name = ServerName::try_from(bare.to_string())
            .map_err(|e| tls_err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(name, tcp))
            .await
            .map_err(|_| tls_err(io::ErrorKind::TimedOut.into()))?
            .map_err(tls_err)
    }
}

fn https_uri(url: &str) -> Result<Uri, HttpError> {
    let uri: Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| HttpError::BadUrl {
            url: url.to_string(),
            source: e.into(),
        })?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(HttpError::NotHttps {
            url: url.to_string(),
        });
    }
    Ok(uri)
}

/// The absolute URL a 3xx answer points to, if it is one.
fn redirect_target(resp: &Response, from: &Uri) -> Option<String> {
    if !resp.status.is_redirection() {
        return None;
    }
    let location = resp.location.as_deref()?;
    if location.contains("://") {
        return Some(location.to_string());
    }
    let origin = format!("https://{}", from.authority()?);
    Some(if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        let path = from.path();
        format!(
            "{origin}{}{location}",
            &path[..=path.rfind('/').unwrap_or(0)]
        )
    })
}

fn content_length(h: &hyper::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

async fn connect(addr: &str) -> Result<TcpStream, HttpError> {
    let err = |source| HttpError::Connect {
        addr: addr.to_string(),
        source,
    };
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| err(io::ErrorKind::TimedOut.into()))?
        .map_err(err)?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Asks the proxy on `s` for a tunnel to `target` (`host:port`) and reads its answer.
async fn tunnel(s: &mut TcpStream, proxy: &str, target: &str) -> Result<(), HttpError> {
    let io_err = |source| HttpError::Connect {
        addr: proxy.to_string(),
        source,
    };
    let ask =
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: {USER_AGENT}\r\n\r\n");
    s.write_all(ask.as_bytes()).await.map_err(io_err)?;
    let head = tokio::time::timeout(IDLE_TIMEOUT, read_head(s))
        .await
        .map_err(|_| io_err(io::ErrorKind::TimedOut.into()))?
        .map_err(io_err)?;
    let status_line = head.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) == Some("200") {
        return Ok(());
    }
    Err(HttpError::ProxyRefused {
        proxy: proxy.to_string(),
        target: target.to_string(),
        answer: status_line.to_string(),
    })
}

/// The proxy's answer up to its blank line, read byte by byte so nothing of the tunnel is taken.
async fn read_head(s: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_PROXY_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "answer too long",
            ));
        }
        head.push(s.read_u8().await?);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_become_authorities() {
        assert_eq!(
            proxy_authority("http://127.0.0.1:3128").unwrap(),
            "127.0.0.1:3128"
        );
        assert_eq!(proxy_authority("http://proxy/").unwrap(), "proxy:80");
        assert_eq!(proxy_authority("proxy:8080").unwrap(), "proxy:8080");
        assert!(proxy_authority("https://proxy:443").is_err());
        assert!(proxy_authority("http://u:p@proxy:1").is_err());
    }

    #[test]
    fn no_proxy_names_hosts_and_their_subdomains() {
        let r = Route {
            proxy: Some("p:1".into()),
            no_proxy: vec!["localhost".into(), "example.com".into()],
        };
        assert_eq!(r.proxy_for("registry.npmjs.org"), Some("p:1"));
        assert_eq!(r.proxy_for("LOCALHOST"), None);
        assert_eq!(r.proxy_for("a.example.com"), None);
        assert_eq!(r.proxy_for("notexample.com"), Some("p:1"));
        let all = Route {
            proxy: Some("p:1".into()),
            no_proxy: vec!["*".into()],
        };
        assert_eq!(all.proxy_for("x"), None);
        assert_eq!(Route::default().proxy_for("x"), None);
    }

    #[test]
    fn only_https_urls_are_fetched() {
        assert!(matches!(
            https_uri("http://x/"),
            Err(HttpError::NotHttps { .. })
        ));
        assert!(https_uri("https://registry.npmjs.org/a/1.0.0").is_ok());
    }
}
