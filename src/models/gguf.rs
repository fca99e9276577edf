//! Opening GGUF files: validation first, so that a truncated, foreign or
//! hostile file gives a one-line error naming the file and the problem, and
//! never a panic or an allocation driven by a forged header.

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::GgmlDType;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: cannot open: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a GGUF file (magic bytes {magic:?})")]
    NotGguf { path: PathBuf, magic: [u8; 4] },
    #[error("{path}: file too short to be a GGUF model ({len} bytes)")]
    TooShort { path: PathBuf, len: u64 },
    #[error("{path}: malformed GGUF header: {msg}")]
    Header { path: PathBuf, msg: String },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("{path}: unsupported architecture '{arch}' (wick runs qwen2 and llama decoders)")]
    Architecture { path: PathBuf, arch: String },
    #[error("{path}: tensor '{tensor}' has unsupported quantization type {dtype}")]
    Quantization { path: PathBuf, tensor: String, dtype: String },
}

/// A GGUF file whose header has been read and checked against the file size.
pub struct GgufFile {
    pub path: PathBuf,
    pub content: Content,
    pub file_len: u64,
    reader: BufReader<File>,
}

/// Raw tensor types our decoder accepts. Everything else is rejected with the
/// tensor's name before any weight is read.
pub(crate) fn supported_dtype(dtype: GgmlDType) -> bool {
    use GgmlDType::*;
    matches!(dtype, F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2K | Q3K | Q4K | Q5K | Q6K | Q8K)
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let p = || path.to_path_buf();
        let file = File::open(path).map_err(|source| GgufError::Open { path: p(), source })?;
        let file_len = file.metadata().map_err(|source| GgufError::Open { path: p(), source })?.len();
        if file_len < 24 {
            return Err(GgufError::TooShort { path: p(), len: file_len });
        }
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 4];
        reader.read_exact(&mut magic).map_err(|source| GgufError::Open { path: p(), source })?;
        if &magic != b"GGUF" {
            return Err(GgufError::NotGguf { path: p(), magic });
        }
        reader.rewind().map_err(|source| GgufError::Open { path: p(), source })?;
        // candle's reader bounds every length prefix by the file size; we add
        // the checks on tensor shapes and data ranges below.
        // candle's reader panics on some hostile headers (an alignment of 0
        // divides by zero): a panic there is a bad file, not a crash.
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Content::read(&mut reader)));
        let Ok(read) = read else {
            return Err(GgufError::Header {
                path: p(),
                msg: "the header is invalid (the reader gave up on it, e.g. an alignment of 0)".into(),
            });
        };
        let content = read.map_err(|e| {
            let msg = first_line(&e.to_string());
            if msg.contains("unknown dtype") {
                GgufError::Invalid {
                    path: p(),
                    msg: format!("a tensor has an unsupported quantization type ({msg}); wick reads F32, F16, BF16, Q4_0..Q8_0 and the K-quants"),
                }
            } else if msg.contains("failed to fill whole buffer") || msg.contains("UnexpectedEof") {
                GgufError::Header { path: p(), msg: "the header ends early: truncated file?".into() }
            } else {
                GgufError::Header { path: p(), msg }
            }
        })?;
        let file = GgufFile { path: p(), content, file_len, reader };
        file.check_tensors()?;
        Ok(file)
    }

    fn check_tensors(&self) -> Result<(), GgufError> {
        let invalid = |msg: String| GgufError::Invalid { path: self.path.clone(), msg };
        let data_start = self.content.tensor_data_offset;
        if data_start > self.file_len {
            return Err(invalid(format!(
                "tensor data starts at byte {data_start}, past the end of the file ({} bytes): truncated?",
                self.file_len
            )));
        }
        for (name, info) in &self.content.tensor_infos {
            let mut elems: u64 = 1;
            for &d in info.shape.dims() {
                elems = elems
                    .checked_mul(d as u64)
                    .ok_or_else(|| invalid(format!("tensor '{name}' has an overflowing shape {:?}", info.shape)))?;
            }
            let block = info.ggml_dtype.block_size() as u64;
            if !elems.is_multiple_of(block) {
                return Err(invalid(format!(
                    "tensor '{name}' has {elems} elements, not a multiple of its block size {block}"
                )));
            }
            let bytes = (elems / block)
                .checked_mul(info.ggml_dtype.type_size() as u64)
                .ok_or_else(|| invalid(format!("tensor '{name}' is impossibly large")))?;
            let end = data_start
                .checked_add(info.offset)
                .and_then(|s| s.checked_add(bytes))
                .ok_or_else(|| invalid(format!("tensor '{name}' has an overflowing offset")))?;
            if end > self.file_len {
                return Err(invalid(format!(
                    "tensor '{name}' ends at byte {end} but the file has {} bytes: truncated download?",
                    self.file_len
                )));
            }
        }
        Ok(())
    }

    pub fn architecture(&self) -> Result<String, GgufError> {
        match self.content.metadata.get("general.architecture") {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(GgufError::Invalid {
                path: self.path.clone(),
                msg: "missing metadata 'general.architecture'".into(),
            }),
        }
    }

    pub(crate) fn metadata(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    pub(crate) fn meta_u32(&self, key: &str) -> Result<u32, GgufError> {
        let v = self
            .metadata(key)
            .ok_or_else(|| GgufError::Invalid { path: self.path.clone(), msg: format!("missing metadata '{key}'") })?;
        let n = match v {
            Value::U8(x) => *x as u64,
            Value::U16(x) => *x as u64,
            Value::U32(x) => *x as u64,
            Value::U64(x) => *x,
            Value::I8(x) if *x >= 0 => *x as u64,
            Value::I16(x) if *x >= 0 => *x as u64,
            Value::I32(x) if *x >= 0 => *x as u64,
            Value::I64(x) if *x >= 0 => *x as u64,
            _ => {
                return Err(GgufError::Invalid {
                    path: self.path.clone(),
                    msg: format!("metadata '{key}' is not a non-negative integer"),
                })
            }
        };
        u32::try_from(n).map_err(|_| GgufError::Invalid {
            path: self.path.clone(),
            msg: format!("metadata '{key}' = {n} is out of range"),
        })
    }

    pub(crate) fn meta_f32(&self, key: &str) -> Option<f32> {
        match self.metadata(key)? {
            Value::F32(x) => Some(*x),
            Value::F64(x) => Some(*x as f32),
            _ => None,
        }
    }

    /// The tensors' names, in no particular order.
    pub(crate) fn tensor_names(&self) -> Vec<String> {
        self.content.tensor_infos.keys().cloned().collect()
    }

    pub(crate) fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    pub(crate) fn tensor_dims(&self, name: &str) -> Option<Vec<usize>> {
        self.content.tensor_infos.get(name).map(|i| i.shape.dims().to_vec())
    }

    /// The raw bytes of one tensor, as stored (still quantized).
    pub(crate) fn tensor_bytes(&mut self, name: &str) -> Result<(GgmlDType, Vec<usize>, Vec<u8>), GgufError> {
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| GgufError::Invalid { path: self.path.clone(), msg: format!("missing tensor '{name}'") })?;
        if !supported_dtype(info.ggml_dtype) {
            return Err(GgufError::Quantization {
                path: self.path.clone(),
                tensor: name.to_string(),
                dtype: format!("{:?}", info.ggml_dtype),
            });
        }
        let dims = info.shape.dims().to_vec();
        let elems: usize = dims.iter().product();
        let bytes = elems / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        let start = self.content.tensor_data_offset + info.offset;
        let dtype = info.ggml_dtype;
        let mut buf = vec![0u8; bytes];
        let io = |source| GgufError::Open { path: self.path.clone(), source };
        self.reader.seek(std::io::SeekFrom::Start(start)).map_err(io)?;
        self.reader.read_exact(&mut buf).map_err(|source| GgufError::Open { path: self.path.clone(), source })?;
        Ok((dtype, dims, buf))
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod hostile {
    use super::*;

    /// A GGUF v3 header with no tensors and `general.alignment = 0`.
    fn zero_alignment() -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes()); // tensors
        b.extend(1u64.to_le_bytes()); // metadata entries
        let key = b"general.alignment";
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key);
        b.extend(4u32.to_le_bytes()); // UINT32
        b.extend(0u32.to_le_bytes());
        b
    }

    #[test]
    fn an_alignment_of_zero_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("wick-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("zero-alignment.gguf");
        std::fs::write(&path, zero_alignment()).unwrap();
        let e = GgufFile::open(&path).err().expect("an invalid header");
        assert!(e.to_string().contains("header"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
