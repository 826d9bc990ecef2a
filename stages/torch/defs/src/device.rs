//! Device requests (`device = "auto" | "cpu" | "cuda" | "cuda:N"`) and the loader-thread rule,
//! shared by the stages' param checks (here) and the worker that resolves them against the GPUs
//! it sees (`stages/torch/src/device.rs`).

/// A device request: "auto", "cpu", "cuda" or "cuda:N".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    Auto,
    Cpu,
    Cuda(Option<usize>),
}

pub fn parse_device(s: &str) -> Result<DeviceRequest, String> {
    match s {
        "auto" => Ok(DeviceRequest::Auto),
        "cpu" => Ok(DeviceRequest::Cpu),
        "cuda" => Ok(DeviceRequest::Cuda(None)),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => Ok(DeviceRequest::Cuda(Some(n))),
            None => Err(format!("`{other}`: use \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"")),
        },
    }
}

/// Patch- or tile-decoding threads: `requested` when set (> 0); else, on a GPU, every thread but
/// one (the one that feeds the device), and on the CPU half of them (the other half computes).
pub fn loader_threads(requested: usize, threads: usize, on_gpu: bool) -> usize {
    if requested > 0 {
        requested
    } else if on_gpu {
        threads.saturating_sub(1).max(1)
    } else {
        (threads / 2).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(parse_device("cuda:1"), Ok(DeviceRequest::Cuda(Some(1))));
        assert_eq!(parse_device("auto"), Ok(DeviceRequest::Auto));
        assert!(parse_device("gpu").unwrap_err().contains("cuda:N"));
    }

    #[test]
    fn loader_threads_follow_the_device() {
        assert_eq!(loader_threads(3, 16, true), 3);
        assert_eq!(loader_threads(0, 16, true), 15);
        assert_eq!(loader_threads(0, 16, false), 8);
        assert_eq!(loader_threads(0, 1, false), 1);
    }
}
