//! Python (tree-sitter-python).

use super::{field_text, name_field, node_text, AddImport, DefClass, Rules};
use std::path::{Path, PathBuf};
use tree_sitter::{Language, Node};

pub(super) static RULES: Rules = Rules {
    ids: &["python", "py", "python3"],
    extensions: &["py", "pyi"],
    grammar,
    indent_blocks: true,
    default_indent: "    ",
    line_comment: "#",
    import_prefixes: &["import ", "from "],
    function_kinds: &["function_definition"],
    keywords: &[
        "def", "return", "for", "while", "if", "elif", "else", "import", "from", "class", "with", "try", "except",
        "finally", "lambda", "yield", "raise", "pass", "break", "continue", "async", "await", "not", "and", "global",
    ],
    docstrings: true,
    imports,
    classify,
    def_name: name_field,
    import_candidates,
};

fn grammar() -> Language {
    tree_sitter_python::LANGUAGE.into()
}

fn imports(n: Node, text: &str, add: &mut AddImport<'_>) -> bool {
    match n.kind() {
        "import_statement" => {
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
        "import_from_statement" => {
            add(field_text(n, "module_name", text));
            false
        }
        "future_import_statement" => {
            add(Some("__future__".into()));
            false
        }
        _ => true,
    }
}

fn classify(node: Node, _text: &str) -> Option<DefClass> {
    Some(match node.kind() {
        "function_definition" => DefClass::Leaf("function"),
        "class_definition" => DefClass::Container("class"),
        _ => return None,
    })
}

/// `a.b` is `a/b.py` or the package `a/b/__init__.py`; leading dots
/// (relative imports) start from the importing file's directory.
fn import_candidates(import: &str, _dir: &Path, bases: &[PathBuf]) -> Vec<PathBuf> {
    let rel = import.trim_start_matches('.').replace('.', "/");
    let mut out = Vec::new();
    for b in bases {
        out.push(b.join(format!("{rel}.py")));
        out.push(b.join(&rel).join("__init__.py"));
    }
    out
}
