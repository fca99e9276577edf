//! Quantized linear layers. On the CPU, Q8_0 and Q5_0 weights (kept at 5
//! bits with AVX-512, else repacked exactly to Q8_0) go through our int8
//! kernels for decode and prefill alike;
//! K-quants through candle's repacked VNNI tiles where their shape allows,
//! and otherwise, for batches, through an f32 GEMM on dequantized weights.
//! Measured on the default model, 2 cores: prefill 512 tokens at ~160 tok/s
//! with the int8 kernels against ~80-100 with the f32 GEMM.
//!
//! On GPUs a weight is either candle's quantized matmul (its CUDA MMVQ/MMQ
//! kernels) or, by default, a dense f16/bf16 matrix for cuBLAS: memory is
//! plentiful there, and one GEMM per layer beats quantize-then-dot kernels.
//! Nothing here moves data to the CPU for a GPU tensor.

use super::cpu::Q8Matrix;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use std::sync::Arc;

/// From this many rows on, a CPU matmul without a fast quantized kernel
/// dequantizes the weight and runs the f32 GEMM: the dequantization is paid
/// once per call, the GEMM is much faster than per-row dot products.
pub(crate) const GEMM_MIN_ROWS: usize = 16;

/// `GEMM_MIN_ROWS`, overridable with WICK_GEMM_MIN_ROWS (for measurements).
fn gemm_min_rows() -> usize {
    static V: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *V.get_or_init(|| std::env::var("WICK_GEMM_MIN_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(GEMM_MIN_ROWS))
}

enum Weight {
    /// candle's quantized matmul (K-quants on the CPU, everything on GPUs).
    Candle { weight: Arc<QTensor>, qmm: QMatMul },
    /// Q8_0 (or exactly repacked Q5_0) with our own decode kernels (CPU only).
    Q8(Q8Matrix),
    /// A dense [out, in] matrix in the activation dtype, on the device.
    Dense(Tensor),
}

pub(crate) struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    /// f32 copy of the weight for prefill, when the caller chose to keep one.
    dense: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: QTensor, bias: Option<Tensor>) -> Result<Self> {
        let weight = Arc::new(weight);
        let qmm = QMatMul::from_arc(weight.clone())?;
        Ok(Linear { weight: Weight::Candle { weight, qmm }, bias, dense: None })
    }

    /// From raw GGUF bytes. On the CPU (with `fast`), Q8_0 and Q5_0 weights
    /// go to our kernels; everything else to candle's.
    pub(crate) fn from_raw(
        dtype: GgmlDType,
        dims: &[usize],
        raw: &[u8],
        device: &Device,
        fast: bool,
        bias: Option<Tensor>,
    ) -> Result<Self> {
        if fast && device.is_cpu() && dims.len() == 2 {
            let (n, k) = (dims[0], dims[1]);
            let m = match dtype {
                GgmlDType::Q8_0 => Some(Q8Matrix::from_q8_0(n, k, raw)),
                GgmlDType::Q5_0 => Some(Q8Matrix::from_q5_0(n, k, raw)),
                _ => None,
            };
            if let Some(m) = m {
                let m = m.map_err(candle_core::Error::Msg)?;
                return Ok(Linear { weight: Weight::Q8(m), bias, dense: None });
            }
        }
        let q = qtensor_from_raw(dtype, dims, raw, device, false)?;
        Linear::new(q, bias)
    }

    /// A dense layer: the weight dequantized once, on its device, to `dtype`
    /// (f16 on GPUs goes through candle's CUDA dequantization kernels).
    pub(crate) fn dense_from_raw(
        dtype: GgmlDType,
        dims: &[usize],
        raw: &[u8],
        device: &Device,
        act: DType,
        bias: Option<Tensor>,
    ) -> Result<Self> {
        let q = qtensor_from_raw(dtype, dims, raw, device, false)?;
        // candle's CUDA dequantize-to-f16 kernels cover the quantized types;
        // float weights go through f32.
        let quantized = !matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        let w = if act == DType::F16 && quantized {
            q.dequantize_f16(device)?
        } else {
            q.dequantize(device)?.to_dtype(act)?
        };
        Ok(Linear { weight: Weight::Dense(w), bias, dense: None })
    }

    /// Stacks dense layers along their outputs, so one GEMM computes all of
    /// them (q/k/v, gate/up); a layer without a bias gets zeros. `None`
    /// unless every part is dense.
    pub(crate) fn stack(parts: &[Linear]) -> Result<Option<Self>> {
        let mut ws = Vec::with_capacity(parts.len());
        for p in parts {
            match &p.weight {
                Weight::Dense(w) => ws.push(w.clone()),
                _ => return Ok(None),
            }
        }
        let weight = Tensor::cat(&ws, 0)?;
        let bias = if parts.iter().any(|p| p.bias.is_some()) {
            let mut bs = Vec::with_capacity(parts.len());
            for (p, w) in parts.iter().zip(&ws) {
                bs.push(match &p.bias {
                    Some(b) => b.to_dtype(w.dtype())?,
                    None => Tensor::zeros(w.dim(0)?, w.dtype(), w.device())?,
                });
            }
            Some(Tensor::cat(&bs, 0)?)
        } else {
            None
        };
        Ok(Some(Linear { weight: Weight::Dense(weight), bias, dense: None }))
    }

    /// Multiplies the weight and bias by `s` (folds attention's 1/sqrt(d)
    /// into the query projection). Dense layers only; false otherwise.
    pub fn scale(&mut self, s: f64) -> Result<bool> {
        let Weight::Dense(w) = &self.weight else { return Ok(false) };
        self.weight = Weight::Dense((w * s)?);
        if let Some(b) = &self.bias {
            self.bias = Some((b * s)?);
        }
        Ok(true)
    }

    /// The f32 weight on the CPU (for CPU prefill GEMMs).
    fn dequantize(&self) -> Result<Tensor> {
        match &self.weight {
            Weight::Candle { weight, .. } => weight.dequantize(&Device::Cpu),
            Weight::Q8(m) => Tensor::from_vec(m.dequantize(), (m.rows(), m.cols()), &Device::Cpu),
            Weight::Dense(w) => w.to_device(&Device::Cpu)?.to_dtype(DType::F32),
        }
    }

    /// Keeps an f32 copy of the weight for prefill (costs 4 bytes a weight).
    pub(crate) fn keep_dense(&mut self) -> Result<()> {
        let cpu = match &self.weight {
            Weight::Candle { weight, .. } => weight.device().is_cpu(),
            Weight::Q8(_) => true,
            Weight::Dense(_) => false,
        };
        if self.dense.is_none() && cpu {
            self.dense = Some(self.dequantize()?);
        }
        Ok(())
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Weight::Dense(w) = &self.weight {
            let mut dims = x.dims().to_vec();
            let k = dims.pop().unwrap_or(1);
            let y = x.reshape(((), k))?.matmul(&w.t()?)?;
            dims.push(w.dim(0)?);
            let y = y.reshape(dims)?;
            return match &self.bias {
                Some(b) => y.broadcast_add(b),
                None => Ok(y),
            };
        }
        let k = x.dim(candle_core::D::Minus1)?;
        let rows = x.elem_count() / k;
        let fast_quantized = match &self.weight {
            Weight::Q8(_) | Weight::Dense(_) => true,
            // candle's repacked x86 tiles need k to be a multiple of 256.
            Weight::Candle { weight, .. } => {
                matches!(weight.dtype(), GgmlDType::Q4K | GgmlDType::Q6K | GgmlDType::Q8_0) && k % 256 == 0
            }
        };
        let gemm = x.device().is_cpu() && x.dtype() == DType::F32 && rows >= gemm_min_rows();
        let y = if gemm && (!fast_quantized || self.dense.is_some()) {
            let w = match &self.dense {
                Some(w) => w.clone(),
                None => self.dequantize()?,
            };
            let (b, t, k) = x.dims3()?;
            x.reshape((b * t, k))?.matmul(&w.t()?)?.reshape((b, t, ()))?
        } else {
            match &self.weight {
                Weight::Candle { qmm, .. } => qmm.forward(x)?,
                Weight::Dense(_) => unreachable!("handled above"),
                Weight::Q8(m) => {
                    if !x.device().is_cpu() {
                        candle_core::bail!("int8 CPU kernels called with a {:?} tensor", x.device().location());
                    }
                    let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                    let mut y = vec![0f32; rows * m.rows()];
                    m.matmul(&xs, rows, &mut y);
                    let mut dims = x.dims().to_vec();
                    *dims.last_mut().unwrap() = m.rows();
                    Tensor::from_vec(y, dims, x.device())?.to_dtype(x.dtype())?
                }
            }
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Repacks Q5_0 blocks as Q8_0 blocks under the same scale. Exact: a Q5_0
/// value is an integer in [-16, 15], which fits in an i8, and Q8_0 has SIMD
/// vector-dot kernels where Q5_0 has none.
pub(crate) fn q5_0_to_q8_0(src: &[u8]) -> Vec<u8> {
    const IN: usize = 22;
    const OUT: usize = 34;
    let blocks = src.len() / IN;
    let mut out = vec![0u8; blocks * OUT];
    for (b, o) in src.chunks_exact(IN).zip(out.chunks_exact_mut(OUT)) {
        o[0] = b[0];
        o[1] = b[1];
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..22];
        for j in 0..16 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((qs[j] as u32 & 0x0F) | xh0) as i32 - 16;
            let x1 = ((qs[j] as u32 >> 4) | xh1) as i32 - 16;
            o[2 + j] = x0 as i8 as u8;
            o[2 + j + 16] = x1 as i8 as u8;
        }
    }
    out
}

/// Builds a QTensor from raw GGUF bytes, repacking types without a fast
/// kernel on the CPU.
pub(crate) fn qtensor_from_raw(
    dtype: GgmlDType,
    dims: &[usize],
    raw: &[u8],
    device: &Device,
    repack: bool,
) -> Result<QTensor> {
    if repack && dtype == GgmlDType::Q5_0 {
        let data = q5_0_to_q8_0(raw);
        return candle_core::quantized::ggml_file::qtensor_from_ggml(GgmlDType::Q8_0, &data, dims.to_vec(), device);
    }
    candle_core::quantized::ggml_file::qtensor_from_ggml(dtype, raw, dims.to_vec(), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q5_0_repack_is_exact() {
        let dev = Device::Cpu;
        let data: Vec<f32> = (0..64 * 32).map(|i| ((i * 7919) % 113) as f32 / 17.0 - 3.0).collect();
        let t = Tensor::from_vec(data, (64, 32), &dev).unwrap();
        let q5 = QTensor::quantize(&t, GgmlDType::Q5_0).unwrap();
        let raw = q5.data().unwrap().to_vec();
        let q8 = qtensor_from_raw(GgmlDType::Q5_0, &[64, 32], &raw, &dev, true).unwrap();
        assert_eq!(q8.dtype(), GgmlDType::Q8_0);
        let a = q5.dequantize(&dev).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = q8.dequantize(&dev).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
    }
}
