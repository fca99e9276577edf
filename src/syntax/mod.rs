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

pub(crate) use checks::accept_completion;
pub use checks::error_count;
pub use context::definitions;
pub(crate) use context::CursorKind;
pub use context::Definition;
pub use diagnose::SyntaxError;
pub(crate) use diagnose::{empty_body_at, fix_region, widen_region, EmptyBody, KnownEdit, ANALYSIS_MAX_ERRORS};
pub use diagnose::{syntax_errors, Analysis};
pub use lang::Lang;
pub use parse::Parsed;
#[cfg(test)]
pub(crate) use parse::MAX_LINE_BYTES;
pub(crate) use parse::{edit_for_change, ParseJob, SyntaxTree, MAX_PARSE_BYTES};
