//! Syntax layer for wick: tree-sitter parsing, incremental trees, syntax
//! checks for completion post-processing and cheap context queries.
//!
//! Everything here is pure and synchronous (no I/O, no LSP types) and is meant
//! to be total: any input, including binary junk, multi-megabyte files and
//! files made of syntax errors, yields a (possibly degraded) answer without
//! panicking. Work is bounded by [`MAX_PARSE_BYTES`], [`MAX_LINE_BYTES`] and
//! parse deadlines; when a bound is hit the tree is simply absent and queries
//! fall back to "nothing known".

mod checks;
mod context;
mod diagnose;
mod lang;
mod parse;

#[cfg(test)]
mod tests;

pub use checks::{accept_completion, error_count};
pub use context::{
    cursor_context, definitions, enclosing_scope, enclosing_scopes, identifiers_near, imports, CursorContext,
    CursorKind, Definition,
};
pub use diagnose::{
    empty_body_at, fix_region, syntax_errors, widen_region, Analysis, EmptyBody, KnownEdit, SyntaxError,
    ANALYSIS_MAX_ERRORS,
};
pub use lang::Lang;
pub use parse::{
    edit_for_change, ParseJob, Parsed, SyntaxTree, MAX_LINE_BYTES, MAX_PARSE_BYTES, ONE_SHOT_PARSE_BUDGET,
    TREE_PARSE_BUDGET,
};
