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
        }
    }
}

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
            "diagnostics" => {
                self.diagnostics =
                    serde_json::from_value(v.clone()).map_err(|_| format!("expected on, off or onSave, got {v}"))?
            }
            "diagnosticsSeverity" => {
                self.diagnostics_severity = serde_json::from_value(v.clone())
                    .map_err(|_| format!("expected error, warning, information or hint, got {v}"))?
            }
            _ => return Err(SetError::Unknown),
        }
        Ok(())
    }

    pub fn language_enabled(&self, language: &str) -> bool {
        self.languages.is_empty() || self.languages.iter().any(|l| l == language || l == "*")
    }
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
                _ => sample(ty),
            };
            let p = c.update(&json!({ *k: v }));
            assert!(p.is_empty(), "{k}: {p:?}");
        }
    }
}
