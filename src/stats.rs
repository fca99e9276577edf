//! Local suggestion statistics, pure: the record the server appends to its
//! statistics file (one JSON object a line), reading such a file back
//! (garbage and a truncated last line skipped), the per-language summary
//! `wick stats` prints, and the self-contained HTML page (inline SVG) of
//! `wick stats --html`. Nothing here reads or writes files, and nothing is
//! ever sent anywhere.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What became of a suggestion that was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Accepted,
    /// Part of it was taken (`accepted_chars` says how much).
    Partial,
    Dismissed,
}

/// One shown suggestion: a line of the statistics file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When it was shown, in Unix seconds.
    pub t: u64,
    /// The document's languageId.
    pub lang: String,
    /// From the request's arrival to the answer.
    pub latency_ms: u32,
    /// Its length in characters and lines.
    pub chars: u32,
    pub lines: u32,
    pub outcome: Outcome,
    /// For `partial`: how many of its characters were taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_chars: Option<u32>,
    /// The user typed part of it before it was accepted or went away.
    #[serde(default)]
    pub typed_ahead: bool,
    /// Suggestions the editor could cycle through (1 when absent).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub offered: u32,
    /// Which of them was taken (0, the first, when absent).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub candidate: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Record {
    /// The record as one line of the file (with its newline).
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// The records of a statistics file's text; lines that are not records
/// (garbage, a line cut short by a crash) are skipped.
pub fn parse(text: &str) -> Vec<Record> {
    text.lines().filter_map(|l| serde_json::from_str(l.trim()).ok()).collect()
}

/// One language's figures over a window of time.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LangSummary {
    pub shown: usize,
    pub accepted: usize,
    pub partial: usize,
    pub latency_p50: u32,
    pub latency_p90: u32,
}

impl LangSummary {
    /// Fully accepted suggestions per suggestion shown (partial ones are
    /// counted apart).
    pub fn acceptance(&self) -> f64 {
        if self.shown == 0 {
            0.0
        } else {
            self.accepted as f64 / self.shown as f64
        }
    }
}

/// Per language (and `all`), the records with `t` in `(now - secs, now]`.
pub(crate) fn summarize(records: &[Record], now: u64, secs: u64) -> BTreeMap<String, LangSummary> {
    let mut groups: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.t <= now && r.t + secs > now) {
        groups.entry(r.lang.clone()).or_default().push(r);
        groups.entry(ALL.to_string()).or_default().push(r);
    }
    groups.into_iter().map(|(lang, rs)| (lang, summary_of(&rs))).collect()
}

/// The name of the row over every language.
pub const ALL: &str = "(all)";

fn summary_of(rs: &[&Record]) -> LangSummary {
    let mut lat: Vec<u32> = rs.iter().map(|r| r.latency_ms).collect();
    lat.sort_unstable();
    LangSummary {
        shown: rs.len(),
        accepted: rs.iter().filter(|r| r.outcome == Outcome::Accepted).count(),
        partial: rs.iter().filter(|r| r.outcome == Outcome::Partial).count(),
        latency_p50: percentile(&lat, 50),
        latency_p90: percentile(&lat, 90),
    }
}

/// Nearest-rank percentile of sorted values (0 for none).
pub(crate) fn percentile(sorted: &[u32], p: u32) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p as usize * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

pub(crate) const DAY: u64 = 24 * 3600;
pub(crate) const WEEK: u64 = 7 * DAY;

/// The plain-text report of `wick stats`: the last day and the last week.
pub fn report(records: &[Record], now: u64) -> String {
    let mut out = String::new();
    for (title, secs) in [("last 24 hours", DAY), ("last 7 days", WEEK)] {
        let s = summarize(records, now, secs);
        let _ = writeln!(out, "{title}:");
        if s.is_empty() {
            let _ = writeln!(out, "  no suggestions shown\n");
            continue;
        }
        let _ = writeln!(
            out,
            "  {:<16} {:>7} {:>9} {:>7} {:>10} {:>8} {:>8}",
            "language", "shown", "accepted", "partly", "acceptance", "p50 ms", "p90 ms"
        );
        // Languages by use, the total last.
        let mut rows: Vec<_> = s.iter().filter(|(l, _)| *l != ALL).collect();
        rows.sort_by(|a, b| b.1.shown.cmp(&a.1.shown).then(a.0.cmp(b.0)));
        rows.extend(s.get_key_value(ALL));
        for (lang, l) in rows {
            let _ = writeln!(
                out,
                "  {:<16} {:>7} {:>9} {:>7} {:>9.1}% {:>8} {:>8}",
                lang,
                l.shown,
                l.accepted,
                l.partial,
                l.acceptance() * 100.0,
                l.latency_p50,
                l.latency_p90
            );
        }
        out.push('\n');
    }
    out
}

/// Latency histogram bins: upper bounds in milliseconds (the last open).
const BINS: [u32; 12] = [25, 50, 100, 150, 200, 300, 400, 600, 800, 1200, 2000, u32::MAX];

/// The self-contained page of `wick stats --html`: a latency histogram of
/// the last week and acceptance per day over the last 30 days, as inline
/// SVG (no scripts, fonts or anything else loaded).
pub fn html(records: &[Record], now: u64) -> String {
    let week: Vec<&Record> = records.iter().filter(|r| r.t <= now && r.t + WEEK > now).collect();
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>wick statistics</title>\n<style>\
         body{font-family:sans-serif;margin:24px;color:#222;background:#fff}\
         h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
         table{border-collapse:collapse}td,th{padding:3px 10px;text-align:right;border-bottom:1px solid #ddd}\
         td:first-child,th:first-child{text-align:left}</style></head><body>\n\
         <h1>wick: suggestion statistics</h1>\n<p>Recorded on this machine only; never sent anywhere.</p>\n",
    );
    page.push_str("<h2>Last 7 days, per language</h2>\n");
    page.push_str(&table(&summarize(records, now, WEEK)));
    page.push_str("<h2>Latency, last 7 days</h2>\n");
    page.push_str(&histogram(&week));
    page.push_str("<h2>Acceptance per day, last 30 days</h2>\n");
    page.push_str(&per_day(records, now, 30));
    page.push_str("</body></html>\n");
    page
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn table(s: &BTreeMap<String, LangSummary>) -> String {
    if s.is_empty() {
        return "<p>No suggestions shown.</p>\n".into();
    }
    let mut t = String::from(
        "<table><tr><th>language</th><th>shown</th><th>accepted</th><th>partly</th><th>acceptance</th>\
         <th>p50 ms</th><th>p90 ms</th></tr>\n",
    );
    // The total last, as in the text report.
    for (lang, l) in s.iter().filter(|(l, _)| *l != ALL).chain(s.get_key_value(ALL)) {
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td></tr>",
            escape(lang),
            l.shown,
            l.accepted,
            l.partial,
            l.acceptance() * 100.0,
            l.latency_p50,
            l.latency_p90
        );
    }
    t.push_str("</table>\n");
    t
}

const W: f64 = 720.0;
const H: f64 = 260.0;
const LEFT: f64 = 50.0;
const BOTTOM: f64 = 40.0;
const TOP: f64 = 14.0;

/// Axes, a y scale from 0 to `ymax` with a few labelled ticks.
fn frame(svg: &mut String, ymax: f64, label: impl Fn(f64) -> String) {
    let plot_h = H - BOTTOM - TOP;
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{}\" stroke=\"#333\"/>\
         <line x1=\"{LEFT}\" y1=\"{0}\" x2=\"{W}\" y2=\"{0}\" stroke=\"#333\"/>",
        H - BOTTOM
    );
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let y = H - BOTTOM - plot_h * i as f64 / 4.0;
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{W}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            LEFT - 4.0,
            y + 4.0,
            label(v)
        );
    }
}

fn histogram(rs: &[&Record]) -> String {
    if rs.is_empty() {
        return "<p>No suggestions shown.</p>\n".into();
    }
    let mut counts = [0usize; BINS.len()];
    for r in rs {
        counts[BINS.iter().position(|&b| r.latency_ms < b).unwrap_or(BINS.len() - 1)] += 1;
    }
    // A multiple of 4: whole numbers at the ticks.
    let ymax = counts.iter().max().unwrap_or(&1).div_ceil(4).max(1) as f64 * 4.0;
    let mut svg =
        format!("<svg id=\"latency\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{H}\">", W + 24.0);
    frame(&mut svg, ymax, |v| format!("{v:.0}"));
    let plot_h = H - BOTTOM - TOP;
    let slot = (W - LEFT) / BINS.len() as f64;
    for (i, &c) in counts.iter().enumerate() {
        let h = plot_h * c as f64 / ymax;
        let x = LEFT + slot * i as f64 + 3.0;
        let label = match i {
            0 => format!("&lt;{}", BINS[0]),
            _ if BINS[i] == u32::MAX => format!("{}+", BINS[i - 1]),
            _ => format!("{}", BINS[i]),
        };
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#3b7dd8\"><title>{c}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{label}</text>",
            H - BOTTOM - h,
            slot - 6.0,
            x + (slot - 6.0) / 2.0,
            H - BOTTOM + 16.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">latency (ms, bin upper bound)</text></svg>",
        LEFT + (W - LEFT) / 2.0,
        H - 4.0
    );
    svg
}

fn per_day(records: &[Record], now: u64, days: u64) -> String {
    let start = (now / DAY + 1).saturating_sub(days) * DAY;
    let mut shown = vec![0usize; days as usize];
    let mut accepted = vec![0usize; days as usize];
    for r in records.iter().filter(|r| r.t >= start && r.t <= now) {
        let d = ((r.t - start) / DAY) as usize;
        if d < shown.len() {
            shown[d] += 1;
            accepted[d] += usize::from(r.outcome == Outcome::Accepted);
        }
    }
    if shown.iter().all(|&n| n == 0) {
        return "<p>No suggestions shown.</p>\n".into();
    }
    let mut svg =
        format!("<svg id=\"acceptance\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{H}\">", W + 24.0);
    frame(&mut svg, 1.0, |v| format!("{:.0}%", v * 100.0));
    let plot_h = H - BOTTOM - TOP;
    let slot = (W - LEFT) / days as f64;
    let mut points = Vec::new();
    for d in 0..days as usize {
        let x = LEFT + slot * (d as f64 + 0.5);
        if d % 5 == 4 || d + 1 == days as usize {
            let ago = days as usize - 1 - d;
            let label = if ago == 0 { "today".to_string() } else { format!("-{ago}d") };
            let _ = write!(
                svg,
                "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{label}</text>",
                H - BOTTOM + 16.0
            );
        }
        if shown[d] == 0 {
            continue;
        }
        let rate = accepted[d] as f64 / shown[d] as f64;
        let y = H - BOTTOM - plot_h * rate;
        points.push(format!("{x:.1},{y:.1}"));
        let _ = write!(
            svg,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"#d8643b\"><title>{} of {} accepted</title></circle>",
            accepted[d], shown[d]
        );
    }
    let _ = writeln!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#d8643b\" stroke-width=\"2\"/></svg>",
        points.join(" ")
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: u64, lang: &str, latency_ms: u32, outcome: Outcome) -> Record {
        Record {
            t,
            lang: lang.into(),
            latency_ms,
            chars: 10,
            lines: 1,
            outcome,
            accepted_chars: None,
            typed_ahead: false,
            offered: 1,
            candidate: 0,
        }
    }

    #[test]
    fn records_round_trip_and_garbage_is_skipped() {
        let r = Record { accepted_chars: Some(4), outcome: Outcome::Partial, ..rec(5, "rust", 120, Outcome::Partial) };
        let line = r.to_line();
        assert!(line.ends_with('\n') && line.contains("\"outcome\":\"partial\""), "{line}");
        let text =
            format!("garbage\n{line}{{\"t\": 3}}\n\n{}{}", rec(6, "go", 1, Outcome::Accepted).to_line(), &line[..9]);
        let got = parse(&text);
        assert_eq!(got, vec![r, rec(6, "go", 1, Outcome::Accepted)]);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=10).collect();
        assert_eq!(percentile(&v, 50), 5);
        assert_eq!(percentile(&v, 90), 9);
        assert_eq!(percentile(&[7], 90), 7);
        assert_eq!(percentile(&[], 50), 0);
    }

    #[test]
    fn summaries_per_language_and_window() {
        let now = 100 * DAY;
        let mut rs = Vec::new();
        for i in 0..10 {
            let o = if i < 3 {
                Outcome::Accepted
            } else if i < 5 {
                Outcome::Partial
            } else {
                Outcome::Dismissed
            };
            rs.push(rec(now - 60, "python", (i + 1) * 10, o));
        }
        rs.push(rec(now - 2 * DAY, "rust", 500, Outcome::Accepted));
        rs.push(rec(now - 8 * DAY, "rust", 900, Outcome::Accepted));
        let day = summarize(&rs, now, DAY);
        assert_eq!(day.keys().collect::<Vec<_>>(), ["(all)", "python"]);
        let p = &day["python"];
        assert_eq!((p.shown, p.accepted, p.partial, p.latency_p50, p.latency_p90), (10, 3, 2, 50, 90));
        assert!((p.acceptance() - 0.3).abs() < 1e-9);
        let week = summarize(&rs, now, WEEK);
        assert_eq!(week["rust"].shown, 1, "the record of 8 days ago is outside the week");
        assert_eq!(week[ALL].shown, 11);
        let text = report(&rs, now);
        assert!(text.contains("last 24 hours:") && text.contains("python") && text.contains("30.0%"), "{text}");
        assert!(report(&[], now).contains("no suggestions shown"));
    }

    #[test]
    fn the_page_is_self_contained_with_both_plots() {
        let now = 100 * DAY;
        let rs: Vec<_> = (0..50)
            .map(|i| {
                let o = if i % 3 == 0 { Outcome::Accepted } else { Outcome::Dismissed };
                rec(now - (i % 9) * DAY / 2, "rust<&>", 30 + i as u32 * 40, o)
            })
            .collect();
        let page = html(&rs, now);
        assert!(page.contains("<svg id=\"latency\"") && page.contains("<svg id=\"acceptance\""));
        assert!(page.contains("rust&lt;&amp;&gt;"));
        assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="), "nothing loaded");
        assert!(html(&[], now).contains("No suggestions shown."));
    }
}
