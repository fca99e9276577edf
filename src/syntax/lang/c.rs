//! C and C++ (tree-sitter-c, tree-sitter-cpp): one set of rules, two
//! grammars.

use super::{node_text, path_field, AddImport, DefClass, Rules};
use std::path::{Path, PathBuf};
use tree_sitter::{Language, Node};

/// `.h` is C: a C++ header parses mostly fine as C, the reverse is not true
/// for C code using C++ keywords as identifiers.
pub(super) static C: Rules = Rules { ids: &["c"], extensions: &["c", "h"], grammar: c, classify: classify_c, ..BASE };

pub(super) static CPP: Rules = BASE;

const BASE: Rules = Rules {
    ids: &["cpp", "c++", "cxx", "cc"],
    extensions: &["cc", "cpp", "cxx", "c++", "hpp", "hh", "hxx", "h++"],
    grammar: cpp,
    indent_blocks: false,
    default_indent: "    ",
    line_comment: "//",
    import_prefixes: &["#include"],
    function_kinds: &["function_definition"],
    keywords: KEYWORDS,
    docstrings: false,
    imports,
    classify: classify_cpp,
    def_name,
    import_candidates,
};

/// The keywords of C, C++ and Java whose misspellings are looked for.
pub(super) const KEYWORDS: &[&str] = &[
    "return", "for", "while", "if", "else", "switch", "case", "break", "continue", "struct", "class", "public",
    "private", "static", "void", "new", "const", "typedef", "sizeof", "import", "package", "throw", "try", "catch",
];

fn c() -> Language {
    tree_sitter_c::LANGUAGE.into()
}

fn cpp() -> Language {
    tree_sitter_cpp::LANGUAGE.into()
}

fn imports(n: Node, text: &str, add: &mut AddImport<'_>) -> bool {
    if n.kind() == "preproc_include" {
        path_field(n, text, add);
        return false;
    }
    true
}

fn classify_c(node: Node, text: &str) -> Option<DefClass> {
    classify(node, text, false)
}

fn classify_cpp(node: Node, text: &str) -> Option<DefClass> {
    classify(node, text, true)
}

fn classify(node: Node, _text: &str, cpp: bool) -> Option<DefClass> {
    use DefClass::*;
    let k = node.kind();
    Some(match k {
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
                "struct_specifier" if cpp => Container("struct"),
                "struct_specifier" => Leaf("struct"),
                "union_specifier" => Leaf("union"),
                _ => Leaf("enum"),
            }
        }
        "type_definition" | "alias_declaration" => Leaf("type"),
        _ => return None,
    })
}

/// Functions and typedefs are named inside their declarator chain.
fn def_name(node: Node, text: &str) -> Option<String> {
    let name = match node.kind() {
        "function_definition" | "declaration" | "field_declaration" | "type_definition" => {
            declarator_name(node.child_by_field_name("declarator")?, text)?
        }
        _ => node_text(node.child_by_field_name("name")?, text),
    };
    (!name.is_empty()).then(|| name.to_string())
}

/// Innermost name inside a declarator chain (`*(*f)(int)` -> `f`).
fn declarator_name<'a>(mut node: Node, text: &'a str) -> Option<&'a str> {
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

/// `#include "x.h"` is `x.h` next to the file or under a root.
fn import_candidates(import: &str, _dir: &Path, bases: &[PathBuf]) -> Vec<PathBuf> {
    bases.iter().map(|b| b.join(import)).collect()
}
