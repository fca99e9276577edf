use ropey::Rope;

use super::context::CursorContext;
use super::*;

/// Splits a fixture at the `$0` cursor marker: (text without marker, offset).
fn fixture(src: &str) -> (String, usize) {
    let at = src.find("$0").expect("fixture needs $0");
    (src.replacen("$0", "", 1), at)
}

fn parsed(lang: Lang, text: &str) -> Parsed {
    Parsed::parse(lang, text).expect("parse")
}

/// The tree of `rope` parsed as the server does it: a job run off the
/// document, its result installed.
fn tree_of(lang: Lang, rope: &Rope) -> SyntaxTree {
    let mut st = SyntaxTree::unparsed(lang);
    reparse(&mut st, rope);
    st
}

fn reparse(st: &mut SyntaxTree, rope: &Rope) {
    if let Some(job) = st.job(rope) {
        st.install(job.run());
    }
}

fn full_sexp(lang: Lang, rope: &Rope) -> String {
    tree_of(lang, rope).tree().expect("parse").root_node().to_sexp()
}

// ---------------------------------------------------------------- registry

#[test]
fn language_registry() {
    assert_eq!(Lang::from_language_id("typescriptreact"), Some(Lang::Tsx));
    assert_eq!(Lang::from_language_id("javascriptreact"), Some(Lang::JavaScript));
    assert_eq!(Lang::from_language_id("py"), Some(Lang::Python));
    assert_eq!(Lang::from_language_id("cobol"), None);
    assert_eq!(Lang::from_path("/a/b.pyi"), Some(Lang::Python));
    assert_eq!(Lang::from_path("x.h"), Some(Lang::C));
    assert_eq!(Lang::from_path("x.HPP"), Some(Lang::Cpp));
    assert_eq!(Lang::from_path("C:\\src\\main.cts"), Some(Lang::TypeScript));
    assert_eq!(Lang::from_path("Makefile"), None);
    assert_eq!(Lang::from_path("dir.rs/Makefile"), None);
    for lang in Lang::ALL {
        assert!(tree_of(lang, &Rope::from_str("x")).tree().is_some(), "{lang:?}");
    }
}

// ---------------------------------------------------------------- incremental

const PY_SAMPLE: &str = "import os\n\nclass Café:\n    \"\"\"Doc 🦀.\"\"\"\n    def __init__(self, x):\n        self.x = x  # é\n\n    def run(self):\n        for i in range(10):\n            if i % 2:\n                print(f\"{i} é\")\n        return [y for y in self.x]\n\ndef main():\n    Café(1).run()\n";
const RS_SAMPLE: &str = "use std::fmt;\n\n/// Crab 🦀\npub struct Point { x: i32, y: i32 }\n\nimpl fmt::Display for Point {\n    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {\n        write!(f, \"({}, {}) é\", self.x, self.y)\n    }\n}\n\nfn main() {\n    let p = Point { x: 1, y: 2 };\n    if p.x > 0 { println!(\"{}\", p); }\n}\n";

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const SNIPPETS: &[&str] = &[
    "é",
    "🦀",
    "\n",
    "\n    ",
    "x",
    "foo(",
    ")",
    "{",
    "}",
    ":",
    " = 1",
    "\"s\"",
    "#",
    "//",
    "def g():\n    pass\n",
    "fn h() {}\n",
    "é🦀é",
    "\t",
    "'",
    "[1, 2]",
    "\r\n",
];

fn random_edits(lang: Lang, sample: &str, seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
    for _seq in 0..200 {
        let mut rope = Rope::from_str(sample);
        let mut st = tree_of(lang, &rope);
        for _ in 0..20 {
            let len = rope.len_chars();
            let start = rng.below(len + 1);
            let del = if rng.below(3) == 0 { 0 } else { rng.below(6).min(len - start) };
            let ins = if rng.below(4) == 0 { "" } else { SNIPPETS[rng.below(SNIPPETS.len())] };
            let before = rope.clone();
            rope.remove(start..start + del);
            rope.insert(start, ins);
            st.edit(&edit_for_change(&before, start, start + del, ins));
            reparse(&mut st, &rope);
        }
        let inc = st.tree().expect("incremental tree").root_node().to_sexp();
        assert_eq!(inc, full_sexp(lang, &rope), "text: {:?}", rope.to_string());
        // Positions must match too, not just shape (byte columns, '\n' rows).
        let (a, b) = (st.tree().unwrap().root_node(), tree_of(lang, &rope));
        assert_eq!(a.end_position(), b.tree().unwrap().root_node().end_position());
    }
}

#[test]
fn incremental_matches_full_python() {
    random_edits(Lang::Python, PY_SAMPLE, 1);
}

#[test]
fn incremental_matches_full_rust() {
    random_edits(Lang::Rust, RS_SAMPLE, 2);
}

#[test]
fn edit_points_use_byte_columns() {
    let rope = Rope::from_str("é🦀\nab");
    let e = edit_for_change(&rope, 4, 4, "x\ny");
    assert_eq!(e.start_byte, 8);
    assert_eq!((e.start_position.row, e.start_position.column), (1, 1));
    assert_eq!((e.new_end_position.row, e.new_end_position.column), (2, 1));
    // Clamped, no panic.
    let e = edit_for_change(&rope, 100, 50, "");
    assert_eq!(e.start_byte, rope.len_bytes());
}

#[test]
fn batched_edits_then_one_reparse() {
    let mut rope = Rope::from_str("def f():\n    return 1\n");
    let mut st = tree_of(Lang::Python, &rope);
    for (s, e, t) in [(4, 5, "gé"), (0, 0, "# 🦀\n")] {
        st.edit(&edit_for_change(&rope, s, e, t));
        rope.remove(s..e);
        rope.insert(s, t);
    }
    assert!(st.tree().is_none(), "stale tree must not be exposed");
    reparse(&mut st, &rope);
    assert_eq!(st.tree().unwrap().root_node().to_sexp(), full_sexp(Lang::Python, &rope));
}

// ---------------------------------------------------------------- checks

#[test]
fn error_counts() {
    assert_eq!(error_count(Lang::Python, "def f(x):\n    return x\n"), 0);
    assert!(error_count(Lang::Python, "def f(x:\n    return x\n") > 0);
    assert!(error_count(Lang::Rust, "fn main() { let x = ; }") > 0);
    assert_eq!(error_count(Lang::Go, "package main\nfunc main() {}\n"), 0);
}

#[test]
fn accept_good_completion_unchanged() {
    let got = accept_completion(Lang::Python, "def f(x):\n    return ", "x + 1", "\n\nprint(f(2))\n");
    assert_eq!(got.as_deref(), Some("x + 1"));
}

#[test]
fn accept_cuts_at_line_end() {
    // The second line opens a call that never closes.
    let got = accept_completion(Lang::Rust, "fn main() {\n    let a = ", "1;\n    let b = foo(", "\n}\n");
    assert_eq!(got.as_deref(), Some("1;"));
}

#[test]
fn accept_cuts_single_line_at_token_boundary() {
    let got = accept_completion(Lang::Rust, "fn main() {\n    ", "let a = f(1); let b = g(", "\n}\n");
    assert_eq!(got.as_deref(), Some("let a = f(1);"));
    // Judged relative to prefix+suffix: a hole that is already an error
    // there may stay an error (spec: "no more errors than without it").
    let got = accept_completion(Lang::JavaScript, "const a = ", "f(1) + g(", ";\n");
    assert!(got.is_some());
}

#[test]
fn accept_rejects_hopeless() {
    assert_eq!(accept_completion(Lang::Rust, "fn main() {\n    ", "))))", "\n}\n"), None);
    // AltiVec C, which tree-sitter-c does not know: every such line is an
    // error already, so one more like them is not evidence against it.
    let altivec: String = (0..4).map(|i| format!("    vector signed char q{i} = vec_xl({i}, p);\n")).collect();
    let prefix = format!("void f(const signed char * p) {{\n{altivec}    ");
    let got = accept_completion(Lang::C, &prefix, "vector signed char q9 = vec_xl(16, p);", "\n}\n");
    assert_eq!(got.as_deref(), Some("vector signed char q9 = vec_xl(16, p);"));
    // Clean C around the cursor: the same kind of line is still refused.
    assert_eq!(accept_completion(Lang::C, "void f(void) {\n    ", "int x = (;", "\n}\n"), None);
    assert_eq!(accept_completion(Lang::Rust, "fn main() {", "   ", "}"), None);
}

#[test]
fn an_answer_that_opens_a_block_the_suffix_closes_is_whole_in_a_cut_window() {
    // The windows of a large file: the prefix starts inside one function,
    // the suffix ends inside another, and the line at the cursor was
    // `if (m) {` (its body and closer follow).
    let filler: String = (0..60).map(|i| format!("int g{i}(int a) {{\n    return a + {i};\n}}\n\n")).collect();
    let prefix = format!("    x += 1;\n    return x;\n}}\n\n{filler}int f(int *m) {{\n    ");
    let suffix = format!(
        "\n        g(m);\n    }}\n    return 0;\n}}\n\n{filler}int h(int *m) {{\n    int x = 1;\n    if (x) {{\n"
    );
    let got = accept_completion(Lang::C, &prefix, "if (m) {", &suffix);
    assert_eq!(got.as_deref(), Some("if (m) {"));
    let got = accept_completion(Lang::Cpp, &prefix, "} else {", &suffix);
    assert!(got.as_deref() != Some("} else {"), "a stray closer is still refused: {got:?}");
}

#[test]
fn accept_tolerates_preexisting_errors() {
    let got = accept_completion(Lang::Python, "def broken(:\n    pass\n\ndef ok():\n    return ", "42", "\n");
    assert_eq!(got.as_deref(), Some("42"));
}

#[test]
fn accept_windows_large_files() {
    let filler = "x = 1\n".repeat(30_000);
    let prefix = format!("{filler}def f():\n    return ");
    let got = accept_completion(Lang::Python, &prefix, "1 +", &format!("\n{filler}"));
    // "1 +" dangles; "1" is fine.
    assert_eq!(got.as_deref(), Some("1"));
}

// ---------------------------------------------------------------- imports

#[test]
fn imports_per_language() {
    let cases: &[(Lang, &str, &[&str])] = &[
        (Lang::Python, "import os, a.b as ab\nfrom x.y import z\nfrom . import w\n", &["os", "a.b", "x.y", "."]),
        (
            Lang::JavaScript,
            "import a from \"./x\";\nexport * from './y';\nconst b = require(\"./z\");\nimport('./d');\n",
            &["./x", "./y", "./z", "./d"],
        ),
        (Lang::Tsx, "import { A } from './a';\nexport const C = () => <A/>;\n", &["./a"]),
        (
            Lang::Rust,
            "use crate::a::b;\nuse std::{fmt, io};\nuse foo::*;\nmod x;\nmod inline { }\n",
            &["a::b", "std", "foo", "x"],
        ),
        (Lang::Go, "package p\nimport (\n\t\"fmt\"\n\tm \"a/b\"\n)\n", &["fmt", "a/b"]),
        (Lang::C, "#include \"x.h\"\n#include <stdio.h>\n", &["x.h", "stdio.h"]),
        (Lang::Java, "package p;\nimport a.b.C;\nimport static a.D.e;\nimport x.y.*;\n", &["a.b.C", "a.D.e", "x.y"]),
    ];
    for (lang, src, want) in cases {
        assert_eq!(parsed(*lang, src).imports(src), *want, "{lang:?}");
    }
}

// ---------------------------------------------------------------- definitions

fn names(defs: &[Definition]) -> Vec<(&str, &str)> {
    defs.iter().map(|d| (d.name.as_str(), d.kind)).collect()
}

#[test]
fn definitions_python() {
    let src = "class A(B):\n    x: int = 0\n    def m(self, y) -> int:\n        def inner(): pass\n        return y\n\n@dec\ndef f(a,\n      b):\n    return a\n";
    let defs = definitions(Lang::Python, src);
    assert_eq!(names(&defs), vec![("A", "class"), ("m", "function"), ("f", "function")]);
    assert_eq!(defs[1].signature, "def m(self, y) -> int:");
    assert_eq!(defs[2].signature, "def f(a,\n      b):");
    assert!(defs[0].signature.starts_with("class A(B):\n    x: int = 0\n    def m(self, y) -> int:"));
    assert!(!defs[0].signature.contains("inner"), "{}", defs[0].signature);
}

#[test]
fn definitions_rust() {
    let src = "pub struct P {\n    x: i32,\n}\nenum E { A }\ntrait T { fn t(&self); }\nimpl T for P {\n    fn t(&self) { let q = 1; }\n}\ntype X = u8;\nfn free(a: u8) -> u8 { a }\n";
    let defs = definitions(Lang::Rust, src);
    assert_eq!(
        names(&defs),
        vec![
            ("P", "struct"),
            ("E", "enum"),
            ("T", "trait"),
            ("t", "function"),
            ("T for P", "impl"),
            ("t", "function"),
            ("X", "type"),
            ("free", "function")
        ]
    );
    assert_eq!(defs[0].signature, "pub struct P {\n    x: i32,\n}");
    assert_eq!(defs[7].signature, "fn free(a: u8) -> u8");
    assert_eq!(defs[4].signature, "impl T for P {\n    fn t(&self) { ... }\n}");
}

#[test]
fn definitions_other_languages() {
    let ts = "export interface I { a: number }\ntype U = string;\nexport class C {\n  m(x: number): void { }\n}\nconst arrow = (a) => a;\nfunction f() { function hidden() {} }\n";
    assert_eq!(
        names(&definitions(Lang::TypeScript, ts)),
        vec![
            ("I", "interface"),
            ("U", "type"),
            ("C", "class"),
            ("m", "method"),
            ("arrow", "function"),
            ("f", "function")
        ]
    );
    let go =
        "package p\ntype S struct { A int }\ntype I interface { M() }\nfunc (s S) M() {}\nfunc F() int { return 1 }\n";
    assert_eq!(
        names(&definitions(Lang::Go, go)),
        vec![("S", "struct"), ("I", "interface"), ("M", "method"), ("F", "function")]
    );
    let c = "struct pt { int x; };\ntypedef int myint;\nint add(int a, int b);\nstatic int *get(void) { return 0; }\n";
    let defs = definitions(Lang::C, c);
    assert_eq!(names(&defs), vec![("pt", "struct"), ("myint", "type"), ("add", "function"), ("get", "function")]);
    assert_eq!(defs[3].signature, "static int *get(void)");
    let java = "class A {\n  int x;\n  A() {}\n  void m(int y) { }\n  interface J { void k(); }\n}\n";
    assert_eq!(
        names(&definitions(Lang::Java, java)),
        vec![("A", "class"), ("A", "constructor"), ("m", "method"), ("J", "interface"), ("k", "method")]
    );
    let cpp = "namespace n {\nclass K {\n public:\n  int f() { return 1; }\n};\n}\n";
    assert_eq!(names(&definitions(Lang::Cpp, cpp)), vec![("K", "class"), ("f", "function")]);
}

// ---------------------------------------------------------------- identifiers

#[test]
fn identifiers_nearest_first() {
    let (t, o) = fixture("far = 1\nalpha = 2\nbeta = alpha + $0gamma\nzeta = 3\n");
    let ids = parsed(Lang::Python, &t).identifiers_near(&t, o, 1000);
    assert_eq!(ids[0], "gamma");
    assert_eq!(ids[1], "alpha");
    assert!(ids.contains(&"far".to_string()) && ids.contains(&"zeta".to_string()));
    assert_eq!(ids.iter().filter(|s| *s == "alpha").count(), 1);
    let narrow = parsed(Lang::Python, &t).identifiers_near(&t, o, 8);
    assert!(!narrow.contains(&"far".to_string()));
    let (t, o) = fixture("struct S { field: Ty }\nfn f(s: S) { s.$0 }");
    let ids = parsed(Lang::Rust, &t).identifiers_near(&t, o, 100);
    for want in ["S", "field", "Ty", "f", "s"] {
        assert!(ids.contains(&want.to_string()), "{want} in {ids:?}");
    }
}

// ---------------------------------------------------------------- cursor context

fn ctx(lang: Lang, src: &str) -> CursorContext {
    let (t, o) = fixture(src);
    parsed(lang, &t).cursor_context(&t, o)
}

#[test]
fn cursor_kinds() {
    assert_eq!(ctx(Lang::Python, "x = 1  # note $0\n").kind, CursorKind::Comment);
    assert_eq!(ctx(Lang::Python, "x = 'ab$0c'\n").kind, CursorKind::String);
    assert_eq!(ctx(Lang::Python, "x = 'abc'$0\n").kind, CursorKind::Code);
    assert_eq!(ctx(Lang::Rust, "fn f() {} /* a $0 */").kind, CursorKind::Comment);
    assert_eq!(ctx(Lang::Rust, "fn f() {} /* a */$0").kind, CursorKind::Code);
    assert_eq!(ctx(Lang::Rust, "// end$0").kind, CursorKind::Comment);
    assert_eq!(ctx(Lang::JavaScript, "const s = `a ${x} $0b`;").kind, CursorKind::String);
    assert_eq!(ctx(Lang::Go, "package p\nvar s = \"a$0\"\n").kind, CursorKind::String);
}

#[test]
fn block_just_opened() {
    assert!(ctx(Lang::Python, "def f(x):\n    $0\n").block_just_opened);
    assert!(ctx(Lang::Rust, "fn f() {\n    $0\n}\n").block_just_opened);
    assert!(ctx(Lang::Java, "class A {\n  void m() {\n    // todo\n    $0\n  }\n}\n").block_just_opened);
    assert!(!ctx(Lang::Rust, "fn f() {\n    let x = 1;\n    $0\n}\n").block_just_opened);
    assert!(!ctx(Lang::Python, "def f(x):\n    y = 1\n    $0\n").block_just_opened);
    assert!(!ctx(Lang::Python, "def f(x):\n    $0y = 1\n").block_just_opened);
}

#[test]
fn mid_expression() {
    assert!(ctx(Lang::Python, "x = foo($0)\n").mid_expression);
    assert!(ctx(Lang::Python, "x = a +$0\n").mid_expression);
    assert!(ctx(Lang::JavaScript, "f(\n  a,\n  $0\n);\n").mid_expression);
    assert!(!ctx(Lang::Python, "x = 1\n$0\n").mid_expression);
    assert!(!ctx(Lang::Rust, "fn f() {\n    let x = 1;$0\n}\n").mid_expression);
    assert!(!ctx(Lang::Rust, "fn f() -> u8 {\n    $0\n}\n").mid_expression);
}

#[test]
fn offsets_are_clamped_and_rounded() {
    let t = "é🦀 = 1";
    for o in 0..t.len() + 5 {
        let p = parsed(Lang::Python, t);
        let _ = p.cursor_context(t, o);
        let _ = p.identifiers_near(t, o, usize::MAX);
    }
}

// ---------------------------------------------------------------- bad input

fn exercise_everything(lang: Lang, text: &str) {
    let mid = text.len() / 2;
    let _ = error_count(lang, text);
    let _ = definitions(lang, text);
    // A text too large or too slow to parse has no tree: nothing to ask.
    if let Some(p) = Parsed::parse(lang, text) {
        let _ = p.imports(text);
        let _ = p.identifiers_near(text, mid, 2000);
        let _ = p.cursor_context(text, mid);
    }
    let cut = floor(text, mid);
    let _ = accept_completion(lang, &text[..cut], "foo(bar)\nbaz", &text[cut..]);
}

fn floor(t: &str, mut i: usize) -> usize {
    while !t.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[test]
fn bad_input_huge_file_is_not_parsed() {
    let text = "def f(x):\n    return x + 1\n".repeat(10 * 1024 * 1024 / 28 + 1);
    assert!(text.len() > MAX_PARSE_BYTES);
    let st = tree_of(Lang::Python, &Rope::from_str(&text));
    assert!(st.tree().is_none());
    assert_eq!(error_count(Lang::Python, &text), 0);
    assert!(definitions(Lang::Python, &text).is_empty());
    exercise_everything(Lang::Python, &text);
}

#[test]
fn bad_input_long_single_line() {
    let text = "a = [".to_string() + &"1, ".repeat(350_000) + "]";
    assert!(text.len() > 1_000_000);
    assert!(tree_of(Lang::JavaScript, &Rope::from_str(&text)).tree().is_none());
    exercise_everything(Lang::JavaScript, &text);
    exercise_everything(Lang::Python, &text);
}

#[test]
fn bad_input_random_bytes() {
    let mut rng = Rng(0xDEADBEEF);
    let bytes: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    for lang in Lang::ALL {
        let st = tree_of(lang, &Rope::from_str(&text));
        assert!(st.tree().is_some(), "{lang:?}");
        exercise_everything(lang, &text);
    }
}

#[test]
fn bad_input_thousands_of_errors() {
    let text = "(((\n".repeat(5000);
    for lang in [Lang::Python, Lang::Rust, Lang::Cpp] {
        let n = error_count(lang, &text);
        // Either parsed (with errors) or given up within budget (0).
        let parsed = tree_of(lang, &Rope::from_str(&text)).tree().is_some();
        assert!(!parsed || n > 0, "{lang:?}");
        exercise_everything(lang, &text);
    }
}

/// Every broken snippet of the fix corpus (but those that name another
/// server's diagnostic) has a syntax error with a message and a region a
/// fix may rewrite, and the named messages are the precise ones.
/// Line:column (1-based, columns in characters) of a byte offset.
fn line_col(text: &str, at: usize) -> String {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("{line}:{col}")
}

/// The broken-snippet corpus, data-driven: each snippet's diagnostics and
/// fix region are snapshotted in `tests/fixes/expected/<name>.txt`
/// (`UPDATE_EXPECT=1` rewrites them), and the per-version analysis answers
/// exactly as the searches it saves.
#[test]
fn corpus_snippets_have_diagnostics_and_regions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixes");
    let mut names: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    names.sort();
    let mut seen = 0;
    for path in names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".diag") || path.with_file_name(format!("{name}.diag")).exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lang = Lang::from_path(&name).unwrap();
        let p = Parsed::parse(lang, &text).unwrap();
        let errs = super::syntax_errors(&p, &text, 20);
        // One mistake each: what follows from it is not listed.
        assert_eq!(errs.len(), 1, "{name}: {errs:?}");
        let a = super::Analysis::new(&p, &text);
        let mut shown = String::new();
        for e in &errs {
            assert!(!e.message.is_empty());
            let (s, en) =
                super::fix_region(&p, &text, e.start, e.end, 4000, &a).unwrap_or_else(|| panic!("{name}: no region"));
            assert!(s <= e.start && en >= e.end, "{name}: region misses the error");
            shown.push_str(&format!(
                "{}-{} {}\n  under: {:?}\n  fix region: {}-{}\n",
                line_col(&text, e.start),
                line_col(&text, e.end),
                e.message,
                &text[e.start..e.end],
                line_col(&text, s),
                line_col(&text, en)
            ));
        }
        expect_test::expect_file![dir.join("expected").join(format!("{name}.txt"))].assert_eq(&shown);
        assert_eq!(a.errors, super::syntax_errors(&p, &text, super::ANALYSIS_MAX_ERRORS), "{name}");
        seen += 1;
    }
    assert!(seen >= 20, "{seen}");
}

#[test]
fn missing_colon_is_named_at_its_place() {
    let text = "import math\n\n\ndef area(r)\n    return math.pi * r ** 2\n\n\ndef todo(x):\n    pass\n";
    let p = Parsed::parse(Lang::Python, text).unwrap();
    let errs = super::syntax_errors(&p, text, 10);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].message, "expected ':'");
    assert_eq!(&text[errs[0].start..errs[0].end], ")");
    let (s, e) =
        super::fix_region(&p, text, errs[0].start, errs[0].end, 4000, &super::Analysis::new(&p, text)).unwrap();
    assert_eq!(&text[s..e], "def area(r)\n    return math.pi * r ** 2\n");
}

#[test]
fn a_closer_missing_before_the_error_is_found() {
    let text = "package main\n\nfunc max(a, b int) int {\n\tif a > b {\n\t\treturn a\n\treturn b\n}\n\nfunc main() {\n\tprintln(max(3, 7))\n}\n";
    let p = Parsed::parse(Lang::Go, text).unwrap();
    let errs = super::syntax_errors(&p, text, 10);
    assert_eq!(errs[0].message, "expected '}'", "{errs:?}");
    let (s, e) =
        super::fix_region(&p, text, errs[0].start, errs[0].end, 4000, &super::Analysis::new(&p, text)).unwrap();
    assert!(text[s..e].contains("\t\treturn a\n"), "{:?}", &text[s..e]);
    assert!(!text[s..e].contains("func main"), "{:?}", &text[s..e]);
}

#[test]
fn a_missing_colon_in_a_long_python_file_is_found_where_it_is() {
    // tree-sitter-python wraps the whole module in one ERROR after a `def`
    // without its ':'; the diagnostic still names the ':' on that line, and
    // the fix region is that function.
    let mut text = String::new();
    for i in 0..20 {
        let colon = if i == 5 { "" } else { ":" };
        text.push_str(&format!(
            "def f{i}(x){colon}\n    y = x * {i}\n    for k in range(y):\n        y += k\n    return y\n\n\n"
        ));
    }
    let p = Parsed::parse(Lang::Python, &text).unwrap();
    let errs = super::syntax_errors(&p, &text, 10);
    let line = |b: usize| text[..b].matches('\n').count() + 1;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((line(errs[0].start), errs[0].message.as_str()), (36, "expected ':'"));
    let (s, e) =
        super::fix_region(&p, &text, errs[0].start, errs[0].end, 4000, &super::Analysis::new(&p, &text)).unwrap();
    assert_eq!((line(s), line(e - 1)), (36, 40), "{}", &text[s..e]);
}

#[test]
fn misspelled_keywords_are_named_and_checked_by_reparsing() {
    assert!(super::diagnose::one_edit_apart("fro", "for"));
    assert!(super::diagnose::one_edit_apart("whlie", "while"));
    assert!(super::diagnose::one_edit_apart("retun", "return"));
    assert!(super::diagnose::one_edit_apart("fn", "fnn"));
    assert!(!super::diagnose::one_edit_apart("for", "for"));
    assert!(!super::diagnose::one_edit_apart("form", "from_"));
    assert!(!super::diagnose::one_edit_apart("abc", "cba"));
    // A word near a keyword that is not the mistake is left alone: `fore`
    // is a fine name, the missing ')' is the error.
    let text = "fore = 1\nx = (fore + 2\ny = 3\n";
    let p = Parsed::parse(Lang::Python, text).unwrap();
    let errs = super::syntax_errors(&p, text, 10);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(!errs[0].message.contains("did you mean"), "{errs:?}");
    // Two independent mistakes are both listed.
    let text = "def f(x):\n    retrun x\n\n\ndef g(y)\n    return y\n";
    let p = Parsed::parse(Lang::Python, text).unwrap();
    let msgs: Vec<String> = super::syntax_errors(&p, text, 10).into_iter().map(|e| e.message).collect();
    assert_eq!(msgs, ["unknown word 'retrun': did you mean 'return'?", "expected ':'"]);
}
