//! Device selection (`--device cpu|cuda|auto`).

use candle_core::Device;

use super::EngineError;

/// Parse and open a device. `auto` picks CUDA when this build has it and a GPU answers, else CPU;
/// `cuda` on a build or machine without one is an error naming the setting.
pub fn select(requested: &str) -> Result<Device, EngineError> {
    select_explained(requested).map(|(device, _)| device)
}

/// [`select`], and why `auto` fell back to the CPU on a build that has CUDA (for the status
/// line: a researcher with a GPU should not find out from the speed).
pub fn select_explained(requested: &str) -> Result<(Device, Option<String>), EngineError> {
    match requested {
        "cpu" => Ok((Device::Cpu, None)),
        "cuda" => open_cuda().map(|d| (d, None)),
        // `Device::cuda_if_available` only checks the build flag, so try to open it ourselves.
        "auto" => Ok(match open_cuda() {
            Ok(device) => (device, None),
            Err(e) if cfg!(feature = "cuda") => {
                (Device::Cpu, Some(format!("running on the CPU: {e}")))
            }
            Err(_) => (Device::Cpu, None),
        }),
        other => Err(EngineError::Device {
            requested: other.to_string(),
            message: "unknown device (expected cpu, cuda or auto)".into(),
        }),
    }
}

/// Open GPU 0. The build loads the driver at run time (see scripts/build-cuda.sh), so the
/// driver is looked for first: without it the CUDA libraries would fail inside the first call.
#[cfg(feature = "cuda")]
fn open_cuda() -> Result<Device, EngineError> {
    let unusable = |message: String| EngineError::Device {
        requested: "cuda".into(),
        message,
    };
    if !driver::present() {
        return Err(unusable(
            "no NVIDIA driver on this machine (libcuda.so.1 not found)".into(),
        ));
    }
    // A library missing beyond the driver (cuBLAS, NVRTC) is reported by the loader with a
    // panic; it is turned into this error instead of ending the program.
    match std::panic::catch_unwind(|| Device::new_cuda(0)) {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => Err(unusable(format!("no usable CUDA GPU: {e}"))),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the CUDA libraries could not be loaded".into());
            Err(unusable(what))
        }
    }
}

/// Whether the NVIDIA driver library can be found where the dynamic loader looks: the
/// directories of `LD_LIBRARY_PATH`, the loader cache, and the usual library directories.
#[cfg(feature = "cuda")]
mod driver {
    use std::path::Path;

    const NAME: &str = "libcuda.so.1";
    const DIRS: [&str; 7] = [
        "/lib",
        "/lib64",
        "/usr/lib",
        "/usr/lib64",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib/wsl/lib",
    ];

    pub fn present() -> bool {
        let from_env = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
        let listed = from_env.split(':').filter(|d| !d.is_empty());
        listed
            .chain(DIRS)
            .any(|dir| Path::new(dir).join(NAME).exists())
            || in_loader_cache()
    }

    /// `/etc/ld.so.cache` names every library the loader knows with its path.
    fn in_loader_cache() -> bool {
        std::fs::read("/etc/ld.so.cache")
            .is_ok_and(|bytes| bytes.windows(NAME.len()).any(|w| w == NAME.as_bytes()))
    }
}

#[cfg(not(feature = "cuda"))]
fn open_cuda() -> Result<Device, EngineError> {
    Err(EngineError::Device {
        requested: "cuda".into(),
        message: "this build has no CUDA support: rebuild with --features cuda".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_auto_open_and_unknown_names_the_setting() {
        assert!(matches!(select("cpu"), Ok(Device::Cpu)));
        assert!(select("auto").is_ok());
        let e = select("tpu").unwrap_err().to_string();
        assert!(e.contains("--device tpu"), "{e}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_rebuild() {
        let e = select("cuda").unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
        assert!(matches!(select("auto"), Ok(Device::Cpu)));
    }
}
