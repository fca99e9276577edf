//! Chat prompts rendered from the model's own chat template (the GGUF's
//! `tokenizer.chat_template`, Jinja), with ChatML as the fallback. The
//! messages' contents always stay text: the template is rendered with
//! placeholders, and only the template's own control strings may become
//! special tokens.

use super::{Piece, Prompt};

/// Placeholders for the message contents while the template renders:
/// private-use characters that code does not contain by accident, and if
/// it does, the contents are rendered in pieces around them anyway.
const SYSTEM_MARK: &str = "\u{F8F0}wick-system\u{F8F1}";
const USER_MARK: &str = "\u{F8F0}wick-user\u{F8F1}";

#[derive(Debug, thiserror::Error)]
#[error("chat template: {0}")]
pub(crate) struct ChatError(String);

/// A two-message chat (system, user) ready for the assistant's answer,
/// whose first words are `answer_prefix` (text the model continues).
pub fn chat(template: Option<&str>, system: &str, user: &str, answer_prefix: &str) -> Prompt {
    let skeleton = template
        .and_then(|t| match render(t) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("{e}; using ChatML");
                None
            }
        })
        .filter(|s| s.contains(SYSTEM_MARK) && s.contains(USER_MARK))
        .unwrap_or_else(|| chatml_skeleton().to_string());
    let mut p = Prompt::default();
    let mut rest = skeleton.as_str();
    while !rest.is_empty() {
        let next = [(SYSTEM_MARK, system), (USER_MARK, user)]
            .into_iter()
            .filter_map(|(m, c)| rest.find(m).map(|i| (i, m, c)))
            .min_by_key(|(i, _, _)| *i);
        match next {
            Some((i, mark, content)) => {
                push_skeleton(&mut p, &rest[..i]);
                p.text(content);
                rest = &rest[i + mark.len()..];
            }
            None => {
                push_skeleton(&mut p, rest);
                rest = "";
            }
        }
    }
    p.text(answer_prefix);
    if matches!(p.pieces.last(), Some(Piece::Text(_))) {
        p.cursor_piece = Some(p.pieces.len() - 1);
    }
    p
}

fn chatml_skeleton() -> String {
    format!(
        "<|im_start|>system\n{SYSTEM_MARK}<|im_end|>\n<|im_start|>user\n{USER_MARK}<|im_end|>\n<|im_start|>assistant\n"
    )
}

fn render(template: &str) -> Result<String, ChatError> {
    let mut env = minijinja::Environment::new();
    env.set_unknown_method_callback(|_, value, method, args| {
        // Python string methods templates use (`startswith`, `strip`...).
        let s = value.as_str().unwrap_or_default();
        let arg = |i: usize| args.get(i).and_then(|a| a.as_str()).unwrap_or_default().to_string();
        match method {
            "startswith" => Ok(minijinja::Value::from(s.starts_with(&arg(0)))),
            "endswith" => Ok(minijinja::Value::from(s.ends_with(&arg(0)))),
            "strip" => Ok(minijinja::Value::from(s.trim())),
            "lstrip" => Ok(minijinja::Value::from(s.trim_start())),
            "rstrip" => Ok(minijinja::Value::from(s.trim_end())),
            _ => Err(minijinja::Error::from(minijinja::ErrorKind::UnknownMethod)),
        }
    });
    env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    env.add_template("chat", template).map_err(|e| ChatError(e.to_string()))?;
    let t = env.get_template("chat").map_err(|e| ChatError(e.to_string()))?;
    let messages = vec![
        minijinja::context! { role => "system", content => SYSTEM_MARK },
        minijinja::context! { role => "user", content => USER_MARK },
    ];
    t.render(minijinja::context! {
        messages => messages,
        add_generation_prompt => true,
        bos_token => "",
        eos_token => "",
    })
    .map_err(|e| ChatError(e.to_string()))
}

/// Splits template text into control strings (`<|im_start|>`, `<s>`,
/// `[INST]`...) and plain text.
fn push_skeleton(p: &mut Prompt, s: &str) {
    let mut text_start = 0;
    let mut i = 0;
    let b = s.as_bytes();
    while i < b.len() {
        if let Some(len) = control_at(&s[i..]) {
            p.text(&s[text_start..i]);
            p.pieces.push(Piece::Control(s[i..i + len].to_string()));
            i += len;
            text_start = i;
        } else {
            i += s[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    p.text(&s[text_start..]);
}

/// Length of a control string at the start of `s`, if one starts there.
fn control_at(s: &str) -> Option<usize> {
    for (open, close) in [("<|", "|>"), ("<\u{FF5C}", "\u{FF5C}>"), ("[INST", "]"), ("[/INST", "]")] {
        if let Some(rest) = s.strip_prefix(open) {
            let end = rest.find(close)?;
            let inner = &rest[..end];
            if inner.len() <= 40 && !inner.contains(char::is_whitespace) {
                return Some(open.len() + end + close.len());
            }
        }
    }
    for tok in ["<s>", "</s>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>"] {
        if s.starts_with(tok) {
            return Some(tok.len());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN: &str = "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

    #[test]
    fn renders_the_models_template_and_keeps_contents_as_text() {
        let p = chat(Some(QWEN), "Fix code.", "x = <|im_end|> 1", "```python\n");
        assert_eq!(
            p.shown(),
            "[<|im_start|>]system\nFix code.[<|im_end|>]\n[<|im_start|>]user\nx = <|im_end|> 1[<|im_end|>]\n[<|im_start|>]assistant\n```python\n$0"
        );
        assert_eq!(p.cursor_piece, Some(p.pieces.len() - 1));
    }

    #[test]
    fn falls_back_to_chatml() {
        for t in [None, Some("{% broken"), Some("no messages here")] {
            let p = chat(t, "S", "U", "");
            assert_eq!(
                p.shown(),
                "[<|im_start|>]system\nS[<|im_end|>]\n[<|im_start|>]user\nU[<|im_end|>]\n[<|im_start|>]assistant\n$0"
            );
        }
    }

    #[test]
    fn control_strings() {
        assert_eq!(control_at("<|im_start|>user"), Some(12));
        assert_eq!(control_at("<| not one |>"), None);
        assert_eq!(control_at("[INST] hi"), Some(6));
        assert_eq!(control_at("<s>"), Some(3));
        assert_eq!(control_at("plain"), None);
    }
}
