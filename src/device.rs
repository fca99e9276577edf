//! Choosing the compute device.

use crate::engine::LoadOptions;
use anyhow::{bail, Result};
use candle_core::{DType, Device};

/// Parses `cpu`, `cuda` or `cuda:N`, with a one-line error when CUDA is not
/// available in this build or on this machine.
pub fn parse(spec: &str) -> Result<Device> {
    open(spec).map_err(|e| anyhow::anyhow!("{e}; the CPU is available with --device cpu"))
}

/// For the server: the device, or the CPU with a one-line warning that says
/// why the device asked for cannot be used. Completions keep working.
pub(crate) fn open_or_cpu(spec: &str) -> (Device, Option<String>) {
    match open(spec) {
        Ok(d) => (d, None),
        Err(e) => (Device::Cpu, Some(format!("{e}; running on the CPU instead"))),
    }
}

fn open(spec: &str) -> Result<Device> {
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
        bail!("device '{spec}': this wick was built without the `cuda` feature (rebuild with --features cuda, see scripts/build-cuda)");
    }
    match open_cuda(ordinal) {
        Ok(d) => Ok(d),
        Err(e) => bail!("device '{spec}': {e}"),
    }
}

/// Loading defaults per device: f32 on the CPU with Q5_0 repacked; on GPUs
/// f16 activations and dense f16 weights for cuBLAS.
pub(crate) fn load_options(device: &Device) -> LoadOptions {
    if device.is_cuda() {
        LoadOptions { repack: false, dense_prefill: false, dtype: DType::F16, dense_weights: true }
    } else {
        LoadOptions::default()
    }
}

/// Opens a CUDA device. The cuda build loads the driver and CUDA's libraries
/// at run time (scripts/build-cuda), so it starts on any machine: what is
/// missing is said here, in one line, before candle touches them (cudarc
/// panics on a missing library). Then the device itself can fail: none, a
/// wrong ordinal, a driver too old for the CUDA version.
#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> std::result::Result<Device, String> {
    let major = (candle_core::cuda::cudarc::driver::sys::CUDA_VERSION / 1000) as usize;
    if let Some(missing) = missing_cuda_library(major) {
        return Err(missing);
    }
    // cudarc panics when a symbol it needs is missing (a driver older than
    // the CUDA version this was built for): that is an error here too.
    // Quietly: the panic becomes this error's one line, not a backtrace.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| Device::new_cuda(ordinal));
    std::panic::set_hook(hook);
    let opened = opened.map_err(|p| crate::engine::panic_message(&p)).and_then(|r| r.map_err(|e| e.to_string()));
    let device = opened.map_err(|e| {
        format!(
            "no usable CUDA device with this driver and CUDA {} ({})",
            cuda_version(),
            e.lines().next().unwrap_or("")
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

/// The first CUDA library that the loader cannot find, as a sentence; None
/// when all are there. `major` is the CUDA major version of the build.
#[cfg(any(feature = "cuda", test))]
fn missing_cuda_library(major: usize) -> Option<String> {
    let libs = [
        ("the NVIDIA driver", vec!["libcuda.so.1".to_string(), "libcuda.so".to_string()]),
        ("cuBLAS", vec![format!("libcublas.so.{major}"), "libcublas.so".to_string()]),
        ("cuBLASLt", vec![format!("libcublasLt.so.{major}"), "libcublasLt.so".to_string()]),
        ("cuRAND", vec!["libcurand.so.10".to_string(), "libcurand.so".to_string()]),
    ];
    for (what, names) in libs {
        if !names.iter().any(|n| can_load(n)) {
            let hint = if what == "the NVIDIA driver" {
                "no NVIDIA driver on this machine?".to_string()
            } else {
                format!("install CUDA {major}'s {what} (e.g. pip's nvidia-* packages) and put its folder on LD_LIBRARY_PATH")
            };
            return Some(format!("{what} ({}) was not found ({hint})", names[0]));
        }
    }
    None
}

/// Whether the dynamic loader can open `name`; the handle is closed again.
#[cfg(any(feature = "cuda", test))]
fn can_load(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else { return false };
    // SAFETY: a NUL-terminated name; the handle, when there is one, is only
    // closed. Opening runs the library's initialisers, as cudarc's would.
    unsafe {
        let h = libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
        if h.is_null() {
            return false;
        }
        libc::dlclose(h);
    }
    true
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

    #[test]
    fn the_server_falls_back_to_the_cpu_with_a_warning() {
        let (d, warning) = open_or_cpu("cpu");
        assert!(d.is_cpu() && warning.is_none());
        let (d, warning) = open_or_cpu("tpu");
        assert!(d.is_cpu());
        assert!(warning.unwrap().contains("running on the CPU instead"));
        let (d, warning) = open_or_cpu("cuda");
        assert_eq!(d.is_cuda(), warning.is_none());
    }

    #[test]
    fn missing_libraries_are_named() {
        assert!(can_load("libc.so.6"));
        assert!(!can_load("libwick-no-such-library.so.7"));
        assert!(!can_load("nul\0inside"));
        // Nothing here is a CUDA 99 library: the driver or cuBLAS is named.
        if let Some(m) = missing_cuda_library(99) {
            assert!(!m.contains('\n'), "{m}");
            assert!(m.contains("libcuda.so.1") || m.contains("libcublas.so.99"), "{m}");
        } else {
            panic!("found CUDA 99's cuBLAS");
        }
    }
}
