//! Server configuration: from initializationOptions and
//! workspace/didChangeConfiguration, validated once at the edge. Unknown keys
//! and bad values are reported back; a bad value keeps the previous setting.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Multiline {
    /// From the syntax at the cursor: a body for an empty line in a block
    /// just opened, the rest of the line in the middle of an expression.
    #[default]
    Auto,
    Always,
    Never,
}

/// How the completion prompt is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PromptMode {
    /// Chosen per model by the real-code benchmark (docs/benchmarks.md).
    #[default]
    Auto,
    /// Fill-in-the-middle in the model family's format (`fimOrder`).
    Fim,
    /// Plain continuation of the code before the cursor; the code after it
    /// still ends the answer (post-processing, stop rules).
    Prefix,
}

/// When wick publishes its own syntax diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum DiagnosticsMode {
    /// On open and after each pause in typing.
    #[default]
    #[serde(rename = "on")]
    On,
    /// Never (code actions still fix other servers' diagnostics).
    #[serde(rename = "off")]
    Off,
    /// On open and when the document is saved.
    #[serde(rename = "onSave")]
    OnSave,
}

/// The severity wick's syntax diagnostics carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    /// The default: visible, without adding to the errors the language's
    /// own server reports for the same mistake.
    #[default]
    Information,
    Hint,
}

/// The wire protocol of a serving engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// `POST /v1/completions`, SSE (vLLM, llama.cpp, TGI, Ollama, LM Studio).
    OpenAi,
    /// llama.cpp's own `POST /completion` with `cache_prompt` and slots.
    LlamaCpp,
    /// Ollama's `POST /api/generate` with `raw: true`, NDJSON.
    Ollama,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::OpenAi => "openai",
            BackendKind::LlamaCpp => "llama.cpp",
            BackendKind::Ollama => "ollama",
        }
    }

    pub fn parse(s: &str) -> Option<BackendKind> {
        match s {
            "openai" => Some(BackendKind::OpenAi),
            "llama.cpp" | "llamacpp" | "llama-cpp" => Some(BackendKind::LlamaCpp),
            "ollama" => Some(BackendKind::Ollama),
            _ => None,
        }
    }
}

/// Everything a remote backend needs; built from the `backend` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOptions {
    pub kind: BackendKind,
    /// Base URL, without a trailing slash (`http://gpu-box:8000`).
    pub url: String,
    /// The served model's name; empty: the first one the server lists.
    pub model: String,
    /// The environment variable holding the API key (never the key itself).
    pub api_key_env: Option<String>,
    /// Longest wait for the server's first answer and between two parts of
    /// a stream.
    pub timeout: std::time::Duration,
    /// A PEM file of extra root certificates (a company CA).
    pub ca_file: Option<String>,
    /// The FIM format; None: from the model's name or the local model file.
    pub family: Option<crate::prompt::Family>,
    /// The served model's context window in tokens: with a vocabulary
    /// (`tokenizer`), a prompt that does not fit is not sent.
    pub context: usize,
    /// The served model's tokenizer: a GGUF or `tokenizer.json` path, or a
    /// hub repository (`owner/repo`, its `tokenizer.json`).
    pub tokenizer: Option<String>,
}

impl RemoteOptions {
    /// How the backend names itself in the status line and logs.
    pub fn label(&self) -> String {
        let model = if self.model.is_empty() { "(first served model)" } else { &self.model };
        format!("{} {model} at {}", self.kind.name(), self.url)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Model path, cache file name, `1.5b`, or hub reference; None = default.
    pub model: Option<String>,
    pub device: String,
    pub max_tokens: usize,
    pub temperature: f32,
    /// Prompt budget in tokens (prefix + suffix + extra context).
    pub context_tokens: usize,
    /// languageIds to complete in; empty = all.
    pub languages: Vec<String>,
    pub multiline: Multiline,
    /// Server-side wait before starting a completion; a newer request for the
    /// same document within it wins.
    pub debounce_ms: u64,
    /// Wall-clock budget of one completion.
    pub timeout_ms: u64,
    pub fim_order: crate::prompt::FimOrder,
    pub prompt: PromptMode,
    /// Lines after the cursor's line shown to the model; 0: as many as the
    /// budget allows.
    pub suffix_lines: usize,
    pub threads: Option<usize>,
    /// Complete inside comments and strings too.
    pub in_comments: bool,
    pub diagnostics: DiagnosticsMode,
    pub diagnostics_severity: Severity,
    /// Prefill the prompt where the cursor is, at idle priority, before the
    /// first keystroke there.
    pub prefetch: bool,
    /// A remote serving engine instead of the in-process model; None: local.
    pub backend: Option<RemoteOptions>,
    /// Record each suggestion's outcome in the local statistics file.
    pub stats: bool,
    /// Suggestions offered when the editor asks for more than one (its
    /// next/previous commands, an explicit trigger): 1 to 3. Completions
    /// while typing offer one, so typing pays nothing for the others.
    pub suggestions: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            model: None,
            device: "cpu".into(),
            max_tokens: 96,
            temperature: 0.0,
            context_tokens: 1536,
            languages: Vec::new(),
            multiline: Multiline::Auto,
            debounce_ms: 0,
            timeout_ms: 5000,
            fim_order: crate::prompt::FimOrder::Psm,
            prompt: PromptMode::Auto,
            suffix_lines: 0,
            threads: None,
            in_comments: false,
            diagnostics: DiagnosticsMode::On,
            diagnostics_severity: Severity::Information,
            prefetch: true,
            backend: None,
            stats: true,
            suggestions: 3,
        }
    }
}

/// The most suggestions one answer offers (the `suggestions` setting).
pub(crate) const MAX_SUGGESTIONS: usize = 3;

/// Every key the server understands, with its JSON type, for validation and
/// for the editors' settings (kept in sync by a test).
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "model",
        "string",
        "Model: GGUF path, cache file name, '1.5b', or hub reference owner/repo:file.gguf. Empty: the default model.",
    ),
    ("device", "string", "Compute device: cpu, cuda or cuda:N."),
    ("maxTokens", "integer", "Most tokens generated per completion."),
    ("temperature", "number", "Sampling temperature; 0 is greedy."),
    ("contextTokens", "integer", "Prompt budget in tokens."),
    ("languages", "array", "languageIds to complete in; empty means all."),
    ("multiline", "string", "auto, always or never."),
    ("debounceMs", "integer", "Server-side debounce in milliseconds."),
    ("timeoutMs", "integer", "Wall-clock budget of one completion in milliseconds."),
    ("fimOrder", "string", "Fill-in-the-middle order: psm or spm."),
    ("prompt", "string", "Prompt layout: auto (chosen per model by measurement), fim or prefix (plain continuation)."),
    (
        "suffixLines",
        "integer",
        "Lines after the cursor's line shown to the model; 0 means as many as the budget allows.",
    ),
    ("threads", "integer", "CPU threads for the model (restart to apply)."),
    ("inComments", "boolean", "Also complete inside comments and strings."),
    (
        "diagnostics",
        "string",
        "wick's syntax diagnostics: on (after a pause in typing), off, or onSave. Code actions work in every mode.",
    ),
    ("diagnosticsSeverity", "string", "Severity of wick's syntax diagnostics: error, warning, information or hint."),
    (
        "prefetch",
        "boolean",
        "Prepare the model's cache where the cursor is, while idle, so the first suggestion there comes sooner.",
    ),
    (
        "stats",
        "boolean",
        "Record each suggestion's language, latency, length and outcome in a local file for `wick stats` (never sent anywhere).",
    ),
    (
        "suggestions",
        "integer",
        "Suggestions to cycle through when asked for more (the editor's next/previous suggestion keys): 1 to 3. Suggestions while typing stay one.",
    ),
    (
        "backend",
        "object",
        "Where the model runs: kind local (the default, in-process) or a team server: kind openai, llama.cpp or ollama, with url, model, apiKeyEnv (the name of an environment variable holding the API key), timeoutMs, caFile, fimTemplate, tokenizer and contextWindow.",
    ),
];

/// Why a setting was not applied.
enum SetError {
    Unknown,
    Invalid(String),
}

impl From<String> for SetError {
    fn from(e: String) -> Self {
        SetError::Invalid(e)
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Problems {
    pub unknown: Vec<String>,
    pub invalid: Vec<String>,
}

impl Problems {
    pub fn is_empty(&self) -> bool {
        self.unknown.is_empty() && self.invalid.is_empty()
    }

    pub fn message(&self) -> String {
        let mut parts = Vec::new();
        if !self.unknown.is_empty() {
            parts.push(format!("unknown settings ignored: {}", self.unknown.join(", ")));
        }
        if !self.invalid.is_empty() {
            parts.push(format!("invalid settings kept at their previous value: {}", self.invalid.join("; ")));
        }
        format!("wick: {}", parts.join(". "))
    }
}

impl Config {
    /// Applies a settings object (flat, or under a "wick" key) on top of self.
    pub fn update(&mut self, value: &Value) -> Problems {
        let mut problems = Problems::default();
        let obj = match value.get("wick").unwrap_or(value) {
            Value::Object(m) => m,
            Value::Null => return problems,
            // An empty Lua table arrives as [] from Neovim: no settings.
            Value::Array(a) if a.is_empty() => return problems,
            other => {
                problems.invalid.push(format!("settings must be an object, got {other}"));
                return problems;
            }
        };
        for (key, v) in obj {
            match self.set(key, v) {
                Ok(()) => {}
                Err(SetError::Unknown) => problems.unknown.push(key.clone()),
                Err(SetError::Invalid(e)) => problems.invalid.push(format!("{key}: {e}")),
            }
        }
        problems
    }

    fn set(&mut self, key: &str, v: &Value) -> Result<(), SetError> {
        fn uint(v: &Value, min: u64, max: u64) -> Result<u64, String> {
            match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(format!("expected an integer in {min}..={max}, got {v}")),
            }
        }
        fn boolean(v: &Value) -> Result<bool, String> {
            v.as_bool().ok_or_else(|| format!("expected true or false, got {v}"))
        }
        fn string(v: &Value) -> Result<String, String> {
            v.as_str().map(str::to_string).ok_or_else(|| format!("expected a string, got {v}"))
        }
        match key {
            "model" => {
                self.model = match v {
                    Value::Null => None,
                    _ => Some(string(v)?).filter(|s| !s.is_empty()),
                }
            }
            "device" => {
                let d = string(v)?;
                let ok = d == "cpu" || d == "cuda" || d.strip_prefix("cuda:").is_some_and(|n| n.parse::<u32>().is_ok());
                if !ok {
                    return Err(format!("expected cpu, cuda or cuda:N, got '{d}'").into());
                }
                self.device = d;
            }
            "maxTokens" => self.max_tokens = uint(v, 1, 2048)? as usize,
            "temperature" => match v.as_f64() {
                Some(t) if (0.0..=2.0).contains(&t) => self.temperature = t as f32,
                _ => return Err(format!("expected a number in 0..=2, got {v}").into()),
            },
            "contextTokens" => self.context_tokens = uint(v, 64, 32768)? as usize,
            "languages" => {
                let arr = v.as_array().ok_or_else(|| format!("expected an array of languageIds, got {v}"))?;
                let mut out = Vec::new();
                for x in arr {
                    out.push(string(x)?);
                }
                self.languages = out;
            }
            "multiline" => {
                self.multiline =
                    serde_json::from_value(v.clone()).map_err(|_| format!("expected auto, always or never, got {v}"))?
            }
            "debounceMs" => self.debounce_ms = uint(v, 0, 10_000)?,
            "timeoutMs" => self.timeout_ms = uint(v, 50, 600_000)?,
            "fimOrder" => self.fim_order = string(v)?.parse::<crate::prompt::FimOrder>()?,
            "prompt" => {
                self.prompt =
                    serde_json::from_value(v.clone()).map_err(|_| format!("expected auto, fim or prefix, got {v}"))?
            }
            "suffixLines" => self.suffix_lines = uint(v, 0, 10_000)? as usize,
            "threads" => {
                self.threads = match v {
                    Value::Null => None,
                    _ => Some(uint(v, 1, 1024)? as usize),
                }
            }
            "inComments" => self.in_comments = boolean(v)?,
            "prefetch" => self.prefetch = boolean(v)?,
            "stats" => self.stats = boolean(v)?,
            "suggestions" => self.suggestions = uint(v, 1, MAX_SUGGESTIONS as u64)? as usize,
            "diagnostics" => {
                self.diagnostics =
                    serde_json::from_value(v.clone()).map_err(|_| format!("expected on, off or onSave, got {v}"))?
            }
            "diagnosticsSeverity" => {
                self.diagnostics_severity = serde_json::from_value(v.clone())
                    .map_err(|_| format!("expected error, warning, information or hint, got {v}"))?
            }
            "backend" => self.backend = backend(v)?,
            _ => return Err(SetError::Unknown),
        }
        Ok(())
    }

    pub(crate) fn language_enabled(&self, language: &str) -> bool {
        self.languages.is_empty() || self.languages.iter().any(|l| l == language || l == "*")
    }
}

/// The `backend` setting: `"local"`, or an object naming a remote engine.
fn backend(v: &Value) -> Result<Option<RemoteOptions>, String> {
    let obj = match v {
        Value::Null => return Ok(None),
        Value::String(s) if s == "local" => return Ok(None),
        Value::Object(m) => m,
        other => return Err(format!("expected \"local\" or an object with kind and url, got {other}")),
    };
    const FIELDS: [&str; 10] = [
        "kind",
        "url",
        "model",
        "apiKeyEnv",
        "timeoutMs",
        "caFile",
        "fimTemplate",
        "contextWindow",
        "tokenizer",
        "apiKey",
    ];
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("unknown field '{k}' (known: {})", FIELDS[..9].join(", ")));
    }
    if obj.contains_key("apiKey") {
        return Err("an API key never goes into the settings: put it in an environment variable and name that \
                    variable in apiKeyEnv"
            .into());
    }
    let text = |k: &str| -> Result<Option<String>, String> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(o) => Err(format!("{k}: expected a string, got {o}")),
        }
    };
    let kind = text("kind")?.unwrap_or_else(|| "local".into());
    if kind == "local" {
        return Ok(None);
    }
    let kind = BackendKind::parse(&kind)
        .ok_or_else(|| format!("kind: expected local, openai, llama.cpp or ollama, got '{kind}'"))?;
    let url = text("url")?.ok_or("url: a remote backend needs the server's URL (http://host:port)")?;
    let url = url.trim_end_matches('/').to_string();
    let url = url.strip_suffix("/v1").unwrap_or(&url).to_string();
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    if rest.is_none_or(|r| r.is_empty() || r.starts_with('/') || r.contains(char::is_whitespace)) {
        return Err(format!("url: expected http://host:port or https://host, got '{url}'"));
    }
    let api_key_env = text("apiKeyEnv")?;
    if let Some(e) = &api_key_env {
        if !e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("apiKeyEnv: the name of an environment variable (letters, digits, _), got '{e}'"));
        }
    }
    let timeout_ms = match obj.get("timeoutMs") {
        None | Some(Value::Null) => 10_000,
        Some(t) => match t.as_u64() {
            Some(n) if (100..=600_000).contains(&n) => n,
            _ => return Err(format!("timeoutMs: expected an integer in 100..=600000, got {t}")),
        },
    };
    let context = match obj.get("contextWindow") {
        None | Some(Value::Null) => 32_768,
        Some(t) => match t.as_u64() {
            Some(n) if (256..=10_000_000).contains(&n) => n as usize,
            _ => return Err(format!("contextWindow: expected an integer in 256..=10000000, got {t}")),
        },
    };
    let family = match text("fimTemplate")? {
        None => None,
        Some(f) => Some(
            crate::prompt::Family::ALL.into_iter().find(|x| x.name() == f.to_ascii_lowercase()).ok_or_else(|| {
                let names: Vec<_> = crate::prompt::Family::ALL.iter().map(|x| x.name()).collect();
                format!("fimTemplate: expected one of {}, got '{f}'", names.join(", "))
            })?,
        ),
    };
    let model = text("model")?.unwrap_or_default();
    if model.is_empty() && kind == BackendKind::Ollama {
        return Err("model: ollama needs the model's name (ollama list)".into());
    }
    Ok(Some(RemoteOptions {
        kind,
        url,
        model,
        api_key_env,
        timeout: std::time::Duration::from_millis(timeout_ms),
        ca_file: text("caFile")?,
        family,
        context,
        tokenizer: text("tokenizer")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn updates_validate_and_report() {
        let mut c = Config::default();
        let p = c.update(&json!({"wick": {"maxTokens": 32, "temperature": 5, "bogus": 1, "multiline": "never"}}));
        assert_eq!(c.max_tokens, 32);
        assert_eq!(c.temperature, 0.0);
        assert_eq!(c.multiline, Multiline::Never);
        assert_eq!(p.unknown, vec!["bogus".to_string()]);
        assert_eq!(p.invalid.len(), 1);
        assert!(p.message().contains("bogus"));
        assert!(c.update(&json!(null)).is_empty());
        let p = c.update(&json!({"diagnostics": "sometimes", "diagnosticsSeverity": "warning"}));
        assert_eq!(c.diagnostics, DiagnosticsMode::On);
        assert_eq!(c.diagnostics_severity, Severity::Warning);
        assert!(p.message().contains("expected on, off or onSave"), "{}", p.message());
        // Suggestions: 1 to 3; anything else is reported and leaves it.
        for bad in [json!(0), json!(4), json!(-1), json!("two"), json!(2.5)] {
            let p = c.update(&json!({"suggestions": bad}));
            assert_eq!(p.invalid.len(), 1, "{bad}");
            assert_eq!(c.suggestions, 3);
        }
        assert!(c.update(&json!({"suggestions": 1})).is_empty());
        assert_eq!(c.suggestions, 1);
    }

    #[test]
    fn an_empty_array_is_no_settings() {
        let mut c = Config::default();
        assert!(c.update(&json!([])).is_empty());
        assert_eq!(c, Config::default());
        assert!(!c.update(&json!([1])).is_empty());
    }

    #[test]
    fn every_key_is_settable() {
        let sample = |ty: &str| match ty {
            "string" => json!("cpu"),
            "integer" => json!(100),
            "number" => json!(0.5),
            "array" => json!(["python"]),
            "boolean" => json!(true),
            "object" => json!({}),
            _ => unreachable!(),
        };
        for (k, ty, _) in KEYS {
            let mut c = Config::default();
            let v = match *k {
                "multiline" => json!("always"),
                "fimOrder" => json!("spm"),
                "prompt" => json!("prefix"),
                "diagnostics" => json!("onSave"),
                "diagnosticsSeverity" => json!("hint"),
                "suggestions" => json!(2),
                "backend" => json!({"kind": "openai", "url": "http://127.0.0.1:8000"}),
                _ => sample(ty),
            };
            let p = c.update(&json!({ *k: v }));
            assert!(p.is_empty(), "{k}: {p:?}");
        }
    }

    #[test]
    fn the_backend_setting_is_validated() {
        let mut c = Config::default();
        let p = c.update(
            &json!({"backend": {"kind": "openai", "url": "http://gpu:8000/v1/", "model": "Qwen/Qwen2.5-Coder-7B",
            "apiKeyEnv": "WICK_KEY", "timeoutMs": 2000, "fimTemplate": "qwen2.5-coder"}}),
        );
        assert!(p.is_empty(), "{p:?}");
        let b = c.backend.clone().unwrap();
        assert_eq!(b.url, "http://gpu:8000");
        assert_eq!(b.timeout.as_millis(), 2000);
        assert_eq!(b.family, Some(crate::prompt::Family::QwenCoder));
        for (bad, says) in [
            (json!({"kind": "vllm", "url": "http://x"}), "kind"),
            (json!({"kind": "openai"}), "url"),
            (json!({"kind": "openai", "url": "ftp://x"}), "url"),
            (json!({"kind": "openai", "url": "http://x", "apiKey": "sk-123"}), "environment variable"),
            (json!({"kind": "openai", "url": "http://x", "apiKeyEnv": "A B"}), "apiKeyEnv"),
            (json!({"kind": "openai", "url": "http://x", "timeoutMs": 5}), "timeoutMs"),
            (json!({"kind": "openai", "url": "http://x", "fimTemplate": "gpt"}), "fimTemplate"),
            (json!({"kind": "ollama", "url": "http://x"}), "model"),
            (json!({"kind": "openai", "url": "http://x", "bogus": 1}), "bogus"),
            (json!(3), "local"),
        ] {
            let p = c.update(&json!({ "backend": bad }));
            assert!(p.message().contains(says), "{bad}: {}", p.message());
            assert!(!p.message().contains("sk-123"), "the key is never repeated");
            assert_eq!(c.backend.as_ref(), Some(&b), "a bad value keeps the previous one");
        }
        assert!(c.update(&json!({"backend": "local"})).is_empty());
        assert_eq!(c.backend, None);
        assert!(c.update(&json!({"backend": {"kind": "local"}})).is_empty());
    }
}
