//! Facts about the machine and the engine's choices that a benchmark result needs beside it.

use serde::{Deserialize, Serialize};

use crate::engine::proc_memory::meminfo_bytes;

/// Where the numbers were taken.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineInfo {
    pub cpu: String,
    pub cores: usize,
    pub memory_bytes: Option<u64>,
    /// `cpu`, or the GPU's name when the job ran on CUDA.
    pub device: String,
    pub os: String,
    pub date: String,
}

/// CPU model, cores and memory of this machine (Linux `/proc`; `unknown` elsewhere).
pub fn machine_info(device: &str, date: &str) -> MachineInfo {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".to_string(), |(_, v)| v.trim().to_string());
    let memory_bytes = meminfo_bytes("MemTotal:");
    MachineInfo {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes,
        device: device.to_string(),
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        date: date.to_string(),
    }
}

/// The GPU's name from `nvidia-smi`, when there is one.
pub fn gpu_name() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()?;
    let name = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .to_string();
    (out.status.success() && !name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_info_has_cores_and_the_given_fields() {
        let m = machine_info("cpu", "2026-11-23T00:00:00Z");
        assert!(m.cores >= 1);
        assert_eq!(m.device, "cpu");
        assert_eq!(m.date, "2026-11-23T00:00:00Z");
        assert!(!m.cpu.is_empty());
    }
}
