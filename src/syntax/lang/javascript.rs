//! JavaScript (with JSX), TypeScript and TSX (tree-sitter-javascript,
//! tree-sitter-typescript): one set of rules, three grammars.

use super::{field_text, name_field, node_text, unquote, AddImport, DefClass, Rules};
use std::path::{Path, PathBuf};
use tree_sitter::{Language, Node};

/// The JavaScript grammar parses JSX natively.
pub(super) static JAVASCRIPT: Rules = Rules {
    ids: &["javascript", "javascriptreact", "js", "jsx", "node"],
    extensions: &["js", "mjs", "cjs", "jsx"],
    grammar: javascript,
    ..BASE
};

pub(super) static TSX: Rules = Rules { ids: &["typescriptreact", "tsx"], extensions: &["tsx"], grammar: tsx, ..BASE };

pub(super) static TYPESCRIPT: Rules = BASE;

const BASE: Rules = Rules {
    ids: &["typescript", "ts"],
    extensions: &["ts", "mts", "cts"],
    grammar: typescript,
    indent_blocks: false,
    default_indent: "    ",
    line_comment: "//",
    // `const x = require(...)` too.
    import_prefixes: &["import ", "require(", "const "],
    function_kinds: &[
        "function_declaration",
        "method_definition",
        "function_expression",
        "arrow_function",
        "generator_function_declaration",
    ],
    keywords: &[
        "function",
        "return",
        "const",
        "let",
        "var",
        "for",
        "while",
        "if",
        "else",
        "switch",
        "case",
        "break",
        "continue",
        "class",
        "import",
        "export",
        "from",
        "new",
        "typeof",
        "async",
        "await",
        "yield",
        "throw",
        "try",
        "catch",
        "finally",
        "interface",
        "extends",
    ],
    docstrings: false,
    imports,
    classify,
    def_name: name_field,
    import_candidates,
};

fn javascript() -> Language {
    tree_sitter_javascript::LANGUAGE.into()
}

fn typescript() -> Language {
    tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into()
}

fn tsx() -> Language {
    tree_sitter_typescript::LANGUAGE_TSX.into()
}

fn imports(n: Node, text: &str, add: &mut AddImport<'_>) -> bool {
    match n.kind() {
        "import_statement" | "export_statement" => {
            add(field_text(n, "source", text).map(|s| unquote(&s)));
            n.kind() == "export_statement"
        }
        "call_expression" => {
            // `import("x")` and `require("x")`.
            let callee = n.child_by_field_name("function");
            let is_import = callee
                .is_some_and(|f| f.kind() == "import" || (f.kind() == "identifier" && node_text(f, text) == "require"));
            let arg = n.child_by_field_name("arguments").and_then(|a| a.named_child(0));
            if let Some(arg) = arg.filter(|a| is_import && matches!(a.kind(), "string" | "template_string")) {
                add(Some(unquote(node_text(arg, text))));
            }
            true
        }
        _ => true,
    }
}

fn classify(node: Node, _text: &str) -> Option<DefClass> {
    use DefClass::*;
    Some(match node.kind() {
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
    })
}

/// Relative imports only (`./x` is `./x.ts`, `./x/index.js`, ...); bare
/// names are packages.
fn import_candidates(import: &str, dir: &Path, _bases: &[PathBuf]) -> Vec<PathBuf> {
    if !import.starts_with('.') {
        return Vec::new();
    }
    ["", ".ts", ".tsx", ".js", ".jsx", ".mjs", "/index.ts", "/index.js"]
        .iter()
        .map(|ext| dir.join(format!("{import}{ext}")))
        .collect()
}
