//! Prompts: fill-in-the-middle formats per model family, detected from the
//! tokenizer's vocabulary, and plain prefix continuation. Pure: no model, no
//! I/O. A prompt is a list of pieces; special tokens are named, never typed
//! into text, so code that contains `<|fim_prefix|>` stays text.

pub mod chat;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Special(&'static str),
    /// A control string from a chat template (`<|im_start|>`): one special
    /// token when the vocabulary has it as one, else plain text.
    Control(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompt {
    pub pieces: Vec<Piece>,
    /// The text piece that ends at the cursor, where the model's answer
    /// continues (token healing backs off its last token).
    pub cursor_piece: Option<usize>,
}

impl Prompt {
    pub fn text(&mut self, s: impl Into<String>) -> &mut Self {
        let s = s.into();
        if !s.is_empty() {
            self.pieces.push(Piece::Text(s));
        }
        self
    }

    pub fn special(&mut self, s: &'static str) -> &mut Self {
        self.pieces.push(Piece::Special(s));
        self
    }

    /// Puts `other` in front of this prompt (extra context).
    pub(crate) fn prepend(&mut self, other: Prompt) {
        let n = other.pieces.len();
        let mut pieces = other.pieces;
        pieces.append(&mut self.pieces);
        self.pieces = pieces;
        self.cursor_piece = self.cursor_piece.map(|i| i + n);
    }

    /// The prompt as readable text for snapshots: special and control
    /// tokens in brackets, `$0` after the piece that ends at the cursor.
    #[cfg(test)]
    pub(crate) fn shown(&self) -> String {
        self.pieces
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Piece::Special(s) => format!("[{s}]"),
                Piece::Control(s) => format!("[{s}]"),
                Piece::Text(t) if self.cursor_piece == Some(i) => format!("{t}$0"),
                Piece::Text(t) => t.clone(),
            })
            .collect()
    }

    /// Marks the last piece pushed as the one ending at the cursor.
    fn mark_cursor(&mut self) -> &mut Self {
        if matches!(self.pieces.last(), Some(Piece::Text(_))) {
            self.cursor_piece = Some(self.pieces.len() - 1);
        }
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    QwenCoder,
    StarCoder2,
    DeepSeekCoder,
    CodeLlama,
    CodeGemma,
}

/// Order of the pieces in a FIM prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FimOrder {
    /// prefix, suffix, then the model writes the middle.
    #[default]
    Psm,
    /// suffix first, then prefix: the prefix (where the user types) comes
    /// last, so the KV cache of the suffix stays reusable while typing.
    Spm,
}

impl std::str::FromStr for FimOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "psm" => Ok(FimOrder::Psm),
            "spm" => Ok(FimOrder::Spm),
            _ => Err(format!("unknown FIM order '{s}' (psm or spm)")),
        }
    }
}

/// The special tokens of one family's FIM format.
#[derive(Debug, Clone, Copy)]
pub struct FimTokens {
    pub prefix: &'static str,
    pub suffix: &'static str,
    pub middle: &'static str,
    /// Tokens after which the middle is over.
    pub stops: &'static [&'static str],
    /// Repository-level context tokens, where the family has them.
    pub repo_name: Option<&'static str>,
    pub file_sep: Option<&'static str>,
}

impl Family {
    pub const ALL: [Family; 5] =
        [Family::QwenCoder, Family::StarCoder2, Family::DeepSeekCoder, Family::CodeLlama, Family::CodeGemma];

    pub fn name(self) -> &'static str {
        match self {
            Family::QwenCoder => "qwen2.5-coder",
            Family::StarCoder2 => "starcoder2",
            Family::DeepSeekCoder => "deepseek-coder",
            Family::CodeLlama => "codellama",
            Family::CodeGemma => "codegemma",
        }
    }

    pub fn tokens(self) -> FimTokens {
        match self {
            Family::QwenCoder => FimTokens {
                prefix: "<|fim_prefix|>",
                suffix: "<|fim_suffix|>",
                middle: "<|fim_middle|>",
                stops: &[
                    "<|endoftext|>",
                    "<|fim_pad|>",
                    "<|im_end|>",
                    "<|file_sep|>",
                    "<|fim_prefix|>",
                    "<|fim_suffix|>",
                    "<|fim_middle|>",
                    "<|repo_name|>",
                ],
                repo_name: Some("<|repo_name|>"),
                file_sep: Some("<|file_sep|>"),
            },
            Family::StarCoder2 => FimTokens {
                prefix: "<fim_prefix>",
                suffix: "<fim_suffix>",
                middle: "<fim_middle>",
                stops: &["<|endoftext|>", "<fim_pad>", "<file_sep>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"],
                repo_name: Some("<repo_name>"),
                file_sep: Some("<file_sep>"),
            },
            Family::DeepSeekCoder => FimTokens {
                prefix: "<｜fim▁begin｜>",
                suffix: "<｜fim▁hole｜>",
                middle: "<｜fim▁end｜>",
                stops: &["<｜end▁of▁sentence｜>", "<|EOT|>", "<｜fim▁begin｜>"],
                repo_name: None,
                file_sep: None,
            },
            Family::CodeLlama => FimTokens {
                prefix: "▁<PRE>",
                suffix: "▁<SUF>",
                middle: "▁<MID>",
                stops: &["▁<EOT>", "</s>"],
                repo_name: None,
                file_sep: None,
            },
            Family::CodeGemma => FimTokens {
                prefix: "<|fim_prefix|>",
                suffix: "<|fim_suffix|>",
                middle: "<|fim_middle|>",
                stops: &["<|file_separator|>", "<eos>", "<|fim_prefix|>", "<end_of_turn>"],
                repo_name: None,
                file_sep: Some("<|file_separator|>"),
            },
        }
    }

    /// Every special token the family's prompts or stop rules use.
    pub fn all_special_tokens(self) -> Vec<&'static str> {
        let t = self.tokens();
        let mut v = vec![t.prefix, t.suffix, t.middle];
        v.extend_from_slice(t.stops);
        v.extend(t.repo_name);
        v.extend(t.file_sep);
        v.dedup();
        v
    }

    /// Detects the family from the special tokens in a vocabulary. The order
    /// matters: Qwen and CodeGemma share the `<|fim_*|>` names.
    pub fn detect(has: impl Fn(&str) -> bool) -> Option<Family> {
        if has("<|fim_prefix|>") && has("<|file_separator|>") {
            return Some(Family::CodeGemma);
        }
        if has("<|fim_prefix|>") && has("<|fim_middle|>") && has("<|endoftext|>") {
            return Some(Family::QwenCoder);
        }
        if has("<fim_prefix>") && has("<fim_middle>") {
            return Some(Family::StarCoder2);
        }
        if has("<｜fim▁begin｜>") && has("<｜fim▁hole｜>") {
            return Some(Family::DeepSeekCoder);
        }
        if has("▁<PRE>") && has("▁<MID>") {
            return Some(Family::CodeLlama);
        }
        None
    }

    /// A fill-in-the-middle prompt in the family's format.
    pub fn fim(self, prefix: &str, suffix: &str, order: FimOrder) -> Prompt {
        let t = self.tokens();
        let mut p = Prompt::default();
        match (self, order) {
            // CodeLlama's SPM puts the prefix after <MID> (its paper's format).
            (Family::CodeLlama, FimOrder::Spm) => {
                p.special(t.prefix).special(t.suffix).text(suffix).special(t.middle).text(prefix).mark_cursor();
            }
            (_, FimOrder::Psm) => {
                p.special(t.prefix).text(prefix).mark_cursor().special(t.suffix).text(suffix).special(t.middle);
            }
            (_, FimOrder::Spm) => {
                p.special(t.suffix).text(suffix).special(t.prefix).text(prefix).mark_cursor().special(t.middle);
            }
        }
        p
    }
}

/// A ChatML (Qwen instruct) request to fill the hole: for comparing the
/// instruct model's chat mode with FIM. The answer is the missing code.
pub(crate) fn chat_fill(prefix: &str, suffix: &str) -> Prompt {
    let mut p = Prompt::default();
    p.special("<|im_start|>")
        .text("system\nYou are a code completion engine. Reply with only the code that replaces <HOLE>, no explanation, no code fences.")
        .special("<|im_end|>")
        .text("\n")
        .special("<|im_start|>")
        .text(format!("user\n{prefix}<HOLE>{suffix}"))
        .special("<|im_end|>")
        .text("\n")
        .special("<|im_start|>")
        .text("assistant\n");
    p
}

/// A plain continuation prompt: the code before the cursor, nothing else.
pub fn prefix_only(prefix: &str) -> Prompt {
    let mut p = Prompt::default();
    p.text(prefix).mark_cursor();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psm_and_spm_layouts() {
        let p = Family::QwenCoder.fim("def f(", "):", FimOrder::Psm);
        assert_eq!(
            p.pieces,
            vec![
                Piece::Special("<|fim_prefix|>"),
                Piece::Text("def f(".into()),
                Piece::Special("<|fim_suffix|>"),
                Piece::Text("):".into()),
                Piece::Special("<|fim_middle|>"),
            ]
        );
        let s = Family::QwenCoder.fim("def f(", "):", FimOrder::Spm);
        assert_eq!(s.pieces[0], Piece::Special("<|fim_suffix|>"));
        assert_eq!(s.pieces[3], Piece::Text("def f(".into()));
        assert_eq!(s.cursor_piece, Some(3));
        assert_eq!(p.cursor_piece, Some(1));
    }

    #[test]
    fn detection_prefers_codegemma_over_qwen() {
        let gemma = ["<|fim_prefix|>", "<|fim_middle|>", "<|file_separator|>", "<eos>"];
        assert_eq!(Family::detect(|t| gemma.contains(&t)), Some(Family::CodeGemma));
        let qwen = ["<|fim_prefix|>", "<|fim_middle|>", "<|endoftext|>"];
        assert_eq!(Family::detect(|t| qwen.contains(&t)), Some(Family::QwenCoder));
        assert_eq!(Family::detect(|_| false), None);
    }
}
