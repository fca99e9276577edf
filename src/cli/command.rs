//! The command line: its arguments (clap) and what each command runs.
//! `src/main.rs` only calls [`main`].

use crate::engine::{Engine, LoadOptions};
use crate::prompt::FimOrder;
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "wick", version, about = "Local code completion: a language server with an in-process model")]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct ModelArgs {
    /// Model: a GGUF path, a file in wick's cache, `1.5b`, or a hub reference
    /// `owner/repo:file.gguf`. Default: Qwen2.5-Coder-0.5B-Instruct from the cache.
    #[arg(long)]
    model: Option<String>,
    /// Compute device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// CPU threads for the model (default: physical cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Keep f32 copies of the weights for prefill (faster prefill, ~4x memory).
    #[arg(long)]
    dense_prefill: bool,
    /// Linear weights: `dense` (dequantized at load; the GPU default) or
    /// `quantized` (the CPU default). For measurements.
    #[arg(long, hide = true)]
    weights: Option<String>,
    /// Activation dtype: f32 (the CPU default), f16 (the GPU default) or bf16.
    #[arg(long, hide = true)]
    dtype: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the language server over stdio (what editors start).
    Serve {
        /// Accepted for editors that pass it; stdio is the only transport.
        #[arg(long)]
        stdio: bool,
        /// Write logs to this file instead of stderr.
        #[arg(long)]
        log_file: Option<PathBuf>,
        /// Model, overriding the `model` setting.
        #[arg(long)]
        model: Option<String>,
        /// Device, overriding the `device` setting.
        #[arg(long)]
        device: Option<String>,
    },
    /// Print the completion at FILE:LINE:COL (1-based) as the editor would
    /// show it (the server's pipeline); timings go to stderr.
    Complete {
        /// FILE:LINE:COL, line and column 1-based (column in characters).
        at: String,
        #[command(flatten)]
        model: ModelArgs,
        /// Most tokens generated (the `maxTokens` setting).
        #[arg(long)]
        max_tokens: Option<usize>,
        /// Only the rest of the current line (`multiline: never`).
        #[arg(long)]
        single_line: bool,
        /// Server settings as JSON, e.g. '{"prompt": "fim", "fimOrder": "spm"}'.
        #[arg(long)]
        settings: Option<String>,
        /// Also print the model's text before cleaning (to stderr).
        #[arg(long)]
        raw: bool,
        /// Suggestions to print (1-3): the others are what an editor cycles to.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
        suggestions: u8,
    },
    /// Measure prefill and decode speed and peak memory against candle-transformers'
    /// quantized_qwen2; `wick bench lsp` measures keystroke latency through the server.
    Bench {
        /// `lsp` for the language-server benchmark, `remote` for editors typing at
        /// once against a serving engine, `actions` for code-action listing,
        /// `switch` for the keystroke after another prompt (KV caches per sequence).
        what: Option<String>,
        /// For `actions`: a source file with syntax errors (default: a generated 60 KB Python file).
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        colds: usize,
        #[arg(long, default_value_t = 20)]
        keystrokes: usize,
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, default_value_t = 512)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 64)]
        decode_tokens: usize,
        /// Skip the candle-transformers reference.
        #[arg(long)]
        no_reference: bool,
        /// Also time a cold completion (1,500-token prompt, 24 tokens) and
        /// keystrokes (+2 prompt tokens on the cached prompt, 16 tokens).
        #[arg(long)]
        latency: bool,
        /// For `lsp`: instead of the FIM orders, compare `prefetch` on and off:
        /// each file is opened, the cursor reported (a code-action request)
        /// and the first keystroke typed this many seconds later.
        #[arg(long)]
        prefetch_wait: Option<f64>,
        /// For `lsp`: the server's `contextTokens` (2600 gives ~1.5k-token FIM prompts).
        #[arg(long, default_value_t = 2600)]
        context_tokens: usize,
        /// For `remote`: the serving engine's URL.
        #[arg(long)]
        url: Option<String>,
        /// For `remote`: backend kinds to compare, comma-separated.
        #[arg(long, default_value = "llama.cpp,openai")]
        kinds: String,
        /// For `remote`: the served model's name (empty: the first it lists).
        #[arg(long, default_value = "")]
        served_model: String,
        /// For `remote`: editors typing at once, comma-separated (one run each).
        #[arg(long, default_value = "1,4,16")]
        editors: String,
        /// For `remote`: milliseconds between an answer and the next keystroke.
        #[arg(long, default_value_t = 150)]
        pause_ms: u64,
    },
    /// Compare the logits on a device with the CPU's f32 path (GPU checks).
    #[command(hide = true)]
    CheckDevice {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, default_value_t = 48)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 8)]
        steps: usize,
    },
    /// Acceptance rate and latency per language, last day and week, from the
    /// local statistics file the server keeps (never sent anywhere).
    Stats {
        /// The statistics file (default: $WICK_DATA_DIR/stats.jsonl, else
        /// $XDG_DATA_HOME/wick/stats.jsonl, else ~/.local/share/wick/stats.jsonl).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Write a self-contained HTML page (latency histogram, acceptance
        /// per day) to this file instead.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Run an evaluation set from ../shared/eval (or --data).
    Eval {
        /// humaneval-single-line, humaneval-multi-line, kv-reuse, or fixes
        /// (the fix action on the broken snippets in tests/fixes).
        set: String,
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value = "psm")]
        order: FimOrder,
        /// fim, prefix (plain continuation) or chat (the instruct chat
        /// template). For `fixes`: chat (default) or fim.
        #[arg(long)]
        mode: Option<String>,
        /// For `fixes`: samples tried per snippet.
        #[arg(long, default_value_t = 3)]
        attempts: usize,
        #[arg(long)]
        no_heal: bool,
        /// Go through the server's context builder and post-processing.
        #[arg(long)]
        server: bool,
        /// With --server: switch off the syntax-aware window.
        #[arg(long)]
        no_syntax_window: bool,
        /// With --server: switch off post-processing.
        #[arg(long)]
        no_postprocess: bool,
        /// Also run each problem's tests (Python, sandboxed subprocess).
        #[arg(long)]
        pass_at_1: bool,
        /// Directory holding the HumanEval infilling files (for real-code:
        /// the cases file, default eval/real-code/cases.jsonl.gz).
        #[arg(long)]
        data: Option<PathBuf>,
        /// For real-code: variants to compare on the same cases, separated by
        /// ';': default, naive, or settings such as prompt=fim,fimOrder=spm,
        /// suffixLines=3,syntaxWindow=false.
        #[arg(long, default_value = "naive;default")]
        variants: String,
        /// For real-code: languages (comma-separated; default all).
        #[arg(long, value_delimiter = ',')]
        langs: Vec<String>,
        /// For real-code: position kinds (comma-separated; default all).
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<String>,
        /// For real-code: shift the per-language spread by this many cases
        /// (`--limit 10 --offset 3` is a sample disjoint from `--limit 10`).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// For real-code: folders where the cases' packages are installed
        /// (site-packages, the unpacked llama-cpp-python sdist's parent):
        /// imports are resolved there, as in a workspace (cross-file context).
        #[arg(long, value_delimiter = ',')]
        sources: Vec<PathBuf>,
        /// For real-code: write per-case results as JSON lines.
        #[arg(long)]
        out: Option<PathBuf>,
        /// For real-code: instead, replay typing through `wick serve` on this
        /// many cases per language.
        #[arg(long)]
        typing: Option<usize>,
        /// For real-code --typing: the server's settings (JSON).
        #[arg(long, default_value = "{}")]
        settings: String,
    },
    /// Describe a GGUF file: architecture, shapes, tensor types, FIM family.
    Inspect { path: PathBuf },
    /// What to know when something is off: this binary, CPU and kernels, the
    /// model it would load, caches, hub, device, and (with --editor) whether
    /// the editor's configuration points at this binary. Reads local files only.
    Doctor {
        /// Model, as the `model` setting names it (default: the default model).
        #[arg(long)]
        model: Option<String>,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Check this editor's configuration too: vscode or nvim.
        #[arg(long)]
        editor: Option<crate::cli::doctor::Editor>,
    },
    /// Write a model with random weights (tests, benchmarks, GPU checks).
    GenModel {
        out: PathBuf,
        /// tiny, or qwen0.5b-shapes (the default model's exact shapes and types).
        #[arg(long, default_value = "tiny")]
        preset: String,
        #[arg(long, default_value = "qwen2.5-coder")]
        family: String,
    },
}

/// Parses the arguments, sets up logging and runs the command; exits
/// with 1 and the error on stderr when it fails.
pub fn main() {
    // Before any thread starts: setting the environment is safe only then.
    crate::engine::quiet_candle_workers();
    let cli = Cli::parse();
    if let Cmd::Serve { log_file: Some(path), .. } = &cli.cmd {
        if let Err(e) = crate::logging_to_file(path) {
            eprintln!("wick: cannot log to {}: {e}", path.display());
            std::process::exit(1);
        }
    } else {
        crate::logging_to_stderr();
    }
    if let Err(e) = run(cli) {
        eprintln!("wick: {e:#}");
        std::process::exit(1);
    }
}

fn set_threads(n: Option<usize>) {
    if let Some(n) = n {
        // Clamped there, with a warning, to what the machine has.
        crate::engine::set_threads(n);
    }
}

/// The device's loading defaults, with the command line's overrides.
fn load_options(m: &ModelArgs, device: &candle_core::Device) -> Result<LoadOptions> {
    let mut opts = LoadOptions { dense_prefill: m.dense_prefill, ..crate::device::load_options(device) };
    match m.weights.as_deref() {
        None => {}
        Some("dense") => opts.dense_weights = true,
        Some("quantized") => opts.dense_weights = false,
        Some(w) => bail!("unknown --weights '{w}' (dense or quantized)"),
    }
    match m.dtype.as_deref() {
        None => {}
        Some("f32") => opts.dtype = candle_core::DType::F32,
        Some("f16") => opts.dtype = candle_core::DType::F16,
        Some("bf16") => opts.dtype = candle_core::DType::BF16,
        Some(d) => bail!("unknown --dtype '{d}' (f32, f16 or bf16)"),
    }
    Ok(opts)
}

fn load_engine(m: &ModelArgs) -> Result<Engine> {
    set_threads(m.threads);
    let path = crate::models::resolve(m.model.as_deref())?;
    let device = crate::device::parse(&m.device)?;
    let opts = load_options(m, &device)?;
    let t = Instant::now();
    let engine = Engine::load(path.clone(), device, opts);
    let info = engine.wait_ready().with_context(|| format!("loading {}", path.display()))?;
    eprintln!(
        "wick: loaded {} ({}, {} layers, family {}) in {:.0} ms",
        path.display(),
        info.arch,
        info.n_layer,
        info.family.map(|f| f.name()).unwrap_or("unknown"),
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(engine)
}

/// Runs the command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Serve { stdio: _, log_file: _, model, device } => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(crate::server::serve(crate::server::ServeOptions { model, device }));
            // The stdin reader thread can't be interrupted: leave without
            // waiting for it. Exit code per LSP: 0 after shutdown, else 1.
            let ok = crate::server::SHUTDOWN.load(std::sync::atomic::Ordering::SeqCst);
            rt.shutdown_background();
            std::process::exit(if ok { 0 } else { 1 });
        }
        Cmd::Complete { at, model, max_tokens, single_line, settings, raw, suggestions } => {
            let (file, line, col) = parse_location(&at)?;
            let suggestions = suggestions as usize;
            let opts = crate::cli::complete::CompleteOptions {
                file,
                line,
                col,
                max_tokens,
                single_line,
                settings,
                raw,
                suggestions,
            };
            crate::cli::complete::run(&opts, || load_engine(&model))
        }
        Cmd::Bench { what: Some(w), model, colds, keystrokes, prefetch_wait, context_tokens, .. } if w == "lsp" => {
            let bin = std::env::current_exe()?;
            let device = (model.device != "cpu").then_some(model.device);
            let opts = crate::cli::bench_lsp::LspBenchOptions {
                model: model.model,
                device,
                colds,
                keystrokes,
                context_tokens,
                prefetch_wait,
            };
            crate::cli::bench_lsp::run(&bin, &opts)
        }
        Cmd::Bench {
            what: Some(w), url, kinds, served_model, editors, pause_ms, keystrokes, context_tokens, ..
        } if w == "remote" => {
            let Some(url) = url else { bail!("wick bench remote needs --url (a running serving engine)") };
            let editors = editors
                .split(',')
                .map(|n| n.trim().parse::<usize>().map_err(|_| anyhow::anyhow!("--editors: '{n}' is not a count")))
                .collect::<Result<Vec<_>>>()?;
            if editors.iter().any(|&n| n == 0 || n > 64) {
                bail!("--editors: counts from 1 to 64");
            }
            let opts = crate::cli::bench_remote::RemoteBenchOptions {
                url,
                kinds: kinds.split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect(),
                model: served_model,
                editors,
                keystrokes,
                pause: std::time::Duration::from_millis(pause_ms),
                context_tokens,
            };
            crate::cli::bench_remote::run(&std::env::current_exe()?, &opts)
        }
        Cmd::Bench { what: Some(w), file, .. } if w == "actions" => {
            let report = crate::cli::bench_actions::run(file.as_deref(), 5)?;
            use std::io::Write;
            std::io::stdout().lock().write_all(crate::cli::bench_actions::print(&report).as_bytes())?;
            Ok(())
        }
        Cmd::Bench { what: Some(w), model, prompt_tokens, .. } if w == "switch" => {
            set_threads(model.threads);
            let path = crate::models::resolve(model.model.as_deref())?;
            let device = crate::device::parse(&model.device)?;
            let opts = load_options(&model, &device)?;
            let report = crate::cli::bench::switch(&path, &device, &opts, prompt_tokens)?;
            use std::io::Write;
            std::io::stdout().lock().write_all(report.as_bytes())?;
            Ok(())
        }
        Cmd::Bench { what: Some(w), .. } => {
            bail!("unknown benchmark '{w}' (lsp, remote, actions, switch, or nothing for the engine)")
        }
        Cmd::Bench { what: None, model, prompt_tokens, decode_tokens, no_reference, latency, .. } => {
            set_threads(model.threads);
            let path = crate::models::resolve(model.model.as_deref())?;
            let device = crate::device::parse(&model.device)?;
            let opts = load_options(&model, &device)?;
            let latency = latency.then(crate::cli::bench::LatencyOptions::standard);
            let report = crate::cli::bench::run(
                &path,
                &device,
                &opts,
                prompt_tokens,
                decode_tokens,
                !no_reference,
                latency.as_ref(),
            )?;
            crate::cli::bench::print(&report);
            Ok(())
        }
        Cmd::CheckDevice { model, prompt_tokens, steps } => {
            set_threads(model.threads);
            let path = crate::models::resolve(model.model.as_deref())?;
            let device = crate::device::parse(&model.device)?;
            let base = load_options(&model, &device)?;
            let configs: Vec<(String, LoadOptions)> = [
                (candle_core::DType::F32, true),
                (candle_core::DType::F32, false),
                (candle_core::DType::F16, true),
                (candle_core::DType::F16, false),
                (candle_core::DType::BF16, true),
            ]
            .into_iter()
            .map(|(dtype, dense_weights)| {
                let name = format!("{dtype:?} {}", if dense_weights { "dense" } else { "quantized" });
                (name, LoadOptions { dtype, dense_weights, ..base.clone() })
            })
            .collect();
            let rows = crate::cli::bench::check_device(&path, &device, &configs, prompt_tokens, steps)?;
            crate::cli::bench::print_check(&device, &rows);
            Ok(())
        }
        Cmd::Eval {
            set, model, limit, offset, sources, data, variants, langs, kinds, out, typing, settings, ..
        } if set == "real-code" => {
            let cases = data.unwrap_or_else(crate::cli::real_code::default_cases);
            if let Some(per_lang) = typing {
                let settings = serde_json::from_str(&settings).context("--settings is not JSON")?;
                let opts =
                    crate::cli::real_code::TypingOptions { cases, per_lang, langs, model: model.model, settings };
                return crate::cli::real_code::typing(&std::env::current_exe()?, &opts);
            }
            let variants = variants
                .split(';')
                .filter(|v| !v.trim().is_empty())
                .map(crate::cli::real_code::Variant::parse)
                .collect::<Result<Vec<_>>>()?;
            let engine = load_engine(&model)?;
            let opts =
                crate::cli::real_code::RealCodeOptions { cases, limit, offset, sources, langs, kinds, variants, out };
            crate::cli::real_code::run(&engine, &opts)
        }
        Cmd::Eval {
            set,
            model,
            limit,
            order,
            mode,
            attempts,
            no_heal,
            server,
            no_syntax_window,
            no_postprocess,
            pass_at_1,
            data,
            ..
        } => {
            if set == "fixes" {
                let mode = mode.as_deref().unwrap_or("chat");
                let mode = crate::actions::FixMode::parse(mode)
                    .with_context(|| format!("unknown mode '{mode}' (chat or fim)"))?;
                let dir = data.unwrap_or_else(|| PathBuf::from("tests/fixes"));
                let engine = load_engine(&model)?;
                let opts = crate::actions::run::ActionOptions { mode, attempts, ..Default::default() };
                crate::cli::eval::fixes(&engine, &dir, &opts, limit, false)?;
                return Ok(());
            }
            let mode = mode.unwrap_or_else(|| "fim".into());
            let data = data.unwrap_or_else(crate::cli::eval::default_data_dir);
            if set == "kv-reuse" {
                let path = crate::models::resolve(model.model.as_deref())?;
                return crate::cli::eval::kv_reuse(&path, &data, limit);
            }
            let engine = load_engine(&model)?;
            let stages = crate::complete::Stages {
                syntax_window: !no_syntax_window,
                cross_file: false,
                syntax_check: !no_postprocess,
                ..Default::default()
            };
            let opts = crate::cli::eval::EvalOptions {
                server_path: server,
                stages,
                pass_at_1,
                limit,
                order,
                prefix_mode: mode == "prefix",
                chat_mode: mode == "chat",
                heal: !no_heal,
            };
            if !["fim", "prefix", "chat"].contains(&mode.as_str()) {
                bail!("unknown mode '{mode}' (fim, prefix or chat)");
            }
            crate::cli::eval::humaneval(&engine, &set, &data, &opts)
        }
        Cmd::Inspect { path } => crate::models::inspect(&path),
        Cmd::Stats { file, html } => {
            let text = crate::cli::stats::run(&crate::cli::stats::StatsOptions { file, html })?;
            std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?;
            Ok(())
        }
        Cmd::Doctor { model, device, editor } => {
            let opts = crate::cli::doctor::DoctorOptions { model, device, editor };
            let text = crate::cli::doctor::render(&crate::cli::doctor::findings(&opts));
            use std::io::Write;
            std::io::stdout().lock().write_all(text.as_bytes())?;
            Ok(())
        }
        Cmd::GenModel { out, preset, family } => {
            let family = crate::prompt::Family::ALL
                .into_iter()
                .find(|f| f.name() == family)
                .with_context(|| format!("unknown family '{family}'"))?;
            let spec = match preset.as_str() {
                "tiny" => crate::models::testgen::ModelSpec::tiny(family),
                "qwen0.5b-shapes" => crate::models::testgen::ModelSpec::qwen05b_shapes(),
                _ => bail!("unknown preset '{preset}' (tiny, qwen0.5b-shapes)"),
            };
            let t = Instant::now();
            crate::models::testgen::write_model(&spec, &out)?;
            eprintln!("wick: wrote {} in {:.1} s", out.display(), t.elapsed().as_secs_f64());
            Ok(())
        }
    }
}

fn parse_location(at: &str) -> Result<(PathBuf, usize, usize)> {
    let mut parts = at.rsplitn(3, ':');
    let col = parts.next().and_then(|c| c.parse::<usize>().ok());
    let line = parts.next().and_then(|l| l.parse::<usize>().ok());
    let file = parts.next();
    match (file, line, col) {
        (Some(f), Some(l), Some(c)) if l >= 1 && c >= 1 => Ok((PathBuf::from(f), l, c)),
        _ => bail!("expected FILE:LINE:COL with 1-based line and column, got '{at}'"),
    }
}
