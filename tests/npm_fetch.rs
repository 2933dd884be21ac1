#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "tests"
)]
//! `nemoclaw __npm-fetch PKG@VERSION DIR` end to end against a local npm registry: a hyper +
//! rustls server on 127.0.0.1 with an rcgen certificate (trusted through NEMOCLAW_CA_FILE)
//! serving packuments and tarballs built here, found through NPM_CONFIG_REGISTRY; and a CONNECT
//! proxy for HTTPS_PROXY. Covers the good case (files, modes, symlinks, progress), a wrong
//! integrity, escaping entries, a missing version, and the proxy (tunnel and refusal).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// Path -> body, 404 for the rest.
type Routes = Arc<Mutex<HashMap<String, Vec<u8>>>>;

struct Registry {
    addr: SocketAddr,
    routes: Routes,
    ca_pem: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Registry {
    fn url(&self) -> String {
        format!("https://{}/", self.addr)
    }

    /// Serves `name@version` with `tgz`; the packument's integrity is `integrity` or the real one.
    fn publish(&self, name: &str, version: &str, tgz: Vec<u8>, integrity: Option<&str>) {
        let real = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&tgz))
        );
        let tarball_path = format!("/{name}/-/{name}-{version}.tgz");
        let packument = serde_json::json!({
            "name": name, "version": version,
            "dist": {
                "tarball": format!("https://{}{tarball_path}", self.addr),
                "integrity": integrity.unwrap_or(&real),
                "shasum": "0000",
            },
        });
        let mut r = self.routes.lock().unwrap();
        r.insert(
            format!("/{name}/{version}"),
            packument.to_string().into_bytes(),
        );
        r.insert(tarball_path, tgz);
    }
}

fn tls_pair(tmp: &Path) -> (PathBuf, tokio_rustls::TlsAcceptor) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params
        .signed_by(&key, &rcgen::Issuer::new(ca_params, ca_key))
        .unwrap();
    let ca_pem = tmp.join("ca.pem");
    std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    (ca_pem, tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

fn registry(tmp: &Path) -> Registry {
    let (ca_pem, acceptor) = tls_pair(tmp);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let routes: Routes = Arc::default();
    let served = routes.clone();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, routes) = (acceptor.clone(), served.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req| answer(req, routes.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Registry {
        addr,
        routes,
        ca_pem,
        rt,
    }
}

async fn answer(
    req: Request<Incoming>,
    routes: Routes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let found = routes.lock().unwrap().get(req.uri().path()).cloned();
    let (status, body) = match found {
        Some(b) => (200, b),
        None => (404, br#"{"error":"Not found"}"#.to_vec()),
    };
    Ok(Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body)))
        .unwrap())
}

/// A CONNECT proxy on loopback that records each target; it tunnels when `allow`, else 403.
fn proxy(rt: &tokio::runtime::Runtime, allow: bool) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    rt.spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    head.push(s.read_u8().await.unwrap());
                }
                let head = String::from_utf8(head).unwrap();
                let target = head.split_whitespace().nth(1).unwrap().to_string();
                log.lock()
                    .unwrap()
                    .push(head.lines().next().unwrap().to_string());
                if !allow {
                    let _ = s
                        .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let mut up = tokio::net::TcpStream::connect(target).await.unwrap();
                s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            });
        }
    });
    (addr, seen)
}

/// One tar entry: its raw path (written byte for byte, `..` included), kind and content.
enum Item<'a> {
    File(&'a str, u32, &'a str),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

fn raw_header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h
}

fn tgz(items: &[Item]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for item in items {
        let (mut h, data): (tar::Header, &[u8]) = match item {
            Item::File(p, mode, text) => (
                raw_header(p, tar::EntryType::Regular, *mode, text.len() as u64),
                text.as_bytes(),
            ),
            Item::Dir(p) => (raw_header(p, tar::EntryType::Directory, 0o755, 0), b""),
            Item::Symlink(p, target) => {
                let mut h = raw_header(p, tar::EntryType::Symlink, 0o777, 0);
                h.as_gnu_mut().unwrap().linkname[..target.len()].copy_from_slice(target.as_bytes());
                (h, b"")
            }
        };
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn good_package() -> Vec<u8> {
    tgz(&[
        Item::Dir("package/"),
        Item::File("package/package.json", 0o644, r#"{"name":"tool"}"#),
        Item::File("package/bin/tool", 0o755, "#!/bin/sh\necho tool 1.0.0\n"),
        Item::File("package/lib/data.txt", 0o600, "data\n"),
        Item::Symlink("package/bin/data", "../lib/data.txt"),
    ])
}

fn fetch(reg: &Registry, spec: &str, dir: &Path, proxy: Option<SocketAddr>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nemoclaw"));
    c.args(["__npm-fetch", spec])
        .arg(dir)
        .env("NPM_CONFIG_REGISTRY", reg.url())
        .env("NEMOCLAW_CA_FILE", &reg.ca_pem);
    for v in [
        "npm_config_registry",
        "NO_PROXY",
        "no_proxy",
        "https_proxy",
        "HTTPS_PROXY",
    ] {
        c.env_remove(v);
    }
    if let Some(p) = proxy {
        c.env("HTTPS_PROXY", format!("http://{p}"));
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

#[test]
fn a_good_package_unpacks_with_its_modes_and_links() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    reg.publish("tool", "1.0.0", good_package(), None);
    let dir = tmp.path().join("out/tool");
    let o = fetch(&reg, "tool@1.0.0", &dir, None);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    for step in [
        "resolving tool@1.0.0",
        "downloading https://",
        "verified sha512",
        "unpacked 4 files",
    ] {
        assert!(err.contains(step), "no {step:?} in {err}");
    }
    let run = Command::new(dir.join("bin/tool")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "tool 1.0.0\n");
    let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("bin/tool"), 0o755);
    assert_eq!(mode("lib/data.txt"), 0o644, "files are always readable");
    assert_eq!(
        std::fs::read_to_string(dir.join("bin/data")).unwrap(),
        "data\n"
    );
    assert_eq!(
        std::fs::read_link(dir.join("bin/data")).unwrap(),
        Path::new("../lib/data.txt")
    );
    let mut top = entries(&dir);
    top.sort();
    assert_eq!(
        top,
        ["bin", "lib", "package.json"],
        "no staging dir is left"
    );

    let again = fetch(&reg, "tool@1.0.0", &dir, None);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("not an empty directory"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn a_wrong_integrity_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let other = base64::engine::general_purpose::STANDARD.encode(Sha512::digest(b"other"));
    reg.publish(
        "tool",
        "1.0.0",
        good_package(),
        Some(&format!("sha512-{other}")),
    );
    reg.publish("old", "0.1.0", good_package(), Some("sha1-AAAA"));
    let absent = tmp.path().join("absent");
    let o = fetch(&reg, "tool@1.0.0", &absent, None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("does not match dist.integrity"),
        "{}",
        stderr(&o)
    );
    assert!(!absent.exists());
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = fetch(&reg, "old@0.1.0", &empty, None);
    assert!(stderr(&o).contains("has no sha512 hash"), "{}", stderr(&o));
    assert!(entries(&empty).is_empty());
}

#[test]
fn entries_that_would_leave_the_directory_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let cases: [(&str, Vec<Item>, &str); 5] = [
        (
            "dotdot",
            vec![Item::File("package/../evil", 0o644, "x")],
            "an absolute path or `..`",
        ),
        (
            "absolute",
            vec![Item::File("/tmp/evil", 0o644, "x")],
            "an absolute path or `..`",
        ),
        (
            "abslink",
            vec![Item::Symlink("package/etc", "/etc")],
            "a symlink that leaves the directory",
        ),
        (
            "uplink",
            vec![Item::Symlink("package/bin/up", "../../../evil")],
            "a symlink that leaves the directory",
        ),
        (
            "through",
            vec![
                Item::Dir("package/lib/"),
                Item::Symlink("package/l", "lib"),
                Item::File("package/l/evil", 0o644, "x"),
            ],
            "a path through a symlink",
        ),
    ];
    for (name, items, why) in cases {
        // A good file first: a refusal must take it away too.
        let mut all = vec![Item::File("package/ok.txt", 0o644, "ok")];
        all.extend(items);
        reg.publish(name, "1.0.0", tgz(&all), None);
        let dir = tmp.path().join("out").join(name);
        let o = fetch(&reg, &format!("{name}@1.0.0"), &dir, None);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(why), "{name}: {}", stderr(&o));
        assert!(!dir.exists(), "{name}: {:?}", entries(&dir));
    }
    assert_eq!(entries(&tmp.path().join("out")), Vec::<String>::new());
    assert!(!tmp.path().join("evil").exists());
}

#[test]
fn a_missing_version_says_npm_has_none() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let dir = tmp.path().join("out");
    let o = fetch(&reg, "nothing@9.9.9", &dir, None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("npm has no nothing@9.9.9"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.exists());
    let bad = fetch(&reg, "no-version", &dir, None);
    assert_eq!(bad.status.code(), Some(64), "{}", stderr(&bad));
}

#[test]
fn https_proxy_is_used_with_connect_and_its_refusal_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    reg.publish("tool", "1.0.0", good_package(), None);
    let (open, seen) = proxy(&reg.rt, true);
    let dir = tmp.path().join("via-proxy");
    let o = fetch(&reg, "tool@1.0.0", &dir, Some(open));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.join("bin/tool").exists());
    let want = format!("CONNECT {} HTTP/1.1", reg.addr);
    assert_eq!(
        *seen.lock().unwrap(),
        [want.clone(), want],
        "packument and tarball"
    );

    let (shut, _) = proxy(&reg.rt, false);
    let o = fetch(&reg, "tool@1.0.0", &tmp.path().join("refused"), Some(shut));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("egress proxy refused {}", reg.addr)),
        "{err}"
    );
    assert!(err.contains("403") && err.contains("`npm` preset"), "{err}");
}
