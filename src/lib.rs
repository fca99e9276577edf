//! wick: a local code-completion engine and language server.
//!
//! See ARCHITECTURE.md for the module map and what each module must not know.

pub mod actions;
pub mod cli;
pub mod complete;
pub mod config;
pub mod device;
pub mod engine;
pub mod models;
pub mod prompt;
pub mod server;
pub mod stats;
pub mod syntax;
pub mod testing;
pub mod text;
pub mod workspace;

/// Sends `tracing` output to stderr (stdout belongs to the protocol).
pub(crate) fn logging_to_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WICK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Sends `tracing` output to a file (for `wick serve --log-file`).
pub(crate) fn logging_to_file(path: &std::path::Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("WICK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

/// Byte offset of a 1-based line and column (column counted in characters).
/// A column past the end of the line is clamped to the line's end.
pub fn offset_of(text: &str, line: usize, col: usize) -> Option<usize> {
    let mut start = 0;
    for _ in 1..line {
        start += text[start..].find('\n')? + 1;
    }
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    // Column `col` is the character at index `col - 1`.
    let at = col.checked_sub(1).and_then(|c| text[start..line_end].char_indices().nth(c));
    Some(at.map_or(line_end, |(i, _)| start + i))
}
