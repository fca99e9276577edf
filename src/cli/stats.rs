//! `wick stats`: the local statistics file, summarized (acceptance and
//! latency per language, last day and week) or as an HTML page.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub struct StatsOptions {
    /// The statistics file; None: the server's (see `workspace::stats_path`).
    pub file: Option<PathBuf>,
    /// Write the HTML page here instead of printing the summary.
    pub html: Option<PathBuf>,
}

/// The text to print: the summary, or where the page went.
pub fn run(opts: &StatsOptions) -> Result<String> {
    let path = match &opts.file {
        Some(p) => p.clone(),
        None => {
            crate::workspace::stats_path().context("no data directory: set WICK_DATA_DIR or HOME, or pass --file")?
        }
    };
    let log = crate::workspace::CappedLog::new(path.clone(), crate::workspace::STATS_CAP);
    let text = log.read().with_context(|| format!("reading {}", path.display()))?;
    let records = crate::stats::parse(&text);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if let Some(out) = &opts.html {
        write_page(out, &crate::stats::html(&records, now))?;
        return Ok(format!("wrote {} ({} suggestions recorded in {})\n", out.display(), records.len(), path.display()));
    }
    if records.is_empty() {
        return Ok(format!(
            "No statistics yet: {} {}. The server records each suggestion there unless the `stats` setting is false.\n",
            path.display(),
            if text.is_empty() { "does not exist" } else { "holds no records" }
        ));
    }
    Ok(format!("{}\n{}", path.display(), crate::stats::report(&records, now)))
}

fn write_page(out: &Path, page: &str) -> Result<()> {
    std::fs::write(out, page).with_context(|| format!("writing {}", out.display()))
}
