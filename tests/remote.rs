//! Remote backends (`backend` setting) against a small HTTP server on
//! loopback that answers as a serving engine would, or misbehaves on
//! purpose: every failure gets its kind and one health change, requests
//! during the back-off make no connection, a cancelled or superseded
//! request closes its connection, and `wick serve` completes through it.

mod common;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wick::engine::remote::{BackendKind, FailKind, RemoteOptions};
use wick::engine::{CancelToken, Engine, EngineError, Request, StopReason};
use wick::prompt::{Family, Prompt};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: String,
    body: Value,
}

#[derive(Clone)]
enum Reply {
    Json(u16, Value),
    Status(u16, &'static str, &'static str),
    /// Lines of a stream, each written and flushed with `pause` between.
    Stream(Vec<String>, Duration),
    /// One line every 50 ms until the client goes away.
    Drip(String),
    /// Accepts and never answers.
    Hang,
    /// Reads the request and closes the connection without an answer (a
    /// kept-alive connection the server had just timed out).
    Close,
}

#[derive(Default)]
struct Log {
    seen: Vec<Seen>,
    /// Connections accepted.
    connections: usize,
    /// Drips that ended because the client closed the connection.
    closed_by_client: usize,
}

struct Fake {
    url: String,
    log: Arc<Mutex<Log>>,
}

impl Fake {
    fn start(answer: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Log::default()));
        let answer = Arc::new(answer);
        let l2 = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                l2.lock().unwrap().connections += 1;
                let (log, answer) = (l2.clone(), answer.clone());
                std::thread::spawn(move || serve(conn, &log, &*answer));
            }
        });
        Fake { url, log }
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.log.lock().unwrap().seen.iter().filter(|s| s.path == path).cloned().collect()
    }

    fn connections(&self) -> usize {
        self.log.lock().unwrap().connections
    }
}

fn serve(conn: TcpStream, log: &Mutex<Log>, answer: &dyn Fn(&Seen) -> Reply) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let first = head.lines().next().unwrap_or("").to_string();
        let mut parts = first.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let len = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0usize);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let seen = Seen { method, path, headers: head, body: serde_json::from_slice(&body).unwrap_or(Value::Null) };
        log.lock().unwrap().seen.push(seen.clone());
        match answer(&seen) {
            Reply::Json(code, v) => {
                let b = v.to_string();
                let _ = write!(
                    w,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                );
                continue; // keep-alive
            }
            Reply::Status(code, headers, body) => {
                let _ = write!(w, "HTTP/1.1 {code} X\r\n{headers}Content-Length: {}\r\n\r\n{body}", body.len());
                continue;
            }
            Reply::Stream(lines, pause) => {
                let _ = write!(w, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
                for l in lines {
                    if w.write_all(l.as_bytes()).and_then(|_| w.flush()).is_err() {
                        return;
                    }
                    std::thread::sleep(pause);
                }
                return;
            }
            Reply::Drip(line) => {
                let _ = write!(w, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(60) {
                    if w.write_all(line.as_bytes()).and_then(|_| w.flush()).is_err() {
                        log.lock().unwrap().closed_by_client += 1;
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
            Reply::Hang => {
                std::thread::sleep(Duration::from_secs(60));
                return;
            }
            Reply::Close => return,
        }
    }
}

fn sse(v: Value) -> String {
    format!("data: {v}\n\n")
}

fn openai_part(t: &str, finish: Option<&str>) -> String {
    sse(json!({"choices": [{"text": t, "index": 0, "finish_reason": finish}]}))
}

fn models() -> Reply {
    Reply::Json(200, json!({"object": "list", "data": [{"id": "qwen2.5-coder-1.5b", "object": "model"}]}))
}

fn opts(kind: BackendKind, url: &str) -> RemoteOptions {
    RemoteOptions {
        kind,
        url: url.to_string(),
        model: "qwen2.5-coder-1.5b".into(),
        api_key_env: None,
        timeout: Duration::from_millis(1500),
        ca_file: None,
        family: None,
        context: 8192,
        tokenizer: None,
    }
}

fn fim_request(prefix: &str, suffix: &str) -> Request {
    let t = Family::QwenCoder.tokens();
    let mut p = Prompt::default();
    p.special(t.prefix).text(prefix).special(t.suffix).text(suffix).special(t.middle);
    let mut r = Request::new(p);
    r.max_tokens = 16;
    r.stop = vec!["\n".into()];
    r
}

fn ready(e: &Engine) {
    e.wait_ready().expect("the remote backend starts");
}

fn problem(e: &Engine) -> Option<FailKind> {
    e.health().borrow().problem.as_ref().map(|p| p.kind)
}

#[test]
fn openai_backend_streams_our_prompt_and_stops_where_we_say() {
    let fake = Fake::start(|s| match s.path.as_str() {
        "/v1/models" => models(),
        "/v1/completions" => Reply::Stream(
            vec![
                openai_part("a + b", None),
                openai_part("\n\ndef other():", None),
                openai_part("", Some("length")),
                "data: [DONE]\n\n".into(),
            ],
            Duration::from_millis(5),
        ),
        _ => Reply::Status(404, "", "no"),
    });
    std::env::set_var("WICK_TEST_REMOTE_KEY", "sk-test-123");
    let mut o = opts(BackendKind::OpenAi, &fake.url);
    o.api_key_env = Some("WICK_TEST_REMOTE_KEY".into());
    let e = Engine::remote(o, None);
    let info = e.wait_ready().unwrap();
    assert!(info.remote);
    assert_eq!(info.family, Some(Family::QwenCoder), "the family from the served model's name");
    assert_eq!(problem(&e), None);
    let (g, _) = e.generate_blocking(fim_request("def add(a, b):\n    return ", "\n# <|fim_middle|> here\n")).unwrap();
    assert_eq!(g.text, "a + b");
    assert_eq!(g.stop, StopReason::StopText);
    let sent = fake.seen("/v1/completions");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "POST");
    let b = &sent[0].body;
    assert_eq!(b["model"], "qwen2.5-coder-1.5b");
    assert_eq!(b["stream"], true);
    assert_eq!(b["max_tokens"], 16);
    assert_eq!(b["stop"], json!(["\n"]));
    assert!(b.get("suffix").is_none(), "the FIM prompt is ours, never the server's suffix field");
    let prompt = b["prompt"].as_str().unwrap();
    assert!(prompt.starts_with("<|fim_prefix|>def add(a, b):\n    return <|fim_suffix|>"), "{prompt}");
    assert!(prompt.ends_with("<|fim_middle|>"), "{prompt}");
    assert_eq!(prompt.matches("<|fim_middle|>").count(), 1, "the document's own token string stays text: {prompt}");
    assert!(sent[0].headers.to_ascii_lowercase().contains("authorization: bearer sk-test-123"));
}

/// A fake llama-server with `slots` slots that answers `/completion` with
/// `completion`.
fn llama_fake(slots: u64, completion: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Fake {
    Fake::start(move |s| match s.path.as_str() {
        "/health" => Reply::Json(200, json!({"status": "ok"})),
        "/props" => Reply::Json(200, json!({"total_slots": slots})),
        "/completion" => completion(s),
        _ => Reply::Status(404, "", "no"),
    })
}

/// A ready engine on a llama.cpp backend at `url` (the server's own model).
fn llama_engine(url: &str) -> Engine {
    let mut o = opts(BackendKind::LlamaCpp, url);
    o.model = String::new();
    o.family = Some(Family::QwenCoder);
    let e = Engine::remote(o, None);
    ready(&e);
    e
}

#[test]
fn llama_cpp_backend_caches_the_prompt_in_a_slot_per_document() {
    let fake = llama_fake(4, |s| {
        if s.body["stream"] == false {
            // A prefetch: the prompt only.
            return Reply::Json(200, json!({"content": "", "stop": true, "tokens_evaluated": 30, "tokens_cached": 0}));
        }
        Reply::Stream(
            vec![
                sse(json!({"content": "x", "stop": false})),
                sse(json!({"content": " * 2", "stop": false})),
                sse(
                    json!({"content": "", "stop": true, "tokens_evaluated": 31, "tokens_cached": 30, "tokens_predicted": 3}),
                ),
            ],
            Duration::from_millis(5),
        )
    });
    let e = llama_engine(&fake.url);
    assert_eq!(problem(&e), None);
    // A prefetch prefills the slot without generating.
    let mut warm = fim_request("y = ", "");
    warm.max_tokens = 0;
    warm.key = Some("file:///a.py".into());
    warm.idle = true;
    let (g, _) = e.generate_blocking(warm).unwrap();
    assert_eq!((g.text.as_str(), g.prompt_tokens), ("", 30));
    let mut r = fim_request("y = ", "");
    r.key = Some("file:///a.py".into());
    let (g, _) = e.generate_blocking(r).unwrap();
    assert_eq!(g.text, "x * 2");
    assert_eq!(g.stop, StopReason::EndToken);
    assert_eq!((g.prompt_tokens, g.reused_tokens, g.generated_tokens), (31, 30, 3));
    let sent = fake.seen("/completion");
    assert_eq!(sent.len(), 2);
    for s in &sent {
        assert_eq!(s.body["cache_prompt"], true);
        assert_eq!(s.body["id_slot"], sent[0].body["id_slot"], "one document, one slot");
        assert!(s.body["id_slot"].as_u64().unwrap() < 4);
    }
    assert_eq!(sent[0].body["n_predict"], 0);
}

#[test]
fn a_connection_closed_before_the_answer_is_tried_once_more() {
    // The first generation request's connection closes unanswered; the
    // second request (a new connection) is answered. Nothing was generated
    // the first time, so the engine sends it once more and reports nothing.
    let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = closed.clone();
    let fake = llama_fake(1, move |_| {
        if c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst).is_multiple_of(2) {
            return Reply::Close;
        }
        Reply::Stream(
            vec![sse(json!({"content": "x", "stop": false})), sse(json!({"content": "", "stop": true}))],
            Duration::from_millis(5),
        )
    });
    let e = llama_engine(&fake.url);
    let (g, _) = e.generate_blocking(fim_request("y = ", "")).unwrap();
    assert_eq!(g.text, "x");
    assert_eq!(fake.seen("/completion").len(), 2, "sent twice");
    assert_eq!(problem(&e), None, "a retried close is no problem");
    // Closed every time: a failure, named, after one retry (not a loop).
    let always = llama_fake(1, |_| Reply::Close);
    let e = llama_engine(&always.url);
    let (kind, msg) = remote_error(e.generate_blocking(fim_request("y = ", "")));
    assert_eq!(kind, FailKind::Unreachable, "{msg}");
    assert_eq!(always.seen("/completion").len(), 2, "one retry: {msg}");
}

#[test]
fn ollama_backend_streams_ndjson_from_a_raw_prompt() {
    let fake = Fake::start(|s| match s.path.as_str() {
        "/api/tags" => Reply::Json(
            200,
            json!({"models": [{"name": "qwen2.5-coder:1.5b-base", "model": "qwen2.5-coder:1.5b-base"}]}),
        ),
        "/api/generate" => Reply::Stream(
            vec![
                format!("{}\n", json!({"response": "len(", "done": false})),
                format!("{}\n", json!({"response": "xs)", "done": false})),
                format!("{}\n", json!({"response": "", "done": true, "prompt_eval_count": 12, "eval_count": 2})),
            ],
            Duration::from_millis(5),
        ),
        _ => Reply::Status(404, "", "no"),
    });
    let mut o = opts(BackendKind::Ollama, &fake.url);
    o.model = "qwen2.5-coder:1.5b-base".into();
    let e = Engine::remote(o, None);
    ready(&e);
    assert_eq!(problem(&e), None);
    let (g, _) = e.generate_blocking(fim_request("n = ", "")).unwrap();
    assert_eq!(g.text, "len(xs)");
    assert_eq!(g.prompt_tokens, 12);
    let b = &fake.seen("/api/generate")[0].body;
    assert_eq!(b["raw"], true);
    assert_eq!(b["stream"], true);
    assert_eq!(b["model"], "qwen2.5-coder:1.5b-base");
    assert_eq!(b["options"]["num_predict"], 16);
    assert!(b["keep_alive"].is_string());
}

/// A server that lists its models and answers completions with `reply`.
fn failing(reply: Reply) -> Fake {
    Fake::start(move |s| match s.path.as_str() {
        "/v1/models" => models(),
        _ => reply.clone(),
    })
}

fn remote_error(r: Result<(wick::engine::Generation, wick::engine::QueueTimes), EngineError>) -> (FailKind, String) {
    match r {
        Err(EngineError::Remote(e)) => (e.kind, e.message),
        Err(e) => panic!("expected a remote failure, got {e}"),
        Ok((g, _)) => panic!("expected a remote failure, got the answer {:?}", g.text),
    }
}

#[test]
fn every_failure_has_its_kind_one_health_change_and_a_back_off() {
    let cases: Vec<(&str, Reply, FailKind, &str)> = vec![
        (
            "401",
            Reply::Status(401, "", r#"{"error":{"message":"invalid api key"}}"#),
            FailKind::Auth,
            "invalid api key",
        ),
        ("403", Reply::Status(403, "", "forbidden"), FailKind::Auth, "apiKeyEnv"),
        ("404", Reply::Status(404, "", r#"{"error":"model 'x' not found"}"#), FailKind::NotFound, "not found"),
        ("429", Reply::Status(429, "Retry-After: 1\r\n", "slow down"), FailKind::RateLimited, "429"),
        ("500", Reply::Status(500, "", "CUDA out of memory"), FailKind::Server, "CUDA out of memory"),
        ("503", Reply::Status(503, "", ""), FailKind::Server, "503"),
        (
            "400",
            Reply::Status(400, "", r#"{"error":{"message":"prompt too long"}}"#),
            FailKind::BadRequest,
            "prompt too long",
        ),
        ("cut", Reply::Stream(vec![openai_part("x = ", None)], Duration::ZERO), FailKind::StreamCut, "mid-way"),
        (
            "malformed",
            Reply::Stream(vec!["data: {not json\n\n".into()], Duration::ZERO),
            FailKind::Malformed,
            "not JSON",
        ),
        (
            "not sse",
            Reply::Stream(vec!["<html>oops</html>\n".into()], Duration::ZERO),
            FailKind::Malformed,
            "server-sent",
        ),
        (
            "error event",
            Reply::Stream(vec![sse(json!({"error": {"message": "engine died"}}))], Duration::ZERO),
            FailKind::Server,
            "engine died",
        ),
        ("slow", Reply::Hang, FailKind::Timeout, "timeoutMs"),
    ];
    for (name, reply, kind, says) in cases {
        let fake = failing(reply);
        let mut o = opts(BackendKind::OpenAi, &fake.url);
        o.timeout = Duration::from_millis(400);
        let e = Engine::remote(o, None);
        ready(&e);
        let t = Instant::now();
        let (k, m) = remote_error(e.generate_blocking(fim_request("x = ", "")));
        assert_eq!(k, kind, "{name}: {m}");
        assert!(m.contains(says), "{name}: '{m}' should say '{says}'");
        assert!(t.elapsed() < Duration::from_secs(20), "{name}: bounded");
        assert_eq!(problem(&e), Some(kind), "{name}");
        let episodes = e.health().borrow().episodes;
        // During the back-off: the same answer at once, no connection.
        let before = fake.connections();
        let n_before = fake.seen("/v1/completions").len();
        for _ in 0..3 {
            let (k2, _) = remote_error(e.generate_blocking(fim_request("x = ", "")));
            assert_eq!(k2, kind, "{name}");
        }
        assert_eq!(fake.seen("/v1/completions").len(), n_before, "{name}: nothing sent while backing off");
        assert!(fake.connections() <= before + 1, "{name}");
        assert_eq!(e.health().borrow().episodes, episodes, "{name}: one health change per kind, not per request");
    }
}

#[test]
fn a_server_that_recovers_is_used_again_after_the_back_off() {
    let calls = Arc::new(Mutex::new(0));
    let c2 = calls.clone();
    let fake = Fake::start(move |s| match s.path.as_str() {
        "/v1/models" => models(),
        _ => {
            let mut n = c2.lock().unwrap();
            *n += 1;
            if *n == 1 {
                Reply::Status(502, "", "bad gateway")
            } else {
                Reply::Stream(vec![openai_part("1", Some("stop")), "data: [DONE]\n\n".into()], Duration::ZERO)
            }
        }
    });
    let e = Engine::remote(opts(BackendKind::OpenAi, &fake.url), None);
    ready(&e);
    let mut health = e.health();
    health.borrow_and_update();
    assert_eq!(remote_error(e.generate_blocking(fim_request("x = ", ""))).0, FailKind::Server);
    assert!(health.has_changed().unwrap());
    health.borrow_and_update();
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        match e.generate_blocking(fim_request("x = ", "")) {
            Ok((g, _)) => break g.text,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(err) => panic!("never recovered: {err}"),
        }
    };
    assert_eq!(answer, "1");
    assert!(health.has_changed().unwrap(), "recovery is a health change");
    assert_eq!(problem(&e), None);
}

#[test]
fn transport_failures_are_named() {
    // Nothing listens on a port just freed.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = Engine::remote(opts(BackendKind::OpenAi, &format!("http://127.0.0.1:{port}")), None);
    ready(&e);
    let p = e.health().borrow().problem.clone().expect("the start-up check names the problem");
    assert_eq!(p.kind, FailKind::Unreachable, "{}", p.message);
    assert!(p.message.contains("is the server running"), "{}", p.message);
    // A host name that never resolves (`.invalid`, RFC 6761); a machine
    // whose resolver does not answer at all times out instead.
    let e = Engine::remote(opts(BackendKind::OpenAi, "http://wick-test.invalid:8000"), None);
    ready(&e);
    let p = e.health().borrow().problem.clone().expect("the start-up check names the problem");
    assert!(matches!(p.kind, FailKind::Dns | FailKind::Timeout), "{:?}: {}", p.kind, p.message);
    if p.kind == FailKind::Dns {
        assert!(p.message.contains("does not resolve"), "{}", p.message);
    }
    // TLS to a server that speaks plain HTTP.
    let fake = failing(Reply::Hang);
    let url = fake.url.replace("http://", "https://");
    let e = Engine::remote(opts(BackendKind::OpenAi, &url), None);
    ready(&e);
    let p = e.health().borrow().problem.clone().expect("TLS fails");
    assert_eq!(p.kind, FailKind::Tls, "{}", p.message);
    // A CA file that is not one is a configuration error, said at start.
    let dir = common::scratch_dir();
    let ca = dir.join("not-a-ca.pem");
    std::fs::write(&ca, "hello").unwrap();
    let mut o = opts(BackendKind::OpenAi, &fake.url);
    o.ca_file = Some(ca.display().to_string());
    let e = Engine::remote(o, None);
    let err = e.wait_ready().unwrap_err().to_string();
    assert!(err.contains("caFile"), "{err}");
    // An API key variable that is not set.
    let mut o = opts(BackendKind::OpenAi, &fake.url);
    o.api_key_env = Some("WICK_TEST_UNSET_VARIABLE".into());
    let err = Engine::remote(o, None).wait_ready().unwrap_err().to_string();
    assert!(err.contains("WICK_TEST_UNSET_VARIABLE") && err.contains("not set"), "{err}");
}

#[test]
fn the_start_up_check_says_which_model_is_missing() {
    let fake = failing(Reply::Hang);
    let mut o = opts(BackendKind::OpenAi, &fake.url);
    o.model = "starcoder2-15b".into();
    let e = Engine::remote(o, None);
    ready(&e);
    let p = e.health().borrow().problem.clone().expect("a problem");
    assert_eq!(p.kind, FailKind::NotFound);
    assert!(p.message.contains("starcoder2-15b") && p.message.contains("qwen2.5-coder-1.5b"), "{}", p.message);
    // No model named: the first one served is used.
    let mut o = opts(BackendKind::OpenAi, &fake.url);
    o.model = String::new();
    let e = Engine::remote(o, None);
    let info = e.wait_ready().unwrap();
    assert!(info.path.contains("openai"), "{}", info.path);
    assert_eq!(info.family, Some(Family::QwenCoder));
    assert_eq!(problem(&e), None);
}

#[test]
fn cancelling_or_superseding_a_request_closes_its_connection() {
    let fake = Fake::start(|s| match s.path.as_str() {
        "/v1/models" => models(),
        _ => Reply::Drip(openai_part(" x", None)),
    });
    let e = Engine::remote(opts(BackendKind::OpenAi, &fake.url), None);
    ready(&e);
    let cancel = CancelToken::default();
    let (_, rx) = e.submit_with(fim_request("x = ", ""), cancel.clone());
    wait_for(|| !fake.seen("/v1/completions").is_empty());
    std::thread::sleep(Duration::from_millis(200));
    cancel.cancel();
    // As with the local model: what came so far, marked cancelled.
    let r = rx.blocking_recv().unwrap();
    assert!(
        matches!(&r, Err(EngineError::Cancelled)) || matches!(&r, Ok((g, _)) if g.stop == StopReason::Cancelled),
        "{:?}",
        r.map(|(g, _)| g.text)
    );
    wait_for(|| fake.log.lock().unwrap().closed_by_client == 1);
    // A newer request for the same document supersedes the streaming one.
    let mut first = fim_request("x = ", "");
    first.key = Some("file:///a.py".into());
    let (_, rx1) = e.submit(first.clone());
    wait_for(|| fake.seen("/v1/completions").len() == 2);
    let (_, _rx2) = e.submit(first);
    let r1 = rx1.blocking_recv().unwrap();
    assert!(matches!(r1, Err(EngineError::Superseded)), "{:?}", r1.map(|(g, _)| g.text));
    wait_for(|| fake.log.lock().unwrap().closed_by_client == 2);
    assert_eq!(problem(&e), None, "cancelling is not a failure");
}

/// Waits (bounded) for a condition the test then relies on.
fn wait_for(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not reached within 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_server_completes_through_a_remote_backend_and_reports_a_failure_once() {
    let fail = Arc::new(Mutex::new(false));
    let f2 = fail.clone();
    let fake = Fake::start(move |s| match s.path.as_str() {
        "/v1/models" => models(),
        _ if *f2.lock().unwrap() => Reply::Status(500, "", "the GPU fell over"),
        _ => Reply::Stream(
            vec![openai_part("a + b", None), openai_part("\n", Some("stop")), "data: [DONE]\n\n".into()],
            Duration::ZERO,
        ),
    });
    let mut c = common::lsp::Client::spawn(&[], &[]);
    let backend = json!({"kind": "openai", "url": fake.url, "model": "qwen2.5-coder-1.5b", "timeoutMs": 2000});
    c.initialize(common::lsp::caps_with_progress(), json!({ "backend": backend }));
    let ready =
        c.wait_notification(common::lsp::LONG, |v| v["method"] == "wick/status" && v["params"]["state"] == "ready");
    let ready = ready.expect("the status line says ready");
    assert!(ready["params"]["model"].as_str().unwrap().contains("openai"), "{ready}");
    let uri = "file:///remote/add.py";
    c.open(uri, "python", "def add(a, b):\n    return \n");
    let id = c.request(
        "textDocument/inlineCompletion",
        json!({"textDocument": {"uri": uri}, "position": {"line": 1, "character": 11}, "context": {"triggerKind": 2}}),
    );
    let r = c.response(id, common::lsp::LONG);
    assert_eq!(r["result"][0]["insertText"], "a + b", "{r}");
    let sent = fake.seen("/v1/completions");
    assert!(!sent.is_empty());
    assert!(sent.iter().any(|s| s.body["prompt"].as_str().unwrap().contains("def add(a, b):")));
    // The server fails: one message, however many keystrokes.
    *fail.lock().unwrap() = true;
    let mut text = String::from("def add(a, b):\n    return \n");
    for (i, ch) in "zq".chars().enumerate() {
        text.insert(26 + i, ch);
        c.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": 2 + i}, "contentChanges": [{"text": text}]}),
        );
        let id = c.request(
            "textDocument/inlineCompletion",
            json!({"textDocument": {"uri": uri}, "position": {"line": 1, "character": 12 + i}, "context": {"triggerKind": 2}}),
        );
        let r = c.response(id, common::lsp::LONG);
        assert!(r.get("error").is_none(), "an empty answer, not an error: {r}");
    }
    let shown = c.wait_notification(Duration::from_secs(10), |v| {
        v["method"] == "window/showMessage" && v["params"]["message"].as_str().is_some_and(|m| m.contains("fell over"))
    });
    assert!(shown.is_some(), "the failure is shown: {:?}", c.notifications);
    std::thread::sleep(Duration::from_millis(300));
    c.wait_until(Duration::from_millis(200), |_| false);
    let shown = c
        .notifications
        .iter()
        .filter(|v| {
            v["method"] == "window/showMessage" && v["params"]["message"].as_str().unwrap_or("").contains("fell over")
        })
        .count();
    assert_eq!(shown, 1, "one message per kind of failure: {:?}", c.notifications);
    let status = c.notifications.iter().rev().find(|v| v["method"] == "wick/status").cloned().unwrap();
    assert_eq!(status["params"]["state"], "error", "{status}");
    let id = c.request("wick/serverState", json!({}));
    let st = c.response(id, common::lsp::LONG);
    assert_eq!(st["result"]["backendProblem"]["kind"], "server-error", "{st}");
    assert_eq!(c.shutdown().code(), Some(0));
}

#[test]
fn a_tokenizer_names_the_format_and_counts_the_prompt() {
    let fake = Fake::start(|s| match s.path.as_str() {
        "/v1/models" => Reply::Json(200, json!({"data": [{"id": "house-model"}]})),
        _ => Reply::Stream(vec![openai_part("1", Some("stop")), "data: [DONE]\n\n".into()], Duration::ZERO),
    });
    let tiny = common::tiny_model(Family::QwenCoder);
    let mut o = opts(BackendKind::OpenAi, &fake.url);
    o.model = "house-model".into();
    o.tokenizer = Some(tiny.display().to_string());
    o.context = 256;
    let e = Engine::remote(o, None);
    let info = e.wait_ready().unwrap();
    assert_eq!(info.family, Some(Family::QwenCoder), "from the tokenizer's vocabulary, not the name");
    // The completion windows are sized with it too.
    let counter = info.tokens.expect("a counter from the tokenizer");
    assert!(counter.count("value = compute(value)\n").is_some_and(|n| n >= 3), "counted in tokens");
    assert_eq!(problem(&e), None);
    let (g, _) = e.generate_blocking(fim_request("x = ", "")).unwrap();
    assert_eq!(g.text, "1");
    assert!(g.prompt_tokens >= 4, "counted with the tokenizer: {}", g.prompt_tokens);
    // A prompt that cannot fit the context window is not sent.
    let sent = fake.seen("/v1/completions").len();
    let r = e.generate_blocking(fim_request(&"value = compute(value)\n".repeat(200), ""));
    assert!(matches!(r, Err(EngineError::PromptTooLong { limit: 256, .. })), "{:?}", r.map(|(g, _)| g.text));
    assert_eq!(fake.seen("/v1/completions").len(), sent);
    assert_eq!(problem(&e), None, "a prompt too long is not the server's failure");
    // Without a tokenizer or a telling name, the start-up check says what to set.
    let mut o = opts(BackendKind::OpenAi, &fake.url);
    o.model = "house-model".into();
    let e = Engine::remote(o, None);
    ready(&e);
    assert!(e.info().unwrap().tokens.is_none(), "no vocabulary, no counter (3 characters per token)");
    let p = e.health().borrow().problem.clone().expect("the format is unknown");
    assert!(p.message.contains("fimTemplate"), "{}", p.message);
    // The `model` setting's local file names it too.
    let mut o = opts(BackendKind::OpenAi, &fake.url);
    o.model = "house-model".into();
    let e = Engine::remote(o, Some(tiny.display().to_string()));
    assert_eq!(e.wait_ready().unwrap().family, Some(Family::QwenCoder));
}
