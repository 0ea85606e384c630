//! Memory figures Linux gives in `/proc` as `Name:   123456 kB` lines (`/proc/meminfo`,
//! `/proc/self/status`): one reader for the worker's batch budget and the benchmark.

/// The value of the line starting with `name` (e.g. `VmHWM:`) in bytes; None when the line is
/// missing or is not a number of kB.
pub fn field_bytes(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A `/proc/meminfo` figure (e.g. `MemAvailable:`) in bytes; None off Linux.
pub fn meminfo_bytes(name: &str) -> Option<u64> {
    field_bytes(&std::fs::read_to_string("/proc/meminfo").ok()?, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_fields_are_read_in_bytes() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(field_bytes(status, "VmHWM:"), Some(2048 * 1024));
        assert_eq!(field_bytes(status, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(field_bytes(status, "VmSwap:"), None);
    }

    #[test]
    fn meminfo_lines_are_read_in_bytes() {
        let meminfo = "MemTotal:       24684136 kB\nMemAvailable:   23480000 kB\n";
        assert_eq!(field_bytes(meminfo, "MemTotal:"), Some(24_684_136 * 1024));
        assert_eq!(
            field_bytes(meminfo, "MemAvailable:"),
            Some(23_480_000 * 1024)
        );
        assert_eq!(field_bytes("MemTotal: lots\n", "MemTotal:"), None);
    }
}
