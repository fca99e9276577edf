//! `wick doctor`: what a user needs to know when something is off, in plain
//! lines: this binary, the CPU and the kernels chosen, the model it would
//! load, the caches, the hub, the device, and whether an editor's
//! configuration points at this binary. It reads local files only; it never
//! contacts the network.

use crate::models::{self, gguf::GgufFile, tokenizer::Tokenizer};
use crate::prompt::Family;
use std::path::{Path, PathBuf};

/// One finding: a label, what was found, and whether it is a problem.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finding {
    pub label: &'static str,
    pub text: String,
    pub problem: bool,
}

impl Finding {
    fn ok(label: &'static str, text: impl Into<String>) -> Finding {
        Finding { label, text: text.into(), problem: false }
    }
    fn problem(label: &'static str, text: impl Into<String>) -> Finding {
        Finding { label, text: text.into(), problem: true }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Editor {
    Vscode,
    Nvim,
}

impl std::str::FromStr for Editor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vscode" | "code" => Ok(Editor::Vscode),
            "nvim" | "neovim" => Ok(Editor::Nvim),
            _ => Err(format!("unknown editor '{s}' (vscode or nvim)")),
        }
    }
}

pub(crate) struct DoctorOptions {
    pub model: Option<String>,
    pub device: String,
    pub editor: Option<Editor>,
}

/// Everything `wick doctor` checks, in order.
pub(crate) fn findings(opts: &DoctorOptions) -> Vec<Finding> {
    let mut out = Vec::new();
    let exe = std::env::current_exe().ok();
    out.push(Finding::ok(
        "wick",
        format!(
            "{} ({}), {}",
            env!("CARGO_PKG_VERSION"),
            if cfg!(feature = "cuda") { "built with the cuda feature" } else { "CPU build, no cuda feature" },
            exe.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "binary path unknown".into())
        ),
    ));
    out.push(Finding::ok("cpu", cpu_line()));
    out.push(Finding::ok(
        "kernels",
        format!("int8 matmul kernels: {} (WICK_Q8_KERNEL overrides)", crate::engine::cpu::kernel_name()),
    ));
    out.push(Finding::ok(
        "threads",
        format!(
            "{} for the model ({}; the `threads` setting or --threads overrides)",
            crate::engine::cpu::threads(),
            if std::env::var_os("WICK_THREADS").is_some() { "from WICK_THREADS" } else { "the machine's parallelism" }
        ),
    ));
    out.extend(model_findings(opts.model.as_deref()));
    out.push(Finding::ok(
        "cache",
        format!(
            "models in {} (WICK_MODEL_DIR overrides); hub cache {}",
            models::cache_dir().display(),
            models::hub::cache_root().display()
        ),
    ));
    out.push(Finding::ok(
        "hub",
        if models::hub::offline() {
            "HF_HUB_OFFLINE is set: hub models come from the local cache only".to_string()
        } else {
            "online mode, but wick downloads only when a setting or --model names a hub model \
             (owner/repo:file.gguf); set HF_HUB_OFFLINE=1 to forbid it"
                .to_string()
        },
    ));
    out.push(match crate::device::parse(&opts.device) {
        Ok(_) => Finding::ok("device", format!("{} is usable", opts.device)),
        Err(e) => Finding::problem("device", e.to_string()),
    });
    if let Some(editor) = opts.editor {
        out.extend(editor_findings(editor, exe.as_deref()));
    }
    out
}

/// The findings as text, one per line; problems marked.
pub(crate) fn render(findings: &[Finding]) -> String {
    let width = findings.iter().map(|f| f.label.len()).max().unwrap_or(0);
    let mut s = String::new();
    for f in findings {
        let mark = if f.problem { "!!" } else { "ok" };
        s.push_str(&format!("{mark} {:width$}  {}\n", f.label, f.text));
    }
    let problems = findings.iter().filter(|f| f.problem).count();
    s.push_str(&match problems {
        0 => "no problems found\n".to_string(),
        n => format!("{n} problem{} found (lines marked !!)\n", if n == 1 { "" } else { "s" }),
    });
    s
}

fn cpu_line() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let name = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut features = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("avx2", is_x86_feature_detected!("avx2")),
            ("fma", is_x86_feature_detected!("fma")),
            ("f16c", is_x86_feature_detected!("f16c")),
            ("avxvnni", is_x86_feature_detected!("avxvnni")),
            ("avx512f", is_x86_feature_detected!("avx512f")),
            ("avx512vnni", is_x86_feature_detected!("avx512vnni")),
        ] {
            if on {
                features.push(name);
            }
        }
    }
    let features = if features.is_empty() { "none of the SIMD features wick uses".into() } else { features.join(" ") };
    format!("{name}, {logical} threads available; features: {features}")
}

fn model_findings(spec: Option<&str>) -> Vec<Finding> {
    let path = match models::resolve(spec) {
        Ok(p) => p,
        Err(e) => return vec![Finding::problem("model", e.to_string())],
    };
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut out = vec![Finding::ok("model", format!("{} ({:.1} MB)", path.display(), size as f64 / 1e6))];
    let file = match GgufFile::open(&path) {
        Ok(f) => f,
        Err(e) => {
            out.push(Finding::problem("model file", e.to_string()));
            return out;
        }
    };
    let arch = file.architecture().unwrap_or_else(|_| "unknown".into());
    let layers = file.meta_u32(&format!("{arch}.block_count")).map(|n| n.to_string()).unwrap_or("?".into());
    let hidden = file.meta_u32(&format!("{arch}.embedding_length")).map(|n| n.to_string()).unwrap_or("?".into());
    let supported = matches!(arch.as_str(), "qwen2" | "llama");
    let text = format!("architecture {arch}, {layers} layers, hidden size {hidden}");
    out.push(if supported {
        Finding::ok("model file", text)
    } else {
        Finding::problem("model file", format!("{text}: wick runs qwen2 and llama only"))
    });
    out.push(match Tokenizer::from_gguf(&file.content) {
        Ok(t) => match Family::detect(|s| t.token_id(s).is_some()) {
            Some(f) => {
                let tk = f.tokens();
                Finding::ok(
                    "fim",
                    format!(
                        "{} tokens present ({} {} {}): fill-in-the-middle works",
                        f.name(),
                        tk.prefix,
                        tk.suffix,
                        tk.middle
                    ),
                )
            }
            None => Finding::problem(
                "fim",
                "no fill-in-the-middle tokens in the vocabulary: completions continue the prefix only",
            ),
        },
        Err(e) => Finding::problem("tokenizer", e.to_string()),
    });
    out
}

/// `wick` as the editor would find it on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Whether a server path found in an editor's configuration is this binary.
fn points_here(label: &'static str, found: &Path, how: &str, exe: Option<&Path>) -> Finding {
    match exe {
        Some(e) if same_file(found, e) => Finding::ok(label, format!("{how}: {} (this binary)", found.display())),
        Some(e) if found.is_file() => {
            Finding::problem(label, format!("{how}: {}, which is not this binary ({})", found.display(), e.display()))
        }
        _ => Finding::problem(label, format!("{how}: {}, which does not exist", found.display())),
    }
}

fn editor_findings(editor: Editor, exe: Option<&Path>) -> Vec<Finding> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    match editor {
        Editor::Vscode => {
            // User settings of VS Code, VS Code OSS, code-server, and the
            // remote servers' machine settings.
            let candidates = [
                ".config/Code/User/settings.json",
                ".config/Code - OSS/User/settings.json",
                ".config/VSCodium/User/settings.json",
                ".local/share/code-server/User/settings.json",
                ".local/share/code-server/Machine/settings.json",
                ".vscode-server/data/Machine/settings.json",
            ];
            let mut out = Vec::new();
            let mut configured = false;
            for rel in candidates {
                let file = home.join(rel);
                let Ok(text) = std::fs::read_to_string(&file) else { continue };
                match serde_json::from_str::<serde_json::Value>(&strip_jsonc(&text)) {
                    Ok(v) => {
                        if v.get("wick.enable") == Some(&serde_json::Value::Bool(false)) {
                            out.push(Finding::problem("vscode", format!("wick.enable is false in {}", file.display())));
                        }
                        if let Some(p) = v.get("wick.serverPath").and_then(|p| p.as_str()).filter(|p| !p.is_empty()) {
                            configured = true;
                            let how = format!("wick.serverPath in {}", file.display());
                            out.push(points_here("vscode", Path::new(p), &how, exe));
                        }
                    }
                    Err(e) => {
                        out.push(Finding::problem("vscode", format!("{} is not valid JSON: {e}", file.display())))
                    }
                }
            }
            if !configured {
                out.push(path_finding("vscode", "no wick.serverPath set, so the extension runs `wick` from PATH", exe));
            }
            out
        }
        Editor::Nvim => {
            let mut out =
                vec![path_finding("nvim", "the plugin runs `wick` from PATH unless setup() names server_path", exe)];
            if on_path("nvim").is_none() {
                out.push(Finding::problem("nvim", "nvim is not on PATH"));
            }
            out
        }
    }
}

fn path_finding(label: &'static str, how: &str, exe: Option<&Path>) -> Finding {
    match on_path("wick") {
        Some(p) => points_here(label, &p, how, exe),
        None => Finding::problem(
            label,
            format!("{how}, and there is none on PATH: `cargo install --path .` or set the server path"),
        ),
    }
}

/// JSON with comments and trailing commas (VS Code's settings) as JSON.
fn strip_jsonc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    }
    // Trailing commas before a closing bracket.
    let mut cleaned = String::with_capacity(out.len());
    let bytes: Vec<char> = out.chars().collect();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            if c == '\\' && i + 1 < bytes.len() {
                cleaned.push(c);
                cleaned.push(bytes[i + 1]);
                i += 2;
                continue;
            }
            if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c == ',' {
            let next = bytes[i + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}') | Some(']')) {
                i += 1;
                continue;
            }
        }
        cleaned.push(c);
        i += 1;
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_with_comments_and_trailing_commas_parse() {
        let text = "{\n  // the server\n  \"wick.serverPath\": \"/a//b\", /* block */\n  \"x\": [1, 2,],\n}\n";
        let v: serde_json::Value = serde_json::from_str(&strip_jsonc(text)).unwrap();
        assert_eq!(v["wick.serverPath"], "/a//b");
        assert_eq!(v["x"], serde_json::json!([1, 2]));
    }

    #[test]
    fn problems_are_marked_and_counted() {
        let f = [Finding::ok("a", "fine"), Finding::problem("model", "missing")];
        let s = render(&f);
        assert!(s.contains("ok a      fine"), "{s}");
        assert!(s.contains("!! model  missing"), "{s}");
        assert!(s.ends_with("1 problem found (lines marked !!)\n"), "{s}");
    }
}
