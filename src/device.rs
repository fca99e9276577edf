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
        bail!("device '{spec}': this wick was built without the `cuda` feature (rebuild with --features cuda, see scripts/build-cuda); the CPU is available with --device cpu");
    }
    match open_cuda(ordinal) {
        Ok(d) => Ok(d),
        Err(e) => bail!("device '{spec}': {e}; the CPU is available with --device cpu"),
    }
}

/// Loading defaults per device: f32 on the CPU with Q5_0 repacked; on GPUs
/// f16 activations and dense f16 weights for cuBLAS.
pub fn load_options(device: &Device) -> LoadOptions {
    if device.is_cuda() {
        LoadOptions { repack: false, dense_prefill: false, dtype: DType::F16, dense_weights: true }
    } else {
        LoadOptions::default()
    }
}

/// Opens a CUDA device. The cuda build links the driver and CUDA's libraries
/// (it does not start without them), so what can fail here is the device
/// itself: none, a wrong ordinal, a driver too old for the CUDA version.
#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> std::result::Result<Device, String> {
    let device = Device::new_cuda(ordinal).map_err(|e| {
        format!(
            "no usable CUDA device with this driver and CUDA {} ({})",
            cuda_version(),
            e.to_string().lines().next().unwrap_or("")
        )
    })?;
    if let Device::Cuda(d) = &device {
        if std::env::var_os("WICK_CUDA_EVENT_TRACKING").is_none() {
            // cudarc creates two CUDA events per allocation to order work
            // across streams; the engine uses one stream on one thread, so
            // that is pure overhead on every op.
            // SAFETY: every tensor of this device is created, used and
            // dropped on the engine's thread, on the device's one stream.
            unsafe { d.disable_event_tracking() };
        }
    }
    Ok(device)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_ordinal: usize) -> std::result::Result<Device, String> {
    Err("this wick was built without the `cuda` feature".into())
}

/// The CUDA version this build was compiled against, e.g. "13.0".
#[cfg(feature = "cuda")]
fn cuda_version() -> String {
    let v = candle_core::cuda::cudarc::driver::sys::CUDA_VERSION;
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_without_the_feature_or_a_driver_is_a_one_line_error() {
        match parse("cuda") {
            // A machine with a GPU and a cuda build.
            Ok(d) => assert!(d.is_cuda()),
            Err(e) => {
                let e = e.to_string();
                assert!(!e.contains('\n'), "{e}");
                assert!(e.contains("--device cpu"), "{e}");
                if cfg!(feature = "cuda") {
                    assert!(e.contains("driver") || e.contains("library") || e.contains("device"), "{e}");
                } else {
                    assert!(e.contains("without the `cuda` feature"), "{e}");
                }
            }
        }
        assert!(parse("cuda:x").unwrap_err().to_string().contains("unknown device"));
        assert!(parse("tpu").is_err());
        assert!(parse(" CPU ").unwrap().is_cpu());
    }
}
