//! A minimal synchronous LSP client that talks JSON-RPC to a `wick serve`
//! process: used by `wick bench lsp` and by the protocol tests.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub struct Client {
    pub child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next_id: i64,
    /// Notifications received so far (window/showMessage, $/progress, ...).
    pub notifications: Vec<Value>,
    /// Responses read while waiting for another id.
    stash: Vec<Value>,
}

pub const LONG: Duration = Duration::from_secs(300);

impl Client {
    pub fn spawn(bin: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Client {
        let mut cmd = Command::new(bin);
        cmd.arg("serve").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // Statistics of tests and benchmarks stay out of the user's file.
        cmd.env("WICK_DATA_DIR", std::env::temp_dir().join("wick-client-stats"));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn wick serve");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            // Keep stderr drained; show it when asked.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("WICK_TEST_SERVER_LOG").is_some() {
                    eprintln!("[server] {line}");
                }
            }
        });
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = None;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.parse::<usize>().ok();
                    }
                }
                let Some(len) = len else { return };
                let mut buf = vec![0u8; len];
                if r.read_exact(&mut buf).is_err() {
                    return;
                }
                let Ok(v) = serde_json::from_slice::<Value>(&buf) else { return };
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Client { child, stdin, rx, next_id: 1, notifications: vec![], stash: vec![] }
    }

    pub fn send_raw(&mut self, body: &[u8]) {
        let header = format!("Content-Length: {}\r\n\r\n", body.len());
        self.stdin.write_all(header.as_bytes()).unwrap();
        self.stdin.write_all(body).unwrap();
        self.stdin.flush().unwrap();
    }

    pub fn send(&mut self, v: &Value) {
        self.send_raw(serde_json::to_string(v).unwrap().as_bytes());
    }

    pub fn request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Reads one message, answering server-to-client requests on the way.
    fn next(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = match self.rx.recv_timeout(left) {
                Ok(v) => v,
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return None,
            };
            if v.get("method").is_some() && v.get("id").is_some() {
                // A request from the server (e.g. workDoneProgress/create).
                let id = v["id"].clone();
                self.send(&json!({"jsonrpc": "2.0", "id": id, "result": null}));
                continue;
            }
            if v.get("method").is_some() {
                self.notifications.push(v.clone());
            }
            return Some(v);
        }
    }

    /// Whether the answer to `id` has already arrived (read while waiting
    /// for another one), for tests of the order of answers.
    pub fn answered(&self, id: i64) -> bool {
        self.stash.iter().any(|v| v["id"] == json!(id))
    }

    pub fn response(&mut self, id: i64, timeout: Duration) -> Value {
        if let Some(i) = self.stash.iter().position(|v| v["id"] == json!(id)) {
            return self.stash.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.next(deadline) {
                Some(v) if v.get("method").is_none() && v["id"] == json!(id) => return v,
                Some(v) if v.get("method").is_some() => {}
                Some(v) => self.stash.push(v),
                None => panic!("no response to request {id} within {timeout:?}"),
            }
        }
    }

    /// Waits for a notification matching `pred`.
    pub fn wait_notification(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(v) = self.notifications.iter().find(|v| pred(v)) {
            return Some(v.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.next(deadline) {
                Some(v) if v.get("method").is_some() => {}
                Some(v) => self.stash.push(v),
                None => return None,
            }
            if let Some(v) = self.notifications.iter().find(|v| pred(v)) {
                return Some(v.clone());
            }
        }
    }

    /// Reads messages until the notifications received so far satisfy
    /// `cond`; false at the timeout.
    pub fn wait_until(&mut self, timeout: Duration, cond: impl Fn(&[Value]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !cond(&self.notifications) {
            match self.next(deadline) {
                Some(v) if v.get("method").is_some() => {}
                Some(v) => self.stash.push(v),
                None => return false,
            }
        }
        true
    }

    pub fn initialize(&mut self, capabilities: Value, options: Value) -> Value {
        let id = self.request(
            "initialize",
            json!({"processId": null, "rootUri": null, "capabilities": capabilities, "initializationOptions": options}),
        );
        let r = self.response(id, LONG);
        self.notify("initialized", json!({}));
        r
    }

    /// Waits until the model has loaded (the $/progress end), if it reports.
    pub fn wait_model(&mut self) {
        let end =
            self.wait_notification(LONG, |v| v["method"] == "$/progress" && v["params"]["value"]["kind"] == "end");
        assert!(end.is_some(), "the model never finished loading; notifications: {:?}", self.notifications);
    }

    pub fn open(&mut self, uri: &str, lang: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": lang, "version": 1, "text": text}}),
        );
    }

    pub fn shutdown(mut self) -> std::process::ExitStatus {
        let id = self.request("shutdown", Value::Null);
        let r = self.response(id, LONG);
        assert!(r.get("error").is_none(), "{r}");
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server did not exit after shutdown/exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn caps_with_progress() -> Value {
    json!({"window": {"workDoneProgress": true}, "general": {"positionEncodings": ["utf-16"]}})
}
