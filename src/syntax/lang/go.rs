//! Go (tree-sitter-go).

use super::{name_field, path_field, AddImport, DefClass, Rules};
use std::path::{Path, PathBuf};
use tree_sitter::{Language, Node};

pub(super) static RULES: Rules = Rules {
    ids: &["go", "golang"],
    extensions: &["go"],
    grammar,
    indent_blocks: false,
    default_indent: "\t",
    line_comment: "//",
    import_prefixes: &["package ", "import "],
    function_kinds: &["function_declaration", "method_declaration", "func_literal"],
    keywords: &[
        "func",
        "return",
        "for",
        "range",
        "if",
        "else",
        "switch",
        "case",
        "var",
        "const",
        "type",
        "struct",
        "interface",
        "package",
        "import",
        "defer",
        "select",
        "break",
        "continue",
        "default",
    ],
    docstrings: false,
    imports,
    classify,
    def_name: name_field,
    import_candidates,
};

fn grammar() -> Language {
    tree_sitter_go::LANGUAGE.into()
}

fn imports(n: Node, text: &str, add: &mut AddImport<'_>) -> bool {
    if n.kind() == "import_spec" {
        path_field(n, text, add);
        return false;
    }
    true
}

fn classify(node: Node, _text: &str) -> Option<DefClass> {
    use DefClass::*;
    Some(match node.kind() {
        "function_declaration" => Leaf("function"),
        "method_declaration" => Leaf("method"),
        "type_spec" | "type_alias" => match node.child_by_field_name("type").map(|t| t.kind()) {
            Some("struct_type") => Leaf("struct"),
            Some("interface_type") => Leaf("interface"),
            _ => Leaf("type"),
        },
        _ => return None,
    })
}

/// Go imports name packages by module path, which the workspace alone
/// cannot resolve (go.mod, GOPATH): none.
fn import_candidates(_import: &str, _dir: &Path, _bases: &[PathBuf]) -> Vec<PathBuf> {
    Vec::new()
}
