//! Git sources over https, end to end: `nemoclaw plan --git https://...` against a real smart
//! HTTP git server on loopback (hyper + rustls in front of `git upload-pack --stateless-rpc`,
//! what `git http-backend` runs), with a private CA given through NEMOCLAW_CA_FILE. Covers
//! the certificate check, credentials in the URL (sent as Basic auth, never printed), a
//! redirect, an incremental fetch of a new commit, and the refusal of plain http.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls;

mod git_support;
use git_support::git;

const TOKEN: &str = "tok-3f9d2c7a41";

fn nemoclaw(home: &Path, ca: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nemoclaw"));
    c.args(args).env("NEMOCLAW_HOME", home);
    match ca {
        Some(ca) => c.env("NEMOCLAW_CA_FILE", ca),
        None => c.env_remove("NEMOCLAW_CA_FILE"),
    };
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn head(dir: &Path) -> String {
    let o = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn blueprint(name: &str, version: u32) -> String {
    format!("apiVersion: nemoclaw.dev/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n  version: {version}\nagent:\n  type: demo\n")
}

/// What the server saw: (method, path and query, Authorization header).
type Seen = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

struct Server {
    addr: SocketAddr,
    seen: Seen,
    ca_pem: PathBuf,
    _rt: tokio::runtime::Runtime,
}

/// Serves `<root>/<name>.git` repositories: `public.git` to anyone, `private.git` only with
/// Basic `bot:TOKEN`; `/old.git/...` redirects to `/public.git/...`.
fn serve(root: PathBuf, tmp: &Path) -> Server {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
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
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let (seen2, root) = (seen.clone(), Arc::new(root));
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen, root) = (acceptor.clone(), seen2.clone(), root.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(move |req| handle(req, seen.clone(), root.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Server {
        addr,
        seen,
        ca_pem,
        _rt: rt,
    }
}

async fn handle(
    req: Request<Incoming>,
    seen: Seen,
    root: Arc<PathBuf>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let auth = req
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    seen.lock()
        .unwrap()
        .push((req.method().to_string(), pq.clone(), auth.clone()));
    let reply = |status: StatusCode, ctype: &str, body: Vec<u8>| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .unwrap())
    };
    if let Some(rest) = path.strip_prefix("/old.git/") {
        let q = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        return Ok(Response::builder()
            .status(StatusCode::MOVED_PERMANENTLY)
            .header("location", format!("/public.git/{rest}{q}"))
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    let Some((repo, action)) = path.strip_prefix('/').and_then(|p| p.split_once(".git/")) else {
        return reply(StatusCode::NOT_FOUND, "text/plain", b"no".to_vec());
    };
    if repo == "private" {
        let want = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("bot:{TOKEN}")
            )
        );
        if auth.as_deref() != Some(want.as_str()) {
            return reply(StatusCode::UNAUTHORIZED, "text/plain", b"who?".to_vec());
        }
    }
    let dir = root.join(format!("{repo}.git"));
    if !dir.is_dir() {
        return reply(StatusCode::NOT_FOUND, "text/plain", b"no repo".to_vec());
    }
    match action {
        "info/refs" => {
            let out = upload_pack(&dir, true, Vec::new()).await;
            let mut body = b"001e# service=git-upload-pack\n0000".to_vec();
            body.extend(out);
            reply(
                StatusCode::OK,
                "application/x-git-upload-pack-advertisement",
                body,
            )
        }
        "git-upload-pack" => {
            let input = req.into_body().collect().await.unwrap().to_bytes().to_vec();
            let out = upload_pack(&dir, false, input).await;
            reply(StatusCode::OK, "application/x-git-upload-pack-result", out)
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", b"no".to_vec()),
    }
}

async fn upload_pack(dir: &Path, advertise: bool, input: Vec<u8>) -> Vec<u8> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("upload-pack").arg("--stateless-rpc");
    if advertise {
        cmd.arg("--advertise-refs");
    }
    let mut child = cmd
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&input).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    out.stdout
}

struct Fixture {
    tmp: tempfile::TempDir,
    work: PathBuf,
    server: Server,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir_all(work.join("agents")).unwrap();
        std::fs::write(work.join("agents/a.yaml"), blueprint("over-https", 1)).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["add", "."]);
        git(&work, &["commit", "-q", "-m", "c1"]);
        let served = tmp.path().join("served");
        std::fs::create_dir_all(&served).unwrap();
        for name in ["public.git", "private.git"] {
            git(
                tmp.path(),
                &[
                    "clone",
                    "-q",
                    "--bare",
                    work.to_str().unwrap(),
                    served.join(name).to_str().unwrap(),
                ],
            );
        }
        let server = serve(served, tmp.path());
        Fixture { tmp, work, server }
    }

    fn url(&self, repo: &str) -> String {
        format!("https://127.0.0.1:{}/{repo}.git", self.server.addr.port())
    }

    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    fn plan(&self, url: &str, ca: bool) -> Output {
        nemoclaw(
            &self.home(),
            ca.then_some(self.server.ca_pem.as_path()),
            &[
                "plan", "--git", url, "--ref", "main", "--path", "agents", "--json",
            ],
        )
    }

    fn push(&self, repo: &str) {
        let to = self.tmp.path().join("served").join(format!("{repo}.git"));
        git(&self.work, &["push", "-q", to.to_str().unwrap(), "main"]);
    }
}

fn commit_of(o: &Output) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)));
    v["source"]["commit"].as_str().unwrap().to_string()
}

#[test]
fn fetches_over_https_from_a_private_ca_and_follows_new_commits() {
    let f = Fixture::new();
    let url = f.url("public");
    let o = f.plan(&url, true);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(commit_of(&o), head(&f.work));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["changes"][0]["name"], "over-https");
    assert_eq!(v["source"]["location"], url);
    // Both requests of the smart protocol went to the server, the pack request as a POST.
    let seen = f.server.seen.lock().unwrap().clone();
    assert!(seen
        .iter()
        .any(|(m, p, _)| m == "GET" && p == "/public.git/info/refs?service=git-upload-pack"));
    assert!(seen
        .iter()
        .any(|(m, p, _)| m == "POST" && p == "/public.git/git-upload-pack"));

    // A new commit: the cached repository fetches only what changed and moves to it.
    std::fs::write(f.work.join("agents/a.yaml"), blueprint("over-https", 2)).unwrap();
    git(&f.work, &["commit", "-q", "-am", "c2"]);
    f.push("public");
    let o = f.plan(&url, true);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(commit_of(&o), head(&f.work));
}

#[test]
fn an_unknown_certificate_authority_is_refused() {
    let f = Fixture::new();
    let o = f.plan(&f.url("public"), false);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("fetch failed"), "{t}");
    assert!(t.to_lowercase().contains("certificate"), "{t}");
    assert!(
        f.server.seen.lock().unwrap().is_empty(),
        "no request may pass an untrusted TLS handshake"
    );
}

#[test]
fn credentials_in_the_url_are_sent_as_basic_auth_and_never_shown() {
    let f = Fixture::new();
    let base = f.url("private");
    let with_token = base.replacen("https://", &format!("https://bot:{TOKEN}@"), 1);
    let o = f.plan(&with_token, true);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!text(&o).contains(TOKEN), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["source"]["location"],
        base.replacen("https://", "https://***@", 1)
    );

    // Without credentials, or with wrong ones: a clear refusal that names neither.
    let o = f.plan(&base, true);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("needs credentials"), "{}", text(&o));
    let wrong = base.replacen("https://", "https://bot:wrong-secret-value@", 1);
    let o = f.plan(&wrong, true);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("401"), "{}", text(&o));
    assert!(!text(&o).contains("wrong-secret-value"), "{}", text(&o));

    // Nothing under the home holds the token (records, plans, caches' config).
    let mut stack = vec![f.home()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                let hay = String::from_utf8_lossy(&bytes);
                assert!(!hay.contains(TOKEN), "{} holds the token", p.display());
            }
        }
    }
}

#[test]
fn a_redirect_is_followed_and_the_pack_comes_from_where_the_refs_came_from() {
    let f = Fixture::new();
    let o = f.plan(&f.url("old"), true);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(commit_of(&o), head(&f.work));
    let seen = f.server.seen.lock().unwrap().clone();
    assert!(seen
        .iter()
        .any(|(m, p, _)| m == "POST" && p == "/public.git/git-upload-pack"));
    assert!(
        !seen
            .iter()
            .any(|(_, p, _)| p.starts_with("/old.git/git-upload-pack")),
        "{seen:?}"
    );
}

#[test]
fn plain_http_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let o = nemoclaw(
        &tmp.path().join("home"),
        None,
        &[
            "plan",
            "--git",
            "http://127.0.0.1:9/repo.git",
            "--ref",
            "main",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("plain http is refused"), "{}", text(&o));
}

#[test]
fn a_saved_plan_holds_no_credentials_and_apply_asks_for_them_again() {
    let f = Fixture::new();
    let base = f.url("private");
    let with_token = base.replacen("https://", &format!("https://bot:{TOKEN}@"), 1);
    let planfile = f.tmp.path().join("plan.json");
    let o = nemoclaw(
        &f.home(),
        Some(&f.server.ca_pem),
        &[
            "plan",
            "--git",
            &with_token,
            "--ref",
            "main",
            "--path",
            "agents",
            "-o",
            planfile.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let saved = std::fs::read_to_string(&planfile).unwrap();
    assert!(!saved.contains(TOKEN), "the plan file holds the token");
    assert!(saved.contains("https://***@127.0.0.1"), "{saved}");

    // Applying it without the URL: a clear refusal before anything changes.
    let apply = |extra: &[&str]| {
        let mut args = vec!["apply", planfile.to_str().unwrap()];
        args.extend_from_slice(extra);
        nemoclaw(&f.home(), Some(&f.server.ca_pem), &args)
    };
    let o = apply(&[]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("pass the same URL again with --git"),
        "{}",
        text(&o)
    );
    // Another repository's URL is not accepted in its place.
    let other = f
        .url("public")
        .replacen("https://", &format!("https://bot:{TOKEN}@"), 1);
    let o = apply(&["--git", &other]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("is not the saved plan's source"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains(TOKEN), "{}", text(&o));
}
