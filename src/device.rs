//! Choosing the compute device.

use crate::engine::LoadOptions;
use anyhow::{bail, Result};
use candle_core::{DType, Device};

/// Parses `cpu`, `cuda` or `cuda:N`, with a one-line error when CUDA is not
/// available in this build or on this machine.
pub fn parse(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    if spec == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => match rest.strip_prefix(':').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => bail!("unknown device '{spec}' (cpu, cuda or cuda:N)"),
        },
        None => bail!("unknown device '{spec}' (cpu, cuda or cuda:N)"),
    };
    if !cfg!(feature = "cuda") {
        bail!("device '{spec}': this wick was built without the `cuda` feature (rebuild with --features cuda); the CPU is available with --device cpu");
    }
    match Device::new_cuda(ordinal) {
        Ok(d) => Ok(d),
        Err(e) => bail!(
            "device '{spec}': no usable CUDA device or driver ({}); the CPU is available with --device cpu",
            e.to_string().lines().next().unwrap_or("")
        ),
    }
}

/// Loading defaults per device: f32 on the CPU with Q5_0 repacked; half
/// precision activations on GPUs.
pub fn load_options(device: &Device) -> LoadOptions {
    if device.is_cuda() {
        LoadOptions { repack: false, dense_prefill: false, dtype: DType::F16 }
    } else {
        LoadOptions::default()
    }
}
