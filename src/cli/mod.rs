//! Measurement code behind the command line: evaluations and benchmarks.
//! Each calls the same pipeline the server does (`complete::suggest`).

pub mod real_code;
