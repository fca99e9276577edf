//! ARCHITECTURE.md's "must not know" column, checked: each room of `src/`
//! may name only the rooms listed for it, and protocol types
//! (`tower_lsp_server`, `ls_types`) appear only under `src/server/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The room a source file belongs to: `src/syntax/parse.rs` -> `syntax`,
/// `src/text.rs` -> `text`.
fn room(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// The crate's modules a file names: `crate::x` paths and the names in
/// `use crate::{x, y::z}` groups. Comments are skipped.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for item in inner.split(',') {
                    let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            } else {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn rooms_name_only_what_they_may_know() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // What a room must not name (ARCHITECTURE.md, "must not know").
    let forbidden: &[(&str, &[&str])] = &[
        (
            "text",
            &["syntax", "workspace", "complete", "actions", "engine", "models", "server", "config", "prompt", "cli"],
        ),
        ("syntax", &["engine", "models", "server", "complete", "actions", "workspace", "config", "cli"]),
        ("workspace", &["engine", "models", "server", "complete", "actions", "config", "prompt", "cli"]),
        ("prompt", &["engine", "server", "workspace", "syntax", "complete", "actions", "cli"]),
        ("models", &["server", "workspace", "syntax", "complete", "actions", "cli"]),
        ("engine", &["server", "workspace", "syntax", "complete", "actions", "cli"]),
        ("config", &["server", "engine", "workspace", "cli"]),
        ("complete", &["server", "workspace", "cli"]),
        ("actions", &["server", "workspace", "cli"]),
        ("device", &["server", "workspace", "complete", "actions", "cli"]),
        ("server", &["cli"]),
        (
            "stats",
            &[
                "syntax",
                "workspace",
                "complete",
                "actions",
                "engine",
                "models",
                "server",
                "config",
                "prompt",
                "device",
                "cli",
            ],
        ),
    ];
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut problems = Vec::new();
    for f in &all {
        let text = std::fs::read_to_string(f).unwrap();
        let r = room(&src, f);
        let rel = f.strip_prefix(&src).unwrap().display().to_string();
        if r != "server" && (text.contains("tower_lsp_server") || text.contains("ls_types")) {
            // main.rs starts the server through `wick::server` only.
            problems.push(format!("{rel}: protocol types outside src/server/"));
        }
        if let Some((_, deny)) = forbidden.iter().find(|(room, _)| *room == r) {
            for n in named(&text) {
                if deny.contains(&n.as_str()) {
                    problems.push(format!("{rel}: the {r} room names crate::{n}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "ARCHITECTURE.md's boundaries are crossed:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_plain_paths() {
    let t = "use crate::{syntax::Lang, engine};\nlet x = crate::server::f(); // crate::models\n";
    let n = named(t);
    assert!(n.contains("syntax") && n.contains("engine") && n.contains("server") && !n.contains("models"), "{n:?}");
}

/// ARCHITECTURE.md: "Positions cross the protocol edge once". Outside
/// `server/proto.rs`, the server's code (its tests aside) makes no LSP
/// position and converts no offsets itself.
#[test]
fn positions_cross_the_protocol_edge_once() {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let forbidden = [
        "Position::new(",
        "Position {",
        ".character",
        "line_to_char",
        "char_to_line",
        "byte_to_char",
        "char_to_byte",
        "line_to_byte",
        "byte_to_line",
        "documents::char_at",
        "documents::pos_of",
    ];
    let mut all = Vec::new();
    files(&server, &mut all);
    let mut problems = Vec::new();
    for f in all.iter().filter(|f| !f.ends_with("proto.rs")) {
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or("");
            // Log fields may name a position's parts.
            if line.contains("tracing::") {
                continue;
            }
            for pat in forbidden.iter().filter(|p| line.contains(*p)) {
                problems.push(format!("{}:{}: `{pat}` outside server/proto.rs", f.display(), n + 1));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// ARCHITECTURE.md: "one file per language". Outside `src/syntax/lang/`,
/// code (tests aside) does not branch on a particular language: it asks
/// `Lang::rules()`.
#[test]
fn language_knowledge_lives_in_one_file_per_language() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let variants = ["Rust", "Python", "JavaScript", "TypeScript", "Tsx", "Go", "C", "Cpp", "Java"];
    let mut problems = Vec::new();
    for f in all.iter().filter(|f| !f.starts_with(src.join("syntax/lang")) && !f.ends_with("tests.rs")) {
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or("");
            for v in variants {
                let pat = format!("Lang::{v}");
                let branches = line.match_indices(&pat).any(|(i, _)| {
                    let after = &line[i + pat.len()..];
                    let word_ends = !after.starts_with(|c: char| c.is_alphanumeric() || c == '_');
                    let before = line[..i].trim_end();
                    word_ends
                        && (after.trim_start().starts_with("=>")
                            || after.trim_start().starts_with('|')
                            || before.ends_with("==")
                            || before.ends_with("!=")
                            || before.ends_with('|'))
                });
                if branches {
                    problems.push(format!("{}:{}: branches on Lang::{v}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "language knowledge outside src/syntax/lang/:\n{}", problems.join("\n"));
}

/// ARCHITECTURE.md: "items are `pub(crate)` unless another crate needs
/// them", so the compiler reports dead code. Every `pub` item under `src/`
/// must be named by another crate of the package (the tests, `main.rs`,
/// the fuzz targets), or appear in the signature (or public fields) of a
/// `pub` item that is; the rest are `pub(crate)` or private. Names are
/// matched as words, so this errs on the side of `pub`.
#[test]
fn pub_items_are_used_outside_the_library() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let words = |text: &str| -> BTreeSet<String> {
        text.split(|c: char| !c.is_alphanumeric() && c != '_').filter(|w| !w.is_empty()).map(String::from).collect()
    };
    let mut outside = Vec::new();
    files(&root.join("tests"), &mut outside);
    files(&root.join("fuzz"), &mut outside);
    outside.push(root.join("src/main.rs"));
    let mut named = BTreeSet::new();
    for f in &outside {
        named.extend(words(&std::fs::read_to_string(f).unwrap()));
    }
    // Every `pub` item: where it is, its name, and the names its signature
    // (a function's up to its body, a type's public fields) shows.
    let mut all = Vec::new();
    files(&root.join("src"), &mut all);
    let kinds = ["fn ", "async fn ", "unsafe fn ", "struct ", "enum ", "const ", "static ", "type ", "trait ", "mod "];
    let mut items = Vec::new();
    for f in all.iter().filter(|f| !f.ends_with("src/main.rs")) {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let indent = &line[..line.len() - line.trim_start().len()];
            let Some(rest) = line.trim_start().strip_prefix("pub ") else { continue };
            let Some(kind) = kinds.iter().find(|k| rest.starts_with(**k)) else { continue };
            let name: String = rest[kind.len()..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let mut shown = String::new();
            if *kind == "struct " || *kind == "enum " {
                for l in &lines[n..] {
                    let t = l.trim_start();
                    if *kind == "enum " || t.starts_with("pub ") || l.len() == line.len() {
                        shown.push_str(l);
                    }
                    if l.starts_with(&format!("{indent}}}")) || (l.len() == line.len() && l.ends_with(';')) {
                        break;
                    }
                }
            } else if *kind != "mod " {
                for l in &lines[n..] {
                    shown.push_str(l.split('{').next().unwrap_or(""));
                    if l.contains('{') || l.trim_end().ends_with(';') {
                        break;
                    }
                }
            }
            items.push((format!("{}:{}", f.display(), n + 1), format!("pub {kind}{name}"), name, words(&shown)));
        }
    }
    // What other crates name, and what a used item's signature shows.
    let mut used: BTreeSet<String> = named;
    loop {
        let before = used.len();
        for (_, _, name, shown) in &items {
            if used.contains(name) {
                used.extend(shown.iter().cloned());
            }
        }
        if used.len() == before {
            break;
        }
    }
    let problems: Vec<String> = items
        .iter()
        .filter(|(_, _, name, _)| !used.contains(name))
        .map(|(at, item, _, _)| format!("{at}: `{item}` is named by no other crate"))
        .collect();
    assert!(problems.is_empty(), "make these pub(crate) (or private):\n{}", problems.join("\n"));
}
