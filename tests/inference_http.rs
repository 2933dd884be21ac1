//! The inference gateway over real HTTP, against fake backends that are real HTTP servers on
//! loopback: key injection, validation, malformed input, fallback, limits, streaming,
//! cancellation, guards, logging, reload.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "a test stops loudly at the first broken step"
)]

mod inference_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use inference_support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REAL: &str = "real-key-CANARY-7f3a9b2c1d";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholder_in_real_key_out_with_routing_and_defaults() {
    let up = fake(Mode::Ok, REAL).await;
    let gw = gateway(
        inference(one_backend(&up.url(), json!({}))),
        &creds(&[("UP_KEY", REAL)]),
    )
    .await;
    let r = post(
        gw.addr,
        "/v1/chat/completions",
        &chat("nim/meta/llama-3.1-8b", "hello"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .header("x-request-id")
        .is_some_and(|id| id.starts_with("test-")));
    assert_eq!(r.json()["choices"][0]["message"]["content"], "echo: hello");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].auth.as_deref(),
        Some(format!("Bearer {REAL}").as_str()),
        "the real key goes upstream"
    );
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(
        seen[0].body["model"], "meta/llama-3.1-8b",
        "the route's prefix is stripped"
    );
    assert_eq!(
        seen[0].body["max_tokens"], 256,
        "max_tokens is set to the limit when absent"
    );
    assert!(!r.body.contains(REAL));

    // Embeddings and the model list.
    let e = post(
        gw.addr,
        "/v1/embeddings",
        &json!({"model": "m-1", "input": "x"}).to_string(),
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.body);
    assert_eq!(e.json()["data"][0]["embedding"], json!([0.1, 0.2, 0.3]));
    let m = raw(
        gw.addr,
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let ids: Vec<_> = m.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["m-1"], "prefix entries are not listed");
    let lines = gw.log_lines(3).await;
    assert_eq!(lines[0]["backend"], "up");
    assert_eq!(lines[0]["upstream_model"], "meta/llama-3.1-8b");
    assert_eq!(
        (
            lines[0]["prompt_tokens"].as_u64(),
            lines[0]["completion_tokens"].as_u64()
        ),
        (Some(5), Some(7))
    );
    assert_eq!(lines[0]["id"], r.header("x-request-id").unwrap());
    assert!(lines[0]["ttft_ms"].as_f64().is_some() && lines[0]["latency_ms"].as_f64().is_some());
    assert!(gw.router.last_inference().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_use_the_openai_error_shape_and_name_the_blueprint_field() {
    let up = fake(Mode::Ok, REAL).await;
    let gw = gateway(
        inference(one_backend(&up.url(), json!({}))),
        &creds(&[("UP_KEY", REAL)]),
    )
    .await;
    let r = post(gw.addr, "/v1/chat/completions", &chat("gpt-4o", "hi")).await;
    assert_eq!(r.status, 403);
    let e = &r.json()["error"];
    assert_eq!(
        (e["type"].as_str(), e["param"].as_str(), e["code"].as_str()),
        (
            Some("permission_error"),
            Some("model"),
            Some("model_not_allowed")
        )
    );
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("inference.allowedModels"));

    let body = json!({"model": "m-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}).to_string();
    let r = post(gw.addr, "/v1/chat/completions", &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "max_tokens");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("inference.limits.maxTokens"));

    let body =
        json!({"model": "m-1", "messages": [{"role": "user", "content": "hi"}], "temperature": 2})
            .to_string();
    assert!(post(gw.addr, "/v1/chat/completions", &body)
        .await
        .body
        .contains("inference.limits.temperature"));
    let body = json!({"model": "m-1", "messages": [{"role": "user", "content": "hi"}], "n": 3})
        .to_string();
    assert!(post(gw.addr, "/v1/chat/completions", &body)
        .await
        .body
        .contains("inference.limits.maxChoices"));

    let r = post(gw.addr, "/v1/nope", "{}").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "unknown_url");
    let r = post(gw.addr, "/v1/messages", &chat("m-1", "hi")).await;
    assert_eq!(r.status, 400, "no anthropic backend: {}", r.body);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("anthropic"));
    assert!(
        up.requests().is_empty(),
        "nothing rejected reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_errors_and_the_gateway_keeps_serving() {
    let up = fake(Mode::Ok, REAL).await;
    let gw = gateway(
        inference(one_backend(&up.url(), json!({}))),
        &creds(&[("UP_KEY", REAL)]),
    )
    .await;
    let addr = gw.addr;

    // A slowloris client trickles its headers; it is cut off after the header timeout (1 s in
    // these tests) while others are served.
    let slow = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        loop {
            let wrote = s.write_all(b"X-Slow: 1\r\n").await;
            let closed = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
            if wrote.is_err()
                || matches!(closed, Ok(Ok(0)) | Ok(Err(_)))
                || matches!(closed, Ok(Ok(_)))
            {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "slowloris connection still open"
            );
        }
    });

    let r = post(
        addr,
        "/v1/chat/completions",
        "{\"model\": \"m-1\", \"messages\": [",
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    assert!(r.body.contains("not valid JSON"));

    let big = format!(
        "{{\"model\":\"m-1\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "a".repeat(20 << 20)
    );
    let r = post(addr, "/v1/chat/completions", &big).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("inference.limits.maxRequestSize"));
    // Without a Content-Length (chunked), the limit holds while reading.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, "b".repeat(1 << 20));
    for _ in 0..20 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    assert_eq!(read_response(&mut s).await.status, 413);

    // A large body under the limit (4 MiB by default) goes through.
    let ok = format!(
        "{{\"model\":\"m-1\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "c".repeat(3 << 20)
    );
    assert_eq!(post(addr, "/v1/chat/completions", &ok).await.status, 200);

    let req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";
    let r = raw(addr, req.as_bytes()).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    assert!(r.body.contains("application/json"));

    // A truncated body: Content-Length promises more than arrives before the client stops.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"model\":").await.unwrap();
    s.shutdown().await.unwrap();
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "truncated_body");

    // A body that stalls: answered 408 after the body timeout (2 s in these tests).
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{").await.unwrap();
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 408, "{}", r.body);

    let cut_after = slow.await.unwrap();
    assert!(
        cut_after < Duration::from_secs(4),
        "slowloris cut after {cut_after:?}"
    );
    let r = post(addr, "/v1/chat/completions", &chat("m-1", "still here?")).await;
    assert_eq!(r.status, 200, "the gateway still serves: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_on_5xx_and_timeout_then_502_when_all_fail() {
    let bad = fake(Mode::Fail, REAL).await;
    let slow = fake(Mode::Slow(Duration::from_secs(5)), REAL).await;
    let good = fake(Mode::Ok, REAL).await;
    let inf = inference(json!({
        "backends": [
            {"name": "bad", "kind": "openai", "url": bad.url(), "apiKey": {"env": "K"}},
            {"name": "slow", "kind": "openai", "url": slow.url(), "apiKey": {"env": "K"}, "timeout": "300ms"},
            {"name": "good", "kind": "openai", "url": good.url(), "apiKey": {"env": "K"}},
            {"name": "closed", "kind": "openai", "url": "http://127.0.0.1:9/v1", "apiKey": {"env": "K"}},
        ],
        "routes": [
            {"match": "m-1", "backends": ["bad", "slow", "good"]},
            {"match": "m-2", "backends": ["closed", "bad"]},
        ],
        "allowedModels": ["m-1", "m-2"],
    }));
    let gw = gateway(inf, &creds(&[("K", REAL)])).await;
    let t = Instant::now();
    let r = post(gw.addr, "/v1/chat/completions", &chat("m-1", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "the slow backend's 300ms timeout applies"
    );
    assert_eq!(
        (
            bad.requests().len(),
            slow.requests().len(),
            good.requests().len()
        ),
        (1, 1, 1)
    );
    let r = post(gw.addr, "/v1/chat/completions", &chat("m-2", "hi")).await;
    assert_eq!(r.status, 502, "{}", r.body);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("closed: connection failed") && msg.contains("bad: answered HTTP 500"),
        "{msg}"
    );
    assert!(
        !r.body.contains(REAL),
        "the key the careless backend echoed is not passed on"
    );
    let lines = gw.log_lines(2).await;
    assert_eq!(lines[0]["backend"], "good");
    assert_eq!(lines[0]["fallbacks"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_429_with_retry_after() {
    let up = fake(Mode::Ok, REAL).await;
    let gw = gateway(
        inference(one_backend(
            &up.url(),
            json!({"limits": {"requestsPerMinute": 2}}),
        )),
        &creds(&[("UP_KEY", REAL)]),
    )
    .await;
    assert_eq!(
        post(gw.addr, "/v1/chat/completions", &chat("m-1", "1"))
            .await
            .status,
        200
    );
    assert_eq!(
        post(gw.addr, "/v1/chat/completions", &chat("m-1", "2"))
            .await
            .status,
        200
    );
    let r = post(gw.addr, "/v1/chat/completions", &chat("m-1", "3")).await;
    assert_eq!(r.status, 429);
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert_eq!(r.json()["error"]["code"], "requests_per_minute_exceeded");

    // Tokens per minute: the fake reports 12 tokens per answer.
    let up2 = fake(Mode::Ok, REAL).await;
    let gw2 = gateway(
        inference(one_backend(
            &up2.url(),
            json!({"limits": {"tokensPerMinute": 20}}),
        )),
        &creds(&[("UP_KEY", REAL)]),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            post(gw2.addr, "/v1/chat/completions", &chat("m-1", "x"))
                .await
                .status,
            200
        );
    }
    let r = post(gw2.addr, "/v1/chat/completions", &chat("m-1", "x")).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (429, Some("tokens_per_minute_exceeded"))
    );
    assert!(r.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_budget_is_charged_from_usage_and_survives_a_restart() {
    let up = fake(Mode::Ok, REAL).await;
    let dir = tempfile::tempdir().unwrap();
    let inf = inference(one_backend(
        &up.url(),
        json!({"limits": {"tokensPerDay": 30}}),
    ));
    let c = creds(&[("UP_KEY", REAL)]);
    {
        let gw = gateway_in(inf.clone(), &c, dir.path(), None).await;
        // Streamed: usage comes from the final chunk the gateway asked for.
        let body =
            json!({"model": "m-1", "stream": true, "messages": [{"role": "user", "content": "s"}]})
                .to_string();
        let r = post(gw.addr, "/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200);
        assert!(r.body.contains("\"usage\""), "{}", r.body);
        assert_eq!(
            up.requests()[0].body["stream_options"]["include_usage"],
            true
        );
        assert_eq!(
            post(gw.addr, "/v1/chat/completions", &chat("m-1", "x"))
                .await
                .status,
            200
        );
        let lines = gw.log_lines(2).await;
        assert_eq!(lines[0]["completion_tokens"], 3);
        assert_eq!(gw.router.tokens_used_today(), Some(14 + 12));
        assert_eq!(
            post(gw.addr, "/v1/chat/completions", &chat("m-1", "x"))
                .await
                .status,
            200
        );
        let r = post(gw.addr, "/v1/chat/completions", &chat("m-1", "x")).await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (429, Some("tokens_per_day_exceeded"))
        );
        gw.router.flush().unwrap();
    }
    let gw = gateway_in(inf, &c, dir.path(), None).await;
    assert_eq!(gw.router.tokens_used_today(), Some(38));
    let r = post(gw.addr, "/v1/chat/completions", &chat("m-1", "x")).await;
    assert_eq!(r.status, 429, "the budget is still spent after a restart");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() <= 86_400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_pass_through_chunk_by_chunk_and_disconnect_cancels_upstream() {
    let up = fake(Mode::Ok, REAL).await;
    let gw = gateway(
        inference(one_backend(
            &up.url(),
            json!({"allowedModels": ["m-1", "slow-stream"]}),
        )),
        &creds(&[("UP_KEY", REAL)]),
    )
    .await;
    // 3 chunks 300 ms apart: the first must arrive well before the stream ends.
    let body =
        json!({"model": "m-1", "stream": true, "messages": [{"role": "user", "content": "s"}]})
            .to_string();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let req = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let t = Instant::now();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let mut got = String::new();
    while !got.contains("part0") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let first = t.elapsed();
    assert!(
        first < Duration::from_millis(250),
        "first chunk after {first:?}: the stream is buffered"
    );
    assert!(got.contains("text/event-stream"));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    let all = got + String::from_utf8_lossy(&rest).as_ref();
    assert!(all.contains("part2") && all.contains("[DONE]"));
    assert!(t.elapsed() >= Duration::from_millis(600));

    // The client goes away after the first chunk of a long stream: upstream is cancelled.
    let body = json!({"model": "slow-stream", "stream": true, "messages": [{"role": "user", "content": "s"}]}).to_string();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let req = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(n > 0);
    drop(s);
    let t = Instant::now();
    while up.cancelled.load(Ordering::SeqCst) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "upstream stream not cancelled after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        up.completed_streams.load(Ordering::SeqCst),
        1,
        "only the first stream ran to its end"
    );
    let lines = gw.log_lines(2).await;
    assert_eq!(lines[1]["client_disconnected"], true);
    assert!(lines[0]["ttft_ms"].as_f64().unwrap() < 250.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_echoed_in_a_stream_is_scrubbed_even_split_across_chunks() {
    let up = fake(Mode::Ok, REAL).await;
    let gw = gateway(
        inference(one_backend(
            &up.url(),
            json!({"allowedModels": ["leaky-stream"]}),
        )),
        &creds(&[("UP_KEY", REAL)]),
    )
    .await;
    let body = json!({"model": "leaky-stream", "stream": true, "messages": [{"role": "user", "content": "s"}]}).to_string();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let req = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.unwrap();
    let all = String::from_utf8_lossy(&all);
    assert_eq!(up.requests().len(), 1, "the backend was asked");
    assert!(all.contains("text/event-stream"), "{all}");
    // (The answer is chunk-encoded: the scrubber held back the half key until it was whole.)
    assert!(
        all.contains("rejected key ")
            && all.contains("[REDACTED CREDENTIAL]\"}")
            && all.contains("[DONE]"),
        "{all}"
    );
    let half = &REAL[..REAL.len() / 2];
    assert!(
        !all.contains(half) && !all.contains(&REAL[REAL.len() / 2..]),
        "no part of the key reaches the agent: {all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_a_non_streamed_request_cancels_upstream() {
    let slow = fake(Mode::Slow(Duration::from_secs(3)), REAL).await;
    let gw = gateway(
        inference(one_backend(&slow.url(), json!({}))),
        &creds(&[("UP_KEY", REAL)]),
    )
    .await;
    let body = chat("m-1", "take your time");
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let req = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await.unwrap();
    while slow.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(s);
    let t = Instant::now();
    while slow.cancelled.load(Ordering::SeqCst) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "upstream request not cancelled after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = gw.log_lines(1).await;
    assert_eq!(
        (
            lines[0]["status"].as_u64(),
            lines[0]["client_disconnected"].as_bool()
        ),
        (Some(499), Some(true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_policy_and_keys_on_a_live_connection_and_anthropic_passes_through() {
    let up = fake(Mode::Ok, REAL).await;
    let gw = gateway(
        inference(one_backend(&up.url(), json!({}))),
        &creds(&[("UP_KEY", REAL)]),
    )
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let keepalive = |body: String| {
        format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
    };
    s.write_all(keepalive(chat("m-1", "a")).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_keepalive(&mut s).await.status, 200);

    let rotated = "rotated-key-0000-NEW";
    up.set_key(rotated);
    let anth = fake(Mode::Ok, rotated).await;
    let new = inference(json!({
        "backends": [
            {"name": "up", "kind": "openai", "url": up.url(), "apiKey": {"env": "UP_KEY"}},
            {"name": "claude", "kind": "anthropic", "url": anth.url(), "apiKey": {"env": "UP_KEY"}},
        ],
        "routes": [{"match": "claude-*", "backends": ["claude"]}],
        "allowedModels": ["m-2", "claude-*"],
    }));
    gw.router
        .reload(&new, &gw.dir, &creds(&[("UP_KEY", rotated)]))
        .unwrap();

    s.write_all(keepalive(chat("m-1", "b")).as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_keepalive(&mut s).await.status,
        403,
        "the new allow-list is in force on the same connection"
    );
    s.write_all(keepalive(chat("m-2", "c")).as_bytes())
        .await
        .unwrap();
    let r = read_keepalive(&mut s).await;
    assert_eq!(r.status, 200, "the rotated key is used: {}", r.body);

    let msg = json!({"model": "claude-sonnet", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let r = post(gw.addr, "/v1/messages", &msg).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["content"][0]["text"], "hello from claude");
    let seen = anth.requests();
    assert_eq!(seen[0].api_key.as_deref(), Some(rotated));
    assert_eq!(
        seen[0].auth, None,
        "the agent's Authorization is not forwarded"
    );
    assert_eq!(seen[0].path, "/v1/messages");

    // A bad reload keeps the old policy.
    let broken =
        inference(json!({"backends": [{"name": "x", "kind": "openai"}], "allowedModels": ["m-2"]}));
    assert!(gw
        .router
        .reload(&broken, &gw.dir, &creds(&[]))
        .unwrap_err()
        .to_string()
        .contains("`url` is required"));
    assert_eq!(
        post(gw.addr, "/v1/chat/completions", &chat("m-2", "d"))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_backend_answers_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("replies.yaml"),
        "replies:\n  - match: weather\n    reply: It is sunny.\n",
    )
    .unwrap();
    let inf = inference(json!({
        "backends": [{"name": "mock", "kind": "mock", "mock": {"replies": "replies.yaml", "latency": "20ms"}}],
        "allowedModels": ["mock-1"],
        "limits": {"maxTokens": 64},
    }));
    let gw = gateway_in(inf, &creds(&[]), dir.path(), None).await;
    let t = Instant::now();
    let r = post(
        gw.addr,
        "/v1/chat/completions",
        &chat("mock-1", "how is the weather?"),
    )
    .await;
    assert!(t.elapsed() >= Duration::from_millis(20), "latency applies");
    assert_eq!(r.json()["choices"][0]["message"]["content"], "It is sunny.");
    let r = post(
        gw.addr,
        "/v1/completions",
        &json!({"model": "mock-1", "prompt": "say hi"}).to_string(),
    )
    .await;
    assert_eq!(r.json()["choices"][0]["text"], "Mock reply to: say hi");
    let r = post(
        gw.addr,
        "/v1/messages",
        &json!({"model": "mock-1", "messages": [{"role": "user", "content": "yo"}]}).to_string(),
    )
    .await;
    assert_eq!(r.json()["content"][0]["text"], "Mock reply to: yo");
    let r = post(
        gw.addr,
        "/v1/embeddings",
        &json!({"model": "mock-1", "input": "x"}).to_string(),
    )
    .await;
    assert_eq!(
        r.json()["data"][0]["embedding"].as_array().unwrap().len(),
        16
    );
    let body = json!({"model": "mock-1", "stream": true, "messages": [{"role": "user", "content": "stream please"}]}).to_string();
    let r = post(gw.addr, "/v1/chat/completions", &body).await;
    assert!(
        r.body.starts_with("data: ") && r.body.ends_with("data: [DONE]\n\n"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_echoes_history_and_local_server_probes_get_openai_404s() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("replies.yaml"),
        "- match: what did I say\n  echo: history\n",
    )
    .unwrap();
    let inf = inference(json!({
        "backends": [{"name": "mock", "kind": "mock", "mock": {"replies": "replies.yaml"}}],
        "allowedModels": ["mock-1"],
    }));
    let gw = gateway_in(inf, &creds(&[]), dir.path(), None).await;
    let body = json!({"model": "mock-1", "messages": [
        {"role": "user", "content": "remember 42"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "what did I say?"}]},
    ]});
    let r = post(gw.addr, "/v1/chat/completions", &body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "remember 42\n---\nwhat did I say?"
    );

    // Hermes probes for LM Studio and Ollama before it talks OpenAI: clean 404s, OpenAI-shaped.
    let probes: [&[u8]; 3] = [
        b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"POST /api/show HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 17\r\nConnection: close\r\n\r\n{\"model\":\"mock\"}",
        b"GET /api/tags HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ];
    for probe in probes {
        let r = raw(gw.addr, probe).await;
        let line = String::from_utf8_lossy(&probe[..20]);
        assert_eq!(r.status, 404, "{line}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"), "{line}");
        let e = &r.json()["error"];
        assert_eq!(e["type"], "invalid_request_error", "{line}: {}", r.body);
        assert_eq!(e["code"], "unknown_url", "{line}");
        assert!(e["message"].as_str().unwrap().contains("/api/"), "{line}");
        assert!(
            e.get("param").is_some(),
            "{line}: every OpenAI error field is there"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_get_the_key_over_tls_trusting_a_private_ca() {
    // A private CA and a certificate for `localhost` signed by it, made here.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .unwrap();
    let up = fake_tls(Mode::Ok, REAL, tls).await;
    let url = format!("https://localhost:{}/v1", up.addr.port());
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let inf = inference(one_backend(&url, json!({})));
    let mut cfg = nemoclaw::gateway::inference::RouterConfig::new("tls", inf.clone(), dir.path());
    cfg.ca_file = Some(ca_file);
    let router =
        nemoclaw::gateway::inference::Router::build(cfg, &creds(&[("UP_KEY", REAL)])).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { router.serve(listener).await });
    let r = post(addr, "/v1/chat/completions", &chat("m-1", "over tls")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "echo: over tls"
    );
    assert_eq!(
        up.requests()[0].auth.as_deref(),
        Some(format!("Bearer {REAL}").as_str())
    );

    // Without the CA the certificate is refused: the request fails, nothing is sent.
    let gw = gateway(inf, &creds(&[("UP_KEY", REAL)])).await;
    let r = post(gw.addr, "/v1/chat/completions", &chat("m-1", "over tls")).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.contains("certificate"), "{}", r.body);
    assert_eq!(up.requests().len(), 1);
}
