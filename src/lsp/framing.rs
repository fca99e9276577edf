//! A guard in front of the JSON-RPC reader. tower-lsp-server's framed
//! reader stops reading for good after one undecodable message (tokio-util
//! ends a framed stream after a decode error), so a single byte of garbage
//! would end the session. We re-frame stdin here: every well-framed body
//! that is not valid UTF-8 JSON is replaced by a request the server answers
//! with a JSON-RPC parse error; bytes without a frame are skipped up to the
//! next `Content-Length` header.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Bodies larger than this are discarded unread (a hostile length).
pub const MAX_BODY: usize = 64 << 20;

/// The method the server answers with a parse error.
pub const INVALID_METHOD: &str = "wick/invalidMessage";

pub async fn sanitize<R, W>(input: R, mut out: W)
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
            match r.read_until(b'\n', &mut line).await {
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
                Ok(v) if v.is_object() || v.is_array() => buf,
                _ => {
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

fn invalid_body() -> String {
    format!(r#"{{"jsonrpc":"2.0","id":null,"method":"{INVALID_METHOD}"}}"#)
}

async fn forward<W: AsyncWrite + Unpin>(out: &mut W, body: &[u8]) -> bool {
    let header = format!("Content-Length: {}\r\n\r\n", body.len());
    out.write_all(header.as_bytes()).await.is_ok() && out.write_all(body).await.is_ok() && out.flush().await.is_ok()
}
