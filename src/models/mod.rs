//! Model files: finding them (local path, wick's cache, the Hugging Face hub)
//! and reading them (GGUF, tokenizer). The only code that touches weights on
//! disk.

pub mod gguf;
pub mod testgen;
pub mod tokenizer;

use std::path::{Path, PathBuf};

/// The default model's file name in wick's cache, as `models/fetch` writes it.
pub(crate) const DEFAULT_MODEL_FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub(crate) const LARGE_MODEL_FILE: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";
/// The command that puts the default model in the cache.
pub(crate) const FETCH_COMMAND: &str = "models/fetch";

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("model file not found: {0}")]
    NotFound(PathBuf),
    #[error(
        "the default model is not in {dir}; fetch it with `{FETCH_COMMAND}` (from the wick repository) or pass --model PATH"
    )]
    DefaultMissing { dir: PathBuf },
    #[error("hub model '{repo}': {msg}")]
    Hub { repo: String, msg: String },
}

/// wick's model cache: $WICK_MODEL_DIR, else ~/.cache/wick/models.
pub(crate) fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WICK_MODEL_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("wick").join("models")
}

/// How a user names a model: nothing (the default), a file path, a short
/// alias, or a hub reference `owner/repo[:file.gguf]`.
pub fn resolve(spec: Option<&str>) -> Result<PathBuf, ResolveError> {
    let dir = cache_dir();
    let spec = match spec {
        None | Some("") | Some("default") | Some("0.5b") => {
            let p = dir.join(DEFAULT_MODEL_FILE);
            return if p.is_file() { Ok(p) } else { Err(ResolveError::DefaultMissing { dir }) };
        }
        Some("1.5b") => {
            let p = dir.join(LARGE_MODEL_FILE);
            return if p.is_file() { Ok(p) } else { Err(ResolveError::NotFound(p)) };
        }
        Some(s) => s,
    };
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let in_cache = dir.join(spec);
    if in_cache.is_file() {
        return Ok(in_cache);
    }
    if looks_like_hub_ref(spec) && !path.exists() {
        return hub::resolve(spec);
    }
    Err(ResolveError::NotFound(path.to_path_buf()))
}

fn looks_like_hub_ref(s: &str) -> bool {
    let repo = s.split(':').next().unwrap_or("");
    let parts: Vec<&str> = repo.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c)))
        && !s.starts_with('.')
}

/// Hugging Face hub resolution through the `hf-hub` crate: the local hub cache
/// first; the network only when not offline (HF_HUB_OFFLINE=1 honoured).
pub mod hub {
    use super::ResolveError;
    use std::path::PathBuf;

    pub fn offline() -> bool {
        matches!(std::env::var("HF_HUB_OFFLINE").as_deref(), Ok("1") | Ok("true") | Ok("TRUE") | Ok("yes"))
    }

    /// The hub cache root: $HF_HUB_CACHE, $HF_HOME/hub, or ~/.cache/huggingface/hub.
    pub(crate) fn cache_root() -> PathBuf {
        if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
            return PathBuf::from(p);
        }
        if let Some(p) = std::env::var_os("HF_HOME") {
            return PathBuf::from(p).join("hub");
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache").join("huggingface").join("hub")
    }

    /// `owner/repo:file.gguf`, or `owner/repo` with exactly one GGUF in the cache.
    pub fn resolve(spec: &str) -> Result<PathBuf, ResolveError> {
        let (repo_id, file) = match spec.split_once(':') {
            Some((r, f)) => (r.to_string(), Some(f.to_string())),
            None => (spec.to_string(), None),
        };
        let err = |msg: String| ResolveError::Hub { repo: repo_id.clone(), msg };
        let cache = hf_hub::Cache::new(cache_root());
        let repo = hf_hub::Repo::model(repo_id.clone());
        let cached = cache.repo(repo.clone());
        let file = match file {
            Some(f) => f,
            None => single_cached_gguf(&cache_root(), &repo_id).ok_or_else(|| {
                err("name the file as owner/repo:file.gguf (no single GGUF file in the local hub cache)".into())
            })?,
        };
        if let Some(p) = cached.get(&file) {
            return Ok(p);
        }
        if offline() {
            return Err(err(format!(
                "'{file}' is not in the local hub cache ({}) and HF_HUB_OFFLINE is set",
                cache_root().display()
            )));
        }
        let api = hf_hub::api::sync::ApiBuilder::from_cache(cache)
            .with_progress(true)
            .build()
            .map_err(|e| err(e.to_string()))?;
        api.repo(repo).get(&file).map_err(|e| err(format!("download of '{file}' failed: {e}")))
    }

    fn single_cached_gguf(root: &std::path::Path, repo_id: &str) -> Option<String> {
        let dir = root.join(format!("models--{}", repo_id.replace('/', "--"))).join("snapshots");
        let mut found = Vec::new();
        for snap in std::fs::read_dir(dir).ok()?.flatten() {
            for f in std::fs::read_dir(snap.path()).ok()?.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.ends_with(".gguf") && !found.contains(&name) {
                    found.push(name);
                }
            }
        }
        if found.len() == 1 {
            found.pop()
        } else {
            None
        }
    }
}

/// `wick inspect`: what a GGUF file holds, for humans.
pub(crate) fn inspect(path: &Path) -> anyhow::Result<()> {
    use std::collections::BTreeMap;
    use std::io::Write;
    let file = gguf::GgufFile::open(path)?;
    let mut out = std::io::stdout().lock();
    let arch = file.architecture().unwrap_or_else(|_| "?".into());
    writeln!(out, "file: {} ({} bytes)", path.display(), file.file_len)?;
    writeln!(out, "architecture: {arch}")?;
    for (k, v) in file.content.metadata.iter().filter(|(k, _)| k.starts_with(&format!("{arch}."))) {
        writeln!(out, "  {k} = {v:?}")?;
    }
    let mut by_type: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for info in file.content.tensor_infos.values() {
        let e = by_type.entry(format!("{:?}", info.ggml_dtype)).or_default();
        e.0 += 1;
        e.1 += (info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size()) as u64;
    }
    writeln!(out, "tensors: {}", file.content.tensor_infos.len())?;
    for (t, (n, b)) in by_type {
        writeln!(out, "  {t}: {n} tensors, {:.1} MB", b as f64 / 1e6)?;
    }
    let mut names: Vec<_> = file.content.tensor_infos.iter().collect();
    names.sort_by_key(|(k, _)| (*k).clone());
    for (k, info) in names.iter().filter(|(k, _)| k.starts_with("blk.0.") || !k.starts_with("blk.")) {
        writeln!(out, "  {k}: {:?} {:?}", info.ggml_dtype, info.shape.dims())?;
    }
    match tokenizer::Tokenizer::from_gguf(&file.content) {
        Ok(t) => {
            let fam = crate::prompt::Family::detect(|s| t.token_id(s).is_some());
            writeln!(
                out,
                "tokenizer: {} tokens, FIM family: {}",
                t.vocab_size(),
                fam.map(|f| f.name()).unwrap_or("none")
            )?;
            writeln!(out, "chat template: {}", if t.chat_template.is_some() { "yes" } else { "no" })?;
        }
        Err(e) => writeln!(out, "tokenizer: {e}")?,
    }
    Ok(())
}
