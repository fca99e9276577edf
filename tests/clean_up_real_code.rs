//! The clean-up on cases of the frozen real-code set, with the model's
//! recorded answers: no model needed, and the windows are the pipeline's.

use wick::cli::real_code;
use wick::complete::{clean, plan, Stages};
use wick::config::{Config, PromptMode};

fn cleaned(case: &str, raw: &str) -> Result<String, &'static str> {
    let set = real_code::load(&real_code::default_cases()).unwrap();
    let c = set.cases.iter().find(|c| c.id == case).unwrap_or_else(|| panic!("no case {case}"));
    let rope = ropey::Rope::from_str(&set.document(c));
    let input = real_code::input_for(&set, c, &rope, &[]);
    // The default model's layout (plain continuation).
    let cfg = Config { prompt: PromptMode::Prefix, ..Config::default() };
    let plan = plan(&input, &cfg, None, None, Stages::default()).expect("a plan");
    clean(raw, &plan, false).map_err(|e| e.name())
}

#[test]
fn a_line_that_opens_a_block_the_code_after_it_closes_is_kept_whole() {
    // llama.cpp's llama-context.cpp (160 KB): the windows start and end
    // inside functions; `if (memory) {` used to lose its `{` to errors that
    // moved at the window's end.
    let got = cleaned("cpp-003", "    if (memory) {\n        memory->state_read(io, seq_id, flags);\n");
    assert_eq!(got.as_deref(), Ok("if (memory) {"));
}
