//! A guard in front of the JSON-RPC reader. tower-lsp-server's framed
//! reader stops reading for good after one undecodable message (tokio-util
//! ends a framed stream after a decode error), so a single byte of garbage
//! would end the session. We re-frame stdin here: every well-framed body
//! that is not valid UTF-8 JSON is replaced by a request the server answers
//! with a JSON-RPC parse error; bytes without a frame are skipped up to the
//! next `Content-Length` header.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Bodies larger than this are discarded unread (a hostile length).
pub(crate) const MAX_BODY: usize = 64 << 20;

/// Longest header line kept; longer ones are skipped piece by piece.
const MAX_HEADER_LINE: u64 = 8 << 10;

/// The method the server answers with a parse error.
pub(crate) const INVALID_METHOD: &str = "wick/invalidMessage";

pub(crate) async fn sanitize<R, W>(input: R, mut out: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut r = BufReader::with_capacity(1 << 16, input);
    loop {
        // Headers: lines up to an empty one.
        let mut len: Option<usize> = None;
        let mut saw_header = false;
        loop {
            let mut line = Vec::new();
            // A header line is short: a longer run without a newline is
            // garbage, read and dropped in bounded pieces.
            match (&mut r).take(MAX_HEADER_LINE).read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            let t = text.trim();
            if t.is_empty() {
                if saw_header {
                    break;
                }
                continue;
            }
            if let Some((k, v)) = t.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<usize>().ok();
                    saw_header = true;
                } else if k.trim().eq_ignore_ascii_case("content-type") {
                    saw_header = true;
                }
            }
            // Anything else is garbage between frames: skipped.
        }
        let Some(len) = len else {
            tracing::warn!("a message without a valid Content-Length was skipped");
            forward(&mut out, invalid_body().as_bytes()).await;
            continue;
        };
        let body = if len > MAX_BODY {
            tracing::warn!(len, "a message larger than {MAX_BODY} bytes was discarded");
            let mut left = len as u64;
            let mut sink = tokio::io::sink();
            let mut take = (&mut r).take(left);
            left -= tokio::io::copy(&mut take, &mut sink).await.unwrap_or(0);
            if left > 0 {
                return;
            }
            invalid_body().into_bytes()
        } else {
            let mut buf = vec![0u8; len];
            if r.read_exact(&mut buf).await.is_err() {
                return;
            }
            match serde_json::from_slice::<serde_json::Value>(&buf) {
                Ok(v) if is_one_message(&v) => buf,
                Ok(_) => {
                    // Valid JSON that tower-lsp-server cannot decode (a batch, no
                    // method and no id, an id that is an object) would end its reader.
                    tracing::warn!("a JSON value that is not one JSON-RPC message was answered with an error");
                    invalid_body().into_bytes()
                }
                Err(_) => {
                    tracing::warn!("an undecodable message was answered with a parse error");
                    invalid_body().into_bytes()
                }
            }
        };
        if !forward(&mut out, &body).await {
            return;
        }
    }
}

/// Whether `v` is one JSON-RPC 2.0 message in the shapes tower-lsp-server
/// decodes: a request or notification (a string method, an optional id
/// that is a number, a string or null, structured or absent params), or a
/// response (an id with a result or an error, no method).
pub(crate) fn is_one_message(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    let Some(o) = v.as_object() else { return false };
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return false;
    }
    let id_ok = |id: Option<&Value>| {
        matches!(id, None | Some(Value::Null | Value::String(_))) || id.is_some_and(|i| i.is_i64() || i.is_u64())
    };
    match o.get("method") {
        Some(Value::String(_)) => {
            id_ok(o.get("id"))
                && matches!(o.get("params"), None | Some(Value::Null | Value::Object(_) | Value::Array(_)))
        }
        Some(_) => false,
        None => o.contains_key("id") && id_ok(o.get("id")) && (o.contains_key("result") || o.contains_key("error")),
    }
}

fn invalid_body() -> String {
    format!(r#"{{"jsonrpc":"2.0","id":null,"method":"{INVALID_METHOD}"}}"#)
}

async fn forward<W: AsyncWrite + Unpin>(out: &mut W, body: &[u8]) -> bool {
    let header = format!("Content-Length: {}\r\n\r\n", body.len());
    out.write_all(header.as_bytes()).await.is_ok() && out.write_all(body).await.is_ok() && out.flush().await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_single_json_rpc_messages_pass() {
        for ok in [
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
            json!({"jsonrpc": "2.0", "method": "initialized"}),
            json!({"jsonrpc": "2.0", "id": "a", "result": null}),
            json!({"jsonrpc": "2.0", "id": 3, "error": {"code": 1, "message": "x"}}),
        ] {
            assert!(is_one_message(&ok), "{ok}");
        }
        for bad in [
            json!([{"jsonrpc": "2.0", "method": "initialized"}]),
            json!({"jsonrpc": "2.0"}),
            json!({"jsonrpc": "2.0", "id": {"x": 1}, "method": "m"}),
            json!({"jsonrpc": "2.0", "id": 1.5, "method": "m"}),
            json!({"jsonrpc": "2.0", "method": 7}),
            json!({"jsonrpc": "2.0", "method": "m", "params": 3}),
            json!({"id": 1, "method": "m"}),
            json!({"jsonrpc": "2.0", "id": 1}),
        ] {
            assert!(!is_one_message(&bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_header_line_without_an_end_is_read_in_bounded_pieces() {
        let mut input = vec![b'x'; 3 * MAX_HEADER_LINE as usize];
        input.extend(b"\r\nContent-Length: 2\r\n\r\n{}");
        let (w, mut r) = tokio::io::duplex(1 << 20);
        sanitize(&input[..], w).await;
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        // The garbage is dropped; `{}` is not a message: answered as invalid.
        assert!(out.len() < 200, "{out}");
        assert!(out.contains(INVALID_METHOD), "{out}");
    }
}
