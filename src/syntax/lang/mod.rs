//! The languages wick knows. Everything particular to one language lives in
//! its own file here ([`Rules`]: grammar, languageIds and extensions, comment
//! syntax, import lines and import resolution, scope, function and definition
//! node kinds, keywords); the rest of the crate asks [`Lang::rules`]. Adding
//! a language is adding a file and a variant.

mod c;
mod go;
mod java;
mod javascript;
mod python;
mod rust;

use std::path::{Path, PathBuf};
use tree_sitter::{Language, Node};

/// Languages with a bundled grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Go,
    C,
    Cpp,
    Java,
}

/// What wick knows of one language.
pub(crate) struct Rules {
    /// LSP `languageId`s (the first is the one editors send) and aliases.
    pub ids: &'static [&'static str],
    /// File extensions, lower case, without the dot.
    pub extensions: &'static [&'static str],
    pub grammar: fn() -> Language,
    /// Blocks are delimited by indentation rather than braces.
    pub indent_blocks: bool,
    /// The indentation unit when a file shows none.
    pub default_indent: &'static str,
    pub line_comment: &'static str,
    /// How the lines of a file's import header start.
    pub import_prefixes: &'static [&'static str],
    /// Function-like node kinds with a `body` (empty bodies to fill).
    pub function_kinds: &'static [&'static str],
    /// Keywords a misspelling of which the diagnostics look for.
    pub keywords: &'static [&'static str],
    /// A function body may start with a docstring.
    pub docstrings: bool,
    /// Hands `add` what an import node names (a module path or file);
    /// returns whether to look inside the node.
    pub imports: fn(Node, &str, &mut AddImport<'_>) -> bool,
    /// What kind of definition a node is, if it is one.
    pub classify: fn(Node, &str) -> Option<DefClass>,
    /// A definition's name.
    pub def_name: fn(Node, &str) -> Option<String>,
    /// Files an import may name, in order of preference: `dir` is the
    /// importing file's directory, `bases` it and the workspace root(s).
    pub import_candidates: fn(import: &str, dir: &Path, bases: &[PathBuf]) -> Vec<PathBuf>,
}

/// Takes what an import names.
pub(crate) type AddImport<'a> = dyn FnMut(Option<String>) + 'a;

/// A definition's kind, and whether its members are definitions too.
pub(crate) enum DefClass {
    /// Record it; don't look inside (function bodies aren't "class level").
    Leaf(&'static str),
    /// Record it and collect its members.
    Container(&'static str),
}

impl Lang {
    pub const ALL: [Lang; 9] = [
        Lang::Rust,
        Lang::Python,
        Lang::JavaScript,
        Lang::TypeScript,
        Lang::Tsx,
        Lang::Go,
        Lang::C,
        Lang::Cpp,
        Lang::Java,
    ];

    pub(crate) fn rules(self) -> &'static Rules {
        match self {
            Lang::Rust => &rust::RULES,
            Lang::Python => &python::RULES,
            Lang::JavaScript => &javascript::JAVASCRIPT,
            Lang::TypeScript => &javascript::TYPESCRIPT,
            Lang::Tsx => &javascript::TSX,
            Lang::Go => &go::RULES,
            Lang::C => &c::C,
            Lang::Cpp => &c::CPP,
            Lang::Java => &java::RULES,
        }
    }

    /// Maps an LSP `languageId` (plus a few common aliases) to a grammar.
    pub(crate) fn from_language_id(id: &str) -> Option<Lang> {
        let id = id.trim().to_ascii_lowercase();
        Lang::ALL.into_iter().find(|l| l.rules().ids.contains(&id.as_str()))
    }

    /// Guesses the language from a path or URI by its extension.
    /// `.h` is treated as C: a C++ header parses mostly fine as C, the reverse
    /// is not true for C code using C++ keywords as identifiers.
    pub(crate) fn from_path(path: &str) -> Option<Lang> {
        let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
        let (_, ext) = file.rsplit_once('.')?;
        let ext = ext.to_ascii_lowercase();
        Lang::ALL.into_iter().find(|l| l.rules().extensions.contains(&ext.as_str()))
    }

    /// The LSP `languageId` editors send for this language.
    pub fn language_id(self) -> &'static str {
        self.rules().ids[0]
    }

    pub(crate) fn ts_language(self) -> Language {
        (self.rules().grammar)()
    }

    /// Whether blocks are delimited by indentation rather than braces.
    pub(crate) fn indent_blocks(self) -> bool {
        self.rules().indent_blocks
    }
}

// Helpers for the language files.

pub(crate) fn node_text<'a>(node: Node, text: &'a str) -> &'a str {
    text.get(node.byte_range()).unwrap_or("")
}

fn field_text(node: Node, field: &str, text: &str) -> Option<String> {
    node.child_by_field_name(field).map(|n| node_text(n, text).to_string())
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches(|c| matches!(c, '"' | '\'' | '`' | '<' | '>')).to_string()
}

/// The name of most definitions: their `name` field.
fn name_field(node: Node, text: &str) -> Option<String> {
    let name = node_text(node.child_by_field_name("name")?, text);
    (!name.is_empty()).then(|| name.to_string())
}

/// An import that names a file by its path (`#include "x.h"`, Go's
/// `"fmt"`): the `path` field, unquoted.
fn path_field(n: Node, text: &str, add: &mut AddImport<'_>) {
    add(field_text(n, "path", text).map(|s| unquote(&s)));
}
