//! Keys and guards over real HTTP: the key canary never reaches a log, an error or the agent;
//! Rhai guards deny and rewrite; the built-in secret guard refuses held keys and redacts
//! private and cloud keys before a backend sees them.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

mod inference_support;

use inference_support::*;
use serde_json::json;

const REAL: &str = "real-key-CANARY-7f3a9b2c1d";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_canary_never_reaches_logs_errors_or_the_agent() {
    let careless = fake(Mode::Fail, REAL).await;
    let up = fake(Mode::Ok, REAL).await;
    let inf = inference(json!({
        "backends": [
            {"name": "careless", "kind": "openai", "url": careless.url(), "apiKey": {"env": "K"}},
            {"name": "up", "kind": "openai", "url": up.url(), "apiKey": {"env": "K"}},
        ],
        "routes": [{"match": "m-1", "backends": ["careless", "up"]}, {"match": "m-2", "backends": ["careless"]}],
        "allowedModels": ["m-1", "m-2"],
        "logBodies": true,
    }));
    let gw = gateway(inf, &creds(&[("K", REAL)])).await;
    let mut answers = String::new();
    for body in [
        chat("m-1", "hello"),
        chat("m-2", "hello"),
        chat("m-1", &format!("my key is {REAL}")),
        json!({"model": "m-1", "stream": true, "messages": [{"role": "user", "content": "s"}]})
            .to_string(),
        "{broken".to_string(),
    ] {
        let r = post(gw.addr, "/v1/chat/completions", &body).await;
        answers.push_str(&format!("{:?}{}", r.headers, r.body));
    }
    assert!(
        careless
            .requests()
            .iter()
            .any(|s| s.auth.as_deref() == Some(&format!("Bearer {REAL}"))),
        "the canary was really used"
    );
    assert!(
        !answers.contains(REAL),
        "an answer to the agent carried the key"
    );
    assert!(!format!("{:?}", gw.router).contains(REAL));
    let lines = gw.log_lines(5).await;
    assert!(
        lines.iter().any(|l| l["request_body"].is_string()),
        "bodies are logged when asked"
    );
    let files = files_under(&gw.dir);
    assert!(!files.is_empty());
    for f in files {
        let text = std::fs::read(&f).unwrap();
        assert!(
            memchr_find(&text, REAL.as_bytes()).is_none(),
            "{} contains the key",
            f.display()
        );
    }
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guards_deny_a_private_key_and_redact_an_email_and_the_secret_guard_works() {
    let up = fake(Mode::Ok, REAL).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("no-keys.rhai"),
        r#"if prompt.contains("PRIVATE KEY-----") { deny("a private key is in the prompt") } else { allow() }"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("emails.rhai"),
        r#"
        let changed = false;
        for i in 0..request.messages.len() {
            let c = request.messages[i].content;
            if type_of(c) == "string" && regex_match(c, "[\\w.+-]+@[\\w-]+\\.[\\w.-]+") {
                request.messages[i].content = regex_replace(c, "[\\w.+-]+@[\\w-]+\\.[\\w.-]+", "[email]");
                changed = true;
            }
        }
        if changed { rewrite(request) } else { allow() }
        "#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("answers.rhai"),
        r#"
        if phase == "response" && prompt.contains("project-aurora") {
            let c = response.choices[0].message.content;
            c.replace("project-aurora", "[codename]"); // in place
            response.choices[0].message.content = c;
            rewrite(response)
        } else { allow() }
        "#,
    )
    .unwrap();
    let mut v = one_backend(&up.url(), json!({}));
    v["guards"] = json!([{"script": "no-keys.rhai"}, {"script": "emails.rhai"}, {"script": "answers.rhai", "onResponse": true}]);
    let inf = inference(v);
    let mut cfg = nemoclaw::gateway::inference::RouterConfig::new("test", inf, dir.path());
    cfg.log_dir = Some(dir.path().join("logs"));
    let router =
        nemoclaw::gateway::inference::Router::build(cfg, &creds(&[("UP_KEY", REAL)])).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { router.serve(listener).await });

    let pem =
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\n-----END RSA PRIVATE KEY-----";
    let r = post(
        addr,
        "/v1/chat/completions",
        &chat("m-1", &format!("store this: {pem}")),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "guard_denied");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-keys.rhai: a private key is in the prompt"));

    let r = post(
        addr,
        "/v1/chat/completions",
        &chat("m-1", "write to alice.smith@example.com today"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        up.requests().last().unwrap().body["messages"][0]["content"],
        "write to [email] today"
    );

    // A response guard rewrites the answer before the agent sees it.
    let r = post(
        addr,
        "/v1/chat/completions",
        &chat("m-1", "status of project-aurora?"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "echo: status of [codename]?"
    );
    assert_eq!(
        up.requests().last().unwrap().body["messages"][0]["content"],
        "status of project-aurora?"
    );

    // A stream would pass the response guard by: refused, with what to do instead.
    let asked = up.requests().len();
    let streamed = json!({"model": "m-1", "stream": true, "messages": [{"role": "user", "content": "status?"}]});
    let r = post(addr, "/v1/chat/completions", &streamed.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "stream_with_response_guards");
    assert_eq!(r.json()["error"]["param"], "stream");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"stream\": false"),
        "{}",
        r.body
    );
    assert_eq!(
        up.requests().len(),
        asked,
        "the refused stream never reached the backend"
    );

    // The log is written by its own thread: wait for the line.
    let file = dir.path().join("logs/inference.jsonl");
    let mut log = String::new();
    for _ in 0..100 {
        log = std::fs::read_to_string(&file).unwrap_or_default();
        if log.lines().count() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(log.contains("emails.rhai: rewrote the request"), "{log}");
    assert!(log.contains("answers.rhai: rewrote the response"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_guard_refuses_held_keys_and_redacts_private_and_cloud_keys() {
    let up = fake(Mode::Ok, REAL).await;
    let gw = gateway(
        inference(one_backend(&up.url(), json!({}))),
        &creds(&[("UP_KEY", REAL)]),
    )
    .await;
    let addr = gw.addr;
    let r = post(
        addr,
        "/v1/chat/completions",
        &chat("m-1", &format!("exfiltrate {REAL}")),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (403, Some("secret_guard"))
    );
    let before = up.requests().len();
    assert_eq!(before, 0);
    let body = json!({"model": "m-1", "messages": [
        {"role": "user", "content": "read the file"},
        {"role": "tool", "tool_call_id": "1", "content": format!("id_ed25519:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1r\n-----END OPENSSH PRIVATE KEY-----\nand AKIAIOSFODNN7EXAMPLE")},
    ]});
    let r = post(addr, "/v1/chat/completions", &body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = up.requests();
    assert_eq!(
        seen.len(),
        before + 1,
        "the held key never reached the backend"
    );
    let sent = seen.last().unwrap().body["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        sent,
        "id_ed25519:\n[REDACTED PRIVATE KEY]\nand [REDACTED ACCESS KEY]"
    );
    let lines = gw.log_lines(2).await;
    assert_eq!(lines[0]["error"], "secret_guard");
    assert_eq!(
        lines[1]["guards"][0],
        "secret guard redacted 1 private key(s) and 1 access key(s)"
    );
}
