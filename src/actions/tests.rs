use super::*;

fn req<'a>(text: &'a str, lang: Lang, needle: &str, message: &'a str) -> FixRequest<'a> {
    let start = text.find(needle).expect("needle");
    FixRequest { text, lang: Some(lang), language_id: "python", start, end: start + needle.len(), message }
}

/// [`plan_fix`] with a fresh analysis of the request's text.
fn planned(r: &FixRequest, p: &Parsed) -> Result<FixPlan, FixError> {
    plan_fix(r, Some((p, &syntax::Analysis::new(p, r.text))))
}

fn parsed(lang: Lang, text: &str) -> Parsed {
    Parsed::parse(lang, text).unwrap()
}

const MISSING_COLON: &str = "import math\n\n\ndef area(r)\n    return math.pi * r ** 2\n\n\nprint(area(2.0))\n";

#[test]
fn plans_the_broken_lines_and_verifies_a_real_fix() {
    let p = parsed(Lang::Python, MISSING_COLON);
    let errs = syntax::syntax_errors(&p, MISSING_COLON, 10);
    assert!(!errs.is_empty());
    let e = &errs[0];
    let r = FixRequest {
        text: MISSING_COLON,
        lang: Some(Lang::Python),
        language_id: "python",
        start: e.start,
        end: e.end,
        message: &e.message,
    };
    let plan = planned(&r, &p).unwrap();
    assert!(plan.is_syntax);
    let region = &MISSING_COLON[plan.start..plan.end];
    assert_eq!(region, "def area(r)\n    return math.pi * r ** 2\n");
    let fixed = region.replace("(r)", "(r):");
    assert_eq!(verify(&r, &plan, &fixed), Ok(()));
    // Unchanged, deleted, or still broken: rejected.
    assert!(verify(&r, &plan, region).is_err());
    assert!(verify(&r, &plan, "\n").is_err());
    assert!(verify(&r, &plan, &region.replace("(r)", "(r:")).is_err());
    let edit = minimal_edit(MISSING_COLON, plan.start, plan.end, &fixed).unwrap();
    assert_eq!((edit.start_line, edit.end_line, edit.text.as_str()), (3, 4, "def area(r):\n"));
}

#[test]
fn a_fix_that_breaks_other_code_is_rejected() {
    let text = "def f(x)\n    return x\n\ny = [1, 2]\n";
    let p = parsed(Lang::Python, text);
    let r = req(text, Lang::Python, "(x)", "expected ':'");
    let plan = planned(&r, &p).unwrap();
    let region = &text[plan.start..plan.end];
    // Fixing the colon but opening a bracket that swallows the rest.
    let bad = region.replacen("def f(x)", "def f(x):", 1).replacen("return x", "return (x", 1);
    assert!(verify(&r, &plan, &bad).is_err(), "{bad:?}");
}

#[test]
fn foreign_diagnostics_need_a_change_and_no_new_errors() {
    let text = "def f(x):\n    return y\n";
    let p = parsed(Lang::Python, text);
    let r = req(text, Lang::Python, "y", "\"y\" is not defined");
    let plan = planned(&r, &p).unwrap();
    assert!(!plan.is_syntax);
    assert_eq!(&text[plan.start..plan.end], text);
    assert_eq!(verify(&r, &plan, "def f(x):\n    return x\n"), Ok(()));
    assert!(verify(&r, &plan, "def f(x):\n    return (x\n").is_err());
}

#[test]
fn out_of_range_and_too_large() {
    let text = "x = 1\n";
    let p = parsed(Lang::Python, text);
    let r = FixRequest { text, lang: Some(Lang::Python), language_id: "python", start: 3, end: 99, message: "m" };
    assert_eq!(planned(&r, &p), Err(FixError::OutOfRange));
    let big = format!("x = [{}\n", "1, ".repeat(1000));
    let p = parsed(Lang::Python, &big);
    let r = FixRequest { text: &big, lang: Some(Lang::Python), language_id: "python", start: 5, end: 6, message: "m" };
    assert!(matches!(planned(&r, &p), Err(FixError::TooLarge(_))));
}

#[test]
fn answers_keep_the_region_indentation() {
    assert_eq!(shape_answer("    x = 1\n    y = 2\n", "x = 1\ny = 3"), "    x = 1\n    y = 3\n");
    assert_eq!(shape_answer("    x = 1\n", "    x = 2\n\n"), "    x = 2\n");
    assert_eq!(shape_answer("x", "y\n"), "y");
    assert_eq!(shape_answer("  if a:\n    b\n", "      if a:\n        b"), "  if a:\n    b\n");
}

#[test]
fn echoed_context_is_cut_from_answers() {
    let before = "def f(items):\n    total = 0\n";
    let after = "    return total\n\nprint(f([]))\n";
    let answer = "def f(items):\n    total = 0\n    for i in items:\n        total += i\n    return total\n";
    assert_eq!(strip_context(answer, before, after), "    for i in items:\n        total += i\n");
    assert_eq!(strip_context("    for i in items:\n", before, after), "    for i in items:\n");
    // Only the part after the echoed lines: the echo must reach the region.
    assert_eq!(strip_context("    total = 0\n    x\n", before, after), "    x\n");
}

#[test]
fn minimal_edit_keeps_shared_lines() {
    let text = "a\nb\nc\nd\n";
    let e = minimal_edit(text, 0, text.len(), "a\nB\nc\nd\n").unwrap();
    assert_eq!((e.start_line, e.end_line, e.start, e.end, e.text.as_str()), (1, 2, 2, 4, "B\n"));
    assert!(minimal_edit(text, 0, text.len(), text).is_none());
    // Insertion of a line.
    let e = minimal_edit(text, 0, text.len(), "a\nb\nx\nc\nd\n").unwrap();
    assert_eq!((e.start_line, e.end_line, e.text.as_str()), (2, 2, "x\n"));
}

#[test]
fn finds_empty_bodies_in_each_language() {
    let cases: &[(Lang, &str, &str)] = &[
        (Lang::Python, "def add(a, b):\n    pass\n", "add"),
        (Lang::Python, "def add(a, b):\n    \"\"\"Adds.\"\"\"\n    ...\n", "add"),
        (Lang::Rust, "fn add(a: i32, b: i32) -> i32 {\n    todo!()\n}\n", "add"),
        (Lang::Rust, "fn add(a: i32, b: i32) -> i32 {}\n", "add"),
        (Lang::JavaScript, "function add(a, b) {\n}\n", "add"),
        (
            Lang::TypeScript,
            "function add(a: number, b: number): number {\n  throw new Error(\"not implemented\");\n}\n",
            "add",
        ),
        (Lang::Go, "package m\n\nfunc Add(a, b int) int {\n\tpanic(\"TODO\")\n}\n", "Add"),
    ];
    for (lang, text, name) in cases {
        let p = parsed(*lang, text);
        let at = text.find(name).unwrap();
        let b = syntax::empty_body_at(&p, text, at).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(b.name, *name);
        let fp = plan_fill(text, &p, at).unwrap();
        assert!(fp.prefix.len() <= text.len() + 8);
    }
    let full = "def add(a, b):\n    return a + b\n";
    assert!(syntax::empty_body_at(&parsed(Lang::Python, full), full, 5).is_none());
}

#[test]
fn bodies_are_cut_where_the_function_ends() {
    let text = "fn add(a: i32, b: i32) -> i32 {\n}\n";
    let p = parsed(Lang::Rust, text);
    let fp = plan_fill(text, &p, 3).unwrap();
    assert_eq!(cut_body("a + b\n}\n\nfn main() {}", &fp), "a + b");
    assert_eq!(cut_body("if a > 0 { \"}\" } else { b }\n}", &fp), "if a > 0 { \"}\" } else { b }");
    let text = "def add(a, b):\n    pass\n\nprint(1)\n";
    let p = parsed(Lang::Python, text);
    let fp = plan_fill(text, &p, 5).unwrap();
    assert_eq!(cut_body("return a + b\n\ndef sub(a, b):\n    return a - b\n", &fp), "return a + b");
    assert_eq!(cut_body("x = a\n    return x + b\nprint(2)\n", &fp), "x = a\n    return x + b");
    // The prompt ends in the body's indentation: a repeat of it is dropped,
    // from the later lines too when they all carry it.
    assert_eq!(cut_body("    return a + b\n", &fp), "return a + b");
    assert_eq!(cut_body("    x = a\n        return x + b\n", &fp), "x = a\n    return x + b");
    assert_eq!(cut_body("    x = a\n    return x + b\n", &fp), "x = a\n    return x + b");
    // Where generation may stop: once a line leaves the body.
    assert_eq!(body_end("x = a\n    return x", &fp), (18, false));
    assert_eq!(body_end("x = a\n    return x\npr", &fp), (19, true));
    assert_eq!(body_end("x = a\n    return x\n  ", &fp), (21, false), "indentation alone says nothing yet");
}

/// Another server's diagnostic whose range ends next to (or inside) a
/// multi-byte character: planning takes the lines around it, never slices
/// inside a character.
#[test]
fn ranges_next_to_multibyte_characters_plan_without_panicking() {
    let text = "def café(x):\n    return 'naïve' + x  # ünïcödé\n\n𝄞 = 1\n";
    let p = parsed(Lang::Python, text);
    for start in 0..=text.len() {
        for end in start..=text.len() {
            let r =
                FixRequest { text, lang: Some(Lang::Python), language_id: "python", start, end, message: "spelling" };
            for plan in [planned(&r, &p), plan_fix(&r, None)].into_iter().flatten() {
                assert!(
                    text.is_char_boundary(plan.start) && text.is_char_boundary(plan.end),
                    "{start}..{end}: {plan:?}"
                );
                let _ = context(text, plan.start, plan.end);
            }
        }
    }
}
