use tree_sitter::{Node, Tree, TreeCursor};

use super::lang::Lang;
use super::parse::{parse_str, Parsed};

// ---------------------------------------------------------------- helpers

use crate::text::floor_char as floor_boundary;

fn node_text<'a>(node: Node, text: &'a str) -> &'a str {
    text.get(node.byte_range()).unwrap_or("")
}

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

// ---------------------------------------------------------------- scopes

fn is_scope_kind(lang: Lang, kind: &str) -> bool {
    match lang {
        Lang::Python => matches!(kind, "function_definition" | "class_definition"),
        Lang::Rust => matches!(
            kind,
            "function_item"
                | "impl_item"
                | "trait_item"
                | "mod_item"
                | "struct_item"
                | "enum_item"
                | "union_item"
                | "closure_expression"
                | "macro_definition"
        ),
        Lang::JavaScript | Lang::TypeScript | Lang::Tsx => matches!(
            kind,
            "function_declaration"
                | "function_expression"
                | "function"
                | "generator_function_declaration"
                | "generator_function"
                | "method_definition"
                | "class_declaration"
                | "class"
                | "abstract_class_declaration"
                | "arrow_function"
                | "interface_declaration"
                | "enum_declaration"
                | "internal_module"
                | "module"
        ),
        Lang::Go => matches!(kind, "function_declaration" | "method_declaration" | "func_literal" | "type_declaration"),
        Lang::C | Lang::Cpp => matches!(
            kind,
            "function_definition"
                | "class_specifier"
                | "struct_specifier"
                | "union_specifier"
                | "enum_specifier"
                | "namespace_definition"
                | "lambda_expression"
        ),
        Lang::Java => matches!(
            kind,
            "method_declaration"
                | "constructor_declaration"
                | "class_declaration"
                | "interface_declaration"
                | "enum_declaration"
                | "record_declaration"
                | "lambda_expression"
                | "annotation_type_declaration"
        ),
    }
}

/// Whether `offset` counts as inside `node`. A cursor at the very end is
/// inside unless the node is closed by a delimiter (`}` / `;`), so the end
/// of a Python body is inside its function but after a `}` is outside.
fn contains_cursor(node: Node, text: &str, offset: usize) -> bool {
    let (s, e) = (node.start_byte(), node.end_byte());
    if offset <= s || offset > e {
        return false;
    }
    if offset < e {
        return true;
    }
    !node_text(node, text).ends_with(['}', ';', ')'])
}

impl Parsed {
    /// Byte ranges of all enclosing definitions, innermost first.
    pub fn enclosing_scopes(&self, text: &str, byte_offset: usize) -> Vec<(usize, usize)> {
        let offset = floor_boundary(text, byte_offset);
        let mut out: Vec<(usize, usize)> = vec![];
        for start in nodes_at(&self.tree, offset) {
            for n in ancestors(start) {
                if is_scope_kind(self.lang, n.kind()) && contains_cursor(n, text, offset) {
                    let r = (n.start_byte(), n.end_byte());
                    if !out.contains(&r) {
                        out.push(r);
                    }
                }
            }
        }
        // Ranges from the two start nodes interleave; nesting order is by size.
        out.sort_by_key(|&(s, e)| e - s);
        out
    }
}

/// Byte range of the innermost function/method/class/impl-like definition
/// containing `byte_offset`.
pub fn enclosing_scope(lang: Lang, text: &str, byte_offset: usize) -> Option<(usize, usize)> {
    enclosing_scopes(lang, text, byte_offset).into_iter().next()
}

/// All enclosing definitions' byte ranges, innermost first.
pub fn enclosing_scopes(lang: Lang, text: &str, byte_offset: usize) -> Vec<(usize, usize)> {
    Parsed::parse(lang, text).map_or_else(Vec::new, |p| p.enclosing_scopes(text, byte_offset))
}

// ---------------------------------------------------------------- imports

fn unquote(s: &str) -> String {
    s.trim().trim_matches(|c| matches!(c, '"' | '\'' | '`' | '<' | '>')).to_string()
}

fn field_text(node: Node, field: &str, text: &str) -> Option<String> {
    node.child_by_field_name(field).map(|n| node_text(n, text).to_string())
}

/// Path named by a Rust `use` argument, without the item list / wildcard.
fn rust_use_path(node: Node, text: &str) -> Option<String> {
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

impl Parsed {
    pub fn imports(&self, text: &str) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        let mut add = |s: Option<String>| {
            if let Some(s) = s.filter(|s| !s.is_empty()) {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        };
        let lang = self.lang;
        walk(&self.tree, |n| {
            match (lang, n.kind()) {
                (Lang::Python, "import_statement") => {
                    let mut c = n.walk();
                    for child in n.children_by_field_name("name", &mut c) {
                        let name = if child.kind() == "aliased_import" {
                            child.child_by_field_name("name").unwrap_or(child)
                        } else {
                            child
                        };
                        add(Some(node_text(name, text).to_string()));
                    }
                    false
                }
                (Lang::Python, "import_from_statement") => {
                    add(field_text(n, "module_name", text));
                    false
                }
                (Lang::Python, "future_import_statement") => {
                    add(Some("__future__".into()));
                    false
                }
                (Lang::JavaScript | Lang::TypeScript | Lang::Tsx, "import_statement" | "export_statement") => {
                    add(field_text(n, "source", text).map(|s| unquote(&s)));
                    n.kind() == "export_statement"
                }
                (Lang::JavaScript | Lang::TypeScript | Lang::Tsx, "call_expression") => {
                    let callee = n.child_by_field_name("function");
                    let is_import = callee.is_some_and(|f| {
                        f.kind() == "import" || (f.kind() == "identifier" && node_text(f, text) == "require")
                    });
                    let arg = n.child_by_field_name("arguments").and_then(|a| a.named_child(0));
                    if let Some(arg) = arg.filter(|a| is_import && matches!(a.kind(), "string" | "template_string")) {
                        add(Some(unquote(node_text(arg, text))));
                    }
                    true
                }
                (Lang::Rust, "use_declaration") => {
                    add(n.child_by_field_name("argument").and_then(|a| rust_use_path(a, text)));
                    false
                }
                (Lang::Rust, "mod_item") => {
                    // Only `mod x;` refers to another file.
                    if n.child_by_field_name("body").is_none() {
                        add(field_text(n, "name", text));
                    }
                    true
                }
                (Lang::Rust, "extern_crate_declaration") => {
                    add(field_text(n, "name", text));
                    false
                }
                (Lang::Go, "import_spec") => {
                    add(field_text(n, "path", text).map(|s| unquote(&s)));
                    false
                }
                (Lang::C | Lang::Cpp, "preproc_include") => {
                    add(field_text(n, "path", text).map(|s| unquote(&s)));
                    false
                }
                (Lang::Java, "import_declaration") => {
                    let mut c = n.walk();
                    let name =
                        n.named_children(&mut c).find(|c| matches!(c.kind(), "scoped_identifier" | "identifier"));
                    add(name.map(|c| node_text(c, text).to_string()));
                    false
                }
                _ => true,
            }
        });
        out
    }
}

/// Module paths/names imported by the file, in source order, deduplicated.
pub fn imports(lang: Lang, text: &str) -> Vec<String> {
    Parsed::parse(lang, text).map_or_else(Vec::new, |p| p.imports(text))
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

enum DefClass {
    /// Record it; don't look inside (function bodies aren't "class level").
    Leaf(&'static str),
    /// Record it and collect its members.
    Container(&'static str),
}

fn classify(lang: Lang, node: Node, text: &str) -> Option<DefClass> {
    use DefClass::*;
    let k = node.kind();
    Some(match lang {
        Lang::Python => match k {
            "function_definition" => Leaf("function"),
            "class_definition" => Container("class"),
            _ => return None,
        },
        Lang::Rust => match k {
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
        },
        Lang::JavaScript | Lang::TypeScript | Lang::Tsx => match k {
            "function_declaration" | "generator_function_declaration" | "function_signature" => Leaf("function"),
            "method_definition" | "method_signature" | "abstract_method_signature" => Leaf("method"),
            "class_declaration" | "abstract_class_declaration" => Container("class"),
            "interface_declaration" => Leaf("interface"),
            "type_alias_declaration" => Leaf("type"),
            "enum_declaration" => Leaf("enum"),
            "variable_declarator"
                if node
                    .child_by_field_name("value")
                    .is_some_and(|v| matches!(v.kind(), "arrow_function" | "function_expression" | "function")) =>
            {
                Leaf("function")
            }
            _ => return None,
        },
        Lang::Go => match k {
            "function_declaration" => Leaf("function"),
            "method_declaration" => Leaf("method"),
            "type_spec" | "type_alias" => match node.child_by_field_name("type").map(|t| t.kind()) {
                Some("struct_type") => Leaf("struct"),
                Some("interface_type") => Leaf("interface"),
                _ => Leaf("type"),
            },
            _ => return None,
        },
        Lang::C | Lang::Cpp => match k {
            "function_definition" => Leaf("function"),
            "declaration" | "field_declaration"
                if node.child_by_field_name("declarator").is_some_and(|d| d.kind() == "function_declarator") =>
            {
                Leaf("function")
            }
            "struct_specifier" | "union_specifier" | "enum_specifier" | "class_specifier"
                if node.child_by_field_name("body").is_some() && node.child_by_field_name("name").is_some() =>
            {
                match k {
                    "class_specifier" => Container("class"),
                    "struct_specifier" if lang == Lang::Cpp => Container("struct"),
                    "struct_specifier" => Leaf("struct"),
                    "union_specifier" => Leaf("union"),
                    _ => Leaf("enum"),
                }
            }
            "type_definition" | "alias_declaration" => Leaf("type"),
            _ => return None,
        },
        Lang::Java => match k {
            "method_declaration" => Leaf("method"),
            "constructor_declaration" => Leaf("constructor"),
            "class_declaration" | "record_declaration" => Container("class"),
            "interface_declaration" | "annotation_type_declaration" => Container("interface"),
            "enum_declaration" => Container("enum"),
            _ => return None,
        },
    })
    .filter(|_| def_name(lang, node, text).is_some())
}

/// Innermost name inside a C/C++ declarator chain (`*(*f)(int)` -> `f`).
fn c_declarator_name<'a>(mut node: Node, text: &'a str) -> Option<&'a str> {
    for _ in 0..32 {
        match node.kind() {
            "identifier"
            | "field_identifier"
            | "type_identifier"
            | "qualified_identifier"
            | "destructor_name"
            | "operator_name"
            | "primitive_type" => return Some(node_text(node, text)),
            _ => node = node.child_by_field_name("declarator").or_else(|| node.named_child(0))?,
        }
    }
    None
}

fn def_name(lang: Lang, node: Node, text: &str) -> Option<String> {
    let name = match (lang, node.kind()) {
        (Lang::Rust, "impl_item") => {
            let ty = node.child_by_field_name("type").map(|t| node_text(t, text))?;
            return Some(match node.child_by_field_name("trait") {
                Some(tr) => format!("{} for {}", node_text(tr, text), ty),
                None => ty.to_string(),
            });
        }
        (Lang::C | Lang::Cpp, "function_definition" | "declaration" | "field_declaration" | "type_definition") => {
            c_declarator_name(node.child_by_field_name("declarator")?, text)?
        }
        _ => node_text(node.child_by_field_name("name")?, text),
    };
    (!name.is_empty()).then(|| name.to_string())
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
    pub fn identifiers_near(&self, text: &str, byte_offset: usize, window_bytes: usize) -> Vec<String> {
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

/// Distinct identifiers within `window_bytes` on either side of the offset,
/// nearest first (ties: earlier in the file first).
pub fn identifiers_near(lang: Lang, text: &str, byte_offset: usize, window_bytes: usize) -> Vec<String> {
    Parsed::parse(lang, text).map_or_else(Vec::new, |p| p.identifiers_near(text, byte_offset, window_bytes))
}

// ---------------------------------------------------------------- cursor context

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    Comment,
    String,
    Code,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorContext {
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
    pub fn cursor_context(&self, text: &str, byte_offset: usize) -> CursorContext {
        cursor_context_impl(self.lang, Some(self), text, byte_offset)
    }
}

fn cursor_context_impl(lang: Lang, parsed: Option<&Parsed>, text: &str, byte_offset: usize) -> CursorContext {
    let offset = floor_boundary(text, byte_offset);
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let before = &text[line_start..offset];
    let after = &text[offset..line_end];
    let blank_line = before.trim().is_empty() && after.trim().is_empty();

    let kind = parsed.map_or(CursorKind::Code, |p| token_kind(p, text, offset));

    let block_just_opened = blank_line && {
        let prev = text[..line_start].trim_end();
        let opener = if lang.indent_blocks() { prev.ends_with(':') } else { prev.ends_with('{') };
        opener
            || parsed.is_some_and(|p| {
                nodes_at(&p.tree, offset).into_iter().any(|start| {
                    ancestors(start)
                        .find(|n| is_block_kind(n.kind()) && n.start_byte() < offset && offset < n.end_byte())
                        .is_some_and(|b| {
                            let mut c = b.walk();
                            let only_comments = b.named_children(&mut c).all(|ch| ch.kind().contains("comment"));
                            only_comments
                        })
                })
            })
    };

    let last = before.trim_end().chars().last();
    let dangling_operator = last.is_some_and(|c| {
        matches!(c, '(' | '[' | ',' | '.' | '=' | '+' | '-' | '*' | '/' | '%' | '&' | '|' | '<' | '>' | '!' | '?')
            || (c == ':' && !lang.indent_blocks())
    }) && !before.trim_end().ends_with("->")
        && !before.trim_end().ends_with("=>");
    let inside_brackets = parsed.is_some_and(|p| {
        nodes_at(&p.tree, offset).into_iter().any(|start| {
            ancestors(start).any(|n| is_bracket_kind(n.kind()) && n.start_byte() < offset && offset < n.end_byte())
        })
    });
    let mid_expression = !after.trim().is_empty() || dangling_operator || inside_brackets;

    CursorContext { kind, block_just_opened, mid_expression }
}

/// Classifies the cursor position: inside a comment/string or code, whether
/// a block was just opened, whether the cursor is mid-expression. Falls back
/// to line-based heuristics when the text is not parsed.
pub fn cursor_context(lang: Lang, text: &str, byte_offset: usize) -> CursorContext {
    let parsed = parse_str(lang, text).map(|tree| Parsed { lang, tree });
    cursor_context_impl(lang, parsed.as_ref(), text, byte_offset)
}
