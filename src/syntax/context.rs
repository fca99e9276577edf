use tree_sitter::{Node, Tree, TreeCursor};

use super::lang::{node_text, DefClass, Lang};
use super::parse::Parsed;

// ---------------------------------------------------------------- helpers

use crate::text::floor_char as floor_boundary;

/// Iterative pre-order walk; `visit` returns whether to descend into the node.
fn walk(tree: &Tree, mut visit: impl FnMut(Node) -> bool) {
    let mut cursor: TreeCursor = tree.walk();
    loop {
        if visit(cursor.node()) && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
        }
    }
}

/// Nodes whose ancestor chains describe the position `offset`: the node at
/// the offset and the node ending at it (a cursor right after `foo` is
/// "in" `foo` for most purposes). Callers apply their own boundary rules.
fn nodes_at(tree: &Tree, offset: usize) -> Vec<Node<'_>> {
    let root = tree.root_node();
    let mut v = vec![];
    if let Some(n) = root.descendant_for_byte_range(offset, offset) {
        v.push(n);
    }
    if offset > 0 {
        if let Some(n) = root.descendant_for_byte_range(offset - 1, offset) {
            v.push(n);
        }
    }
    v
}

fn ancestors(node: Node) -> impl Iterator<Item = Node> {
    std::iter::successors(Some(node), |n| n.parent())
}

// ---------------------------------------------------------------- imports

impl Parsed {
    /// Module paths/names imported by the file, in source order, deduplicated.
    pub(crate) fn imports(&self, text: &str) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        let mut add = |s: Option<String>| {
            if let Some(s) = s.filter(|s| !s.is_empty()) {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        };
        let rules = self.lang.rules();
        walk(&self.tree, |n| (rules.imports)(n, text, &mut add));
        out
    }
}

// ---------------------------------------------------------------- definitions

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub name: String,
    pub kind: &'static str,
    /// Declaration head: a function's signature up to its body; a type's
    /// header and members with method bodies elided (at most 15 lines).
    pub signature: String,
    pub byte_range: (usize, usize),
}

const SIGNATURE_MAX_LINES: usize = 15;

fn classify(lang: Lang, node: Node, text: &str) -> Option<DefClass> {
    let rules = lang.rules();
    (rules.classify)(node, text).filter(|_| (rules.def_name)(node, text).is_some())
}

fn def_name(lang: Lang, node: Node, text: &str) -> Option<String> {
    (lang.rules().def_name)(node, text)
}

fn truncate_lines(s: &str, max: usize) -> String {
    s.lines().take(max).collect::<Vec<_>>().join("\n").trim_end().to_string()
}

/// Text of `node` with the bodies of nested function-like definitions
/// replaced by a placeholder, so a class "signature" shows its shape.
fn elide_bodies(lang: Lang, node: Node, text: &str) -> String {
    let mut cuts: Vec<(usize, usize)> = vec![];
    let mut cursor = node.walk();
    'outer: loop {
        let n = cursor.node();
        let mut descend = true;
        let body = n.child_by_field_name("body").filter(|_| n.id() != node.id());
        if let Some(body) = body.filter(|_| matches!(classify(lang, n, text), Some(DefClass::Leaf(_)))) {
            cuts.push((body.start_byte(), body.end_byte()));
            descend = false;
        }
        if descend && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.node().id() == node.id() {
                break 'outer;
            }
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                break 'outer;
            }
        }
    }
    let placeholder = if lang.indent_blocks() { "..." } else { "{ ... }" };
    let mut out = String::new();
    let mut pos = node.start_byte();
    for (s, e) in cuts {
        out.push_str(text.get(pos..s).unwrap_or(""));
        out.push_str(placeholder);
        pos = e;
    }
    out.push_str(text.get(pos..node.end_byte()).unwrap_or(""));
    out
}

fn signature(lang: Lang, node: Node, class: &DefClass, text: &str) -> String {
    match class {
        // Only functions are cut at their body; a struct/enum/interface
        // "body" is its field list, which is exactly what we want to show.
        DefClass::Leaf(kind) => match node.child_by_field_name("body") {
            Some(body)
                if matches!(*kind, "function" | "method" | "constructor") && body.start_byte() > node.start_byte() =>
            {
                let head = text.get(node.start_byte()..body.start_byte()).unwrap_or("");
                truncate_lines(head.trim_end().trim_end_matches(['=', '>', ' ']).trim_end(), SIGNATURE_MAX_LINES)
            }
            _ => truncate_lines(node_text(node, text), SIGNATURE_MAX_LINES),
        },
        DefClass::Container(_) => truncate_lines(&elide_bodies(lang, node, text), SIGNATURE_MAX_LINES),
    }
}

impl Parsed {
    pub fn definitions(&self, text: &str) -> Vec<Definition> {
        let mut out = vec![];
        let lang = self.lang;
        walk(&self.tree, |n| match classify(lang, n, text) {
            Some(class) => {
                let kind = match class {
                    DefClass::Leaf(k) | DefClass::Container(k) => k,
                };
                out.push(Definition {
                    name: def_name(lang, n, text).unwrap_or_default(),
                    kind,
                    signature: signature(lang, n, &class, text),
                    byte_range: (n.start_byte(), n.end_byte()),
                });
                matches!(class, DefClass::Container(_))
            }
            // Don't treat locals inside function bodies as definitions.
            None => {
                !matches!(
                    n.kind(),
                    "block"
                        | "statement_block"
                        | "compound_statement"
                        | "arrow_function"
                        | "function_expression"
                        | "constructor_body"
                        | "func_literal"
                        | "lambda_expression"
                        | "closure_expression"
                ) || n.parent().is_some_and(|p| matches!(classify(lang, p, text), Some(DefClass::Container(_))))
            }
        });
        out
    }
}

/// Top-level and class/impl-level definitions in source order.
pub fn definitions(lang: Lang, text: &str) -> Vec<Definition> {
    Parsed::parse(lang, text).map_or_else(Vec::new, |p| p.definitions(text))
}

// ---------------------------------------------------------------- identifiers

impl Parsed {
    pub(crate) fn identifiers_near(&self, text: &str, byte_offset: usize, window_bytes: usize) -> Vec<String> {
        let offset = byte_offset.min(text.len());
        let lo = offset.saturating_sub(window_bytes);
        let hi = offset.saturating_add(window_bytes).min(text.len());
        let mut found: Vec<(usize, usize, &str)> = vec![];
        walk(&self.tree, |n| {
            if n.end_byte() < lo || n.start_byte() > hi {
                return false;
            }
            if n.child_count() == 0 && n.is_named() && n.kind().ends_with("identifier") {
                let (s, e) = (n.start_byte(), n.end_byte());
                if s >= lo && e <= hi {
                    let dist = if e <= offset { offset - e } else { s.saturating_sub(offset) };
                    found.push((dist, s, node_text(n, text)));
                }
            }
            true
        });
        found.sort_by_key(|&(d, s, _)| (d, s));
        let mut out: Vec<String> = vec![];
        for (_, _, name) in found {
            if !name.is_empty() && !out.iter().any(|o| o == name) {
                out.push(name.to_string());
            }
        }
        out
    }
}

// ---------------------------------------------------------------- cursor context

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CursorKind {
    Comment,
    String,
    Code,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CursorContext {
    pub kind: CursorKind,
    /// The cursor is on a blank line that starts a new, still empty block.
    pub block_just_opened: bool,
    /// The cursor is inside an expression: code follows it on its line, or
    /// the line/enclosing brackets are still open.
    pub mid_expression: bool,
}

fn is_string_kind(kind: &str) -> bool {
    matches!(
        kind,
        "string"
            | "string_literal"
            | "raw_string_literal"
            | "template_string"
            | "interpreted_string_literal"
            | "char_literal"
            | "character_literal"
            | "text_block"
            | "concatenated_string"
            | "rune_literal"
    )
}

fn is_block_kind(kind: &str) -> bool {
    matches!(
        kind,
        "block"
            | "statement_block"
            | "compound_statement"
            | "declaration_list"
            | "field_declaration_list"
            | "class_body"
            | "interface_body"
            | "enum_body"
            | "constructor_body"
            | "object_type"
    )
}

fn is_bracket_kind(kind: &str) -> bool {
    matches!(
        kind,
        "arguments"
            | "argument_list"
            | "parameters"
            | "formal_parameters"
            | "parameter_list"
            | "parenthesized_expression"
            | "array"
            | "list"
            | "tuple"
            | "dictionary"
            | "set"
            | "object"
            | "array_expression"
            | "tuple_expression"
            | "literal_value"
            | "initializer_list"
            | "array_initializer"
            | "subscript"
            | "index_expression"
            | "type_arguments"
            | "token_tree"
    )
}

fn token_kind(p: &Parsed, text: &str, offset: usize) -> CursorKind {
    for start in nodes_at(&p.tree, offset) {
        for n in ancestors(start) {
            let (s, e) = (n.start_byte(), n.end_byte());
            if n.kind().contains("comment") {
                let block = node_text(n, text).ends_with("*/");
                if s < offset && (offset < e || (offset == e && !block)) {
                    return CursorKind::Comment;
                }
            } else if is_string_kind(n.kind()) && s < offset && offset < e {
                return CursorKind::String;
            }
        }
    }
    CursorKind::Code
}

impl Parsed {
    /// Classifies the cursor position: inside a comment/string or code,
    /// whether a block was just opened, whether the cursor is mid-expression.
    pub(crate) fn cursor_context(&self, text: &str, byte_offset: usize) -> CursorContext {
        let (lang, p) = (self.lang, self);
        let offset = floor_boundary(text, byte_offset);
        let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        let before = &text[line_start..offset];
        let after = &text[offset..line_end];
        let blank_line = before.trim().is_empty() && after.trim().is_empty();

        let kind = token_kind(p, text, offset);

        let block_just_opened = blank_line && {
            let prev = text[..line_start].trim_end();
            let opener = if lang.indent_blocks() { prev.ends_with(':') } else { prev.ends_with('{') };
            opener
                || nodes_at(&p.tree, offset).into_iter().any(|start| {
                    ancestors(start)
                        .find(|n| is_block_kind(n.kind()) && n.start_byte() < offset && offset < n.end_byte())
                        .is_some_and(|b| {
                            let mut c = b.walk();
                            let only_comments = b.named_children(&mut c).all(|ch| ch.kind().contains("comment"));
                            only_comments
                        })
                })
        };

        let last = before.trim_end().chars().last();
        let dangling_operator = last.is_some_and(|c| {
            matches!(c, '(' | '[' | ',' | '.' | '=' | '+' | '-' | '*' | '/' | '%' | '&' | '|' | '<' | '>' | '!' | '?')
                || (c == ':' && !lang.indent_blocks())
        }) && !before.trim_end().ends_with("->")
            && !before.trim_end().ends_with("=>");
        let inside_brackets = nodes_at(&p.tree, offset).into_iter().any(|start| {
            ancestors(start).any(|n| is_bracket_kind(n.kind()) && n.start_byte() < offset && offset < n.end_byte())
        });
        let mid_expression = !after.trim().is_empty() || dangling_operator || inside_brackets;

        CursorContext { kind, block_just_opened, mid_expression }
    }
}
