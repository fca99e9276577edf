//! Rust (tree-sitter-rust).

use super::{field_text, name_field, node_text, AddImport, DefClass, Rules};
use std::path::{Path, PathBuf};
use tree_sitter::{Language, Node};

pub(super) static RULES: Rules = Rules {
    ids: &["rust", "rs"],
    extensions: &["rs"],
    grammar,
    indent_blocks: false,
    default_indent: "    ",
    line_comment: "//",
    import_prefixes: &["use ", "extern crate"],
    function_kinds: &["function_item"],
    keywords: &[
        "fn", "let", "mut", "for", "while", "loop", "if", "else", "match", "return", "struct", "enum", "impl", "trait",
        "pub", "use", "mod", "const", "static", "where", "break", "continue", "async", "await", "move", "unsafe",
    ],
    docstrings: false,
    imports,
    classify,
    def_name,
    import_candidates,
};

fn grammar() -> Language {
    tree_sitter_rust::LANGUAGE.into()
}

fn imports(n: Node, text: &str, add: &mut AddImport<'_>) -> bool {
    match n.kind() {
        "use_declaration" => {
            add(n.child_by_field_name("argument").and_then(|a| use_path(a, text)));
            false
        }
        "mod_item" => {
            // Only `mod x;` refers to another file.
            if n.child_by_field_name("body").is_none() {
                add(field_text(n, "name", text));
            }
            true
        }
        "extern_crate_declaration" => {
            add(field_text(n, "name", text));
            false
        }
        _ => true,
    }
}

/// Path named by a `use` argument, without the item list / wildcard.
fn use_path(node: Node, text: &str) -> Option<String> {
    let path = match node.kind() {
        "scoped_use_list" | "use_as_clause" => node.child_by_field_name("path").map(|n| node_text(n, text)),
        "use_wildcard" => node.named_child(0).map(|n| node_text(n, text)),
        "use_list" => None,
        _ => Some(node_text(node, text)),
    }?;
    let path: String = path.split_whitespace().collect();
    let path = path.strip_prefix("crate::").unwrap_or(&path).to_string();
    (!path.is_empty()).then_some(path)
}

fn classify(node: Node, _text: &str) -> Option<DefClass> {
    use DefClass::*;
    Some(match node.kind() {
        "function_item" | "function_signature_item" => Leaf("function"),
        "struct_item" => Leaf("struct"),
        "enum_item" => Leaf("enum"),
        "union_item" => Leaf("union"),
        "type_item" => Leaf("type"),
        "macro_definition" => Leaf("macro"),
        "trait_item" => Container("trait"),
        "impl_item" => Container("impl"),
        "mod_item" if node.child_by_field_name("body").is_some() => Container("module"),
        _ => return None,
    })
}

/// An `impl` is named by its type (`Trait for Type`).
fn def_name(node: Node, text: &str) -> Option<String> {
    if node.kind() != "impl_item" {
        return name_field(node, text);
    }
    let ty = node.child_by_field_name("type").map(|t| node_text(t, text))?;
    Some(match node.child_by_field_name("trait") {
        Some(tr) => format!("{} for {}", node_text(tr, text), ty),
        None => ty.to_string(),
    })
}

/// `a::b::c` is `a/b/c.rs` (or `mod.rs`), or a shorter prefix of it (the
/// last parts may be items of the module).
fn import_candidates(import: &str, _dir: &Path, bases: &[PathBuf]) -> Vec<PathBuf> {
    let rel = import
        .trim_start_matches("crate::")
        .trim_start_matches("self::")
        .trim_start_matches("super::")
        .replace("::", "/");
    let parts: Vec<&str> = rel.split('/').collect();
    let mut out = Vec::new();
    for n in (1..=parts.len()).rev() {
        let p = parts[..n].join("/");
        for b in bases {
            out.push(b.join(format!("{p}.rs")));
            out.push(b.join(&p).join("mod.rs"));
        }
    }
    out
}
