//! The commands behind the command line: evaluations, benchmarks, `wick complete`, `wick doctor`, `wick stats`.
//! Each calls the same pipeline the server does (`complete::suggest`).

pub(crate) mod bench;
pub(crate) mod bench_actions;
pub(crate) mod bench_lsp;
pub(crate) mod bench_remote;
pub mod command;
pub mod complete;
pub mod doctor;
pub mod eval;
pub mod real_code;
pub mod stats;
