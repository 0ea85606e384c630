//! Device selection (`--device cpu|cuda|auto`).

use candle_core::Device;

use super::EngineError;

/// Parse and open a device. `auto` picks CUDA when this build has it and a GPU answers, else CPU;
/// `cuda` on a build or machine without one is an error naming the setting.
pub fn select(requested: &str) -> Result<Device, EngineError> {
    match requested {
        "cpu" => Ok(Device::Cpu),
        "cuda" => open_cuda(),
        // `Device::cuda_if_available` only checks the build flag, so try to open it ourselves.
        "auto" => Ok(open_cuda().unwrap_or(Device::Cpu)),
        other => Err(EngineError::Device {
            requested: other.to_string(),
            message: "unknown device (expected cpu, cuda or auto)".into(),
        }),
    }
}

#[cfg(feature = "cuda")]
fn open_cuda() -> Result<Device, EngineError> {
    Device::new_cuda(0).map_err(|e| EngineError::Device {
        requested: "cuda".into(),
        message: format!("no usable CUDA GPU: {e}"),
    })
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
