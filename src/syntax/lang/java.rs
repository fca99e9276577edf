//! Java (tree-sitter-java).

use super::{name_field, node_text, AddImport, DefClass, Rules};
use std::path::{Path, PathBuf};
use tree_sitter::{Language, Node};

pub(super) static RULES: Rules = Rules {
    ids: &["java"],
    extensions: &["java"],
    grammar,
    indent_blocks: false,
    default_indent: "    ",
    line_comment: "//",
    import_prefixes: &["package ", "import "],
    function_kinds: &["method_declaration", "constructor_declaration"],
    keywords: super::c::KEYWORDS,
    docstrings: false,
    imports,
    classify,
    def_name: name_field,
    import_candidates,
};

fn grammar() -> Language {
    tree_sitter_java::LANGUAGE.into()
}

fn imports(n: Node, text: &str, add: &mut AddImport<'_>) -> bool {
    if n.kind() != "import_declaration" {
        return true;
    }
    let mut c = n.walk();
    let name = n.named_children(&mut c).find(|c| matches!(c.kind(), "scoped_identifier" | "identifier"));
    add(name.map(|c| node_text(c, text).to_string()));
    false
}

fn classify(node: Node, _text: &str) -> Option<DefClass> {
    use DefClass::*;
    Some(match node.kind() {
        "method_declaration" => Leaf("method"),
        "constructor_declaration" => Leaf("constructor"),
        "class_declaration" | "record_declaration" => Container("class"),
        "interface_declaration" | "annotation_type_declaration" => Container("interface"),
        "enum_declaration" => Container("enum"),
        _ => return None,
    })
}

/// `a.b.C` is `a/b/C.java`, also under Maven's `src/main/java`.
fn import_candidates(import: &str, _dir: &Path, bases: &[PathBuf]) -> Vec<PathBuf> {
    let rel = import.replace('.', "/");
    let mut out = Vec::new();
    for b in bases {
        out.push(b.join(format!("{rel}.java")));
        out.push(b.join("src/main/java").join(format!("{rel}.java")));
    }
    out
}
