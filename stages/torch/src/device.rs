//! From a device request ("auto", "cpu", "cuda", "cuda:N") and the GPUs the engine assigned to
//! the stage, to a tch device — or an error that says why CUDA is not there.

use tch::Device;
use torch_stage_defs::device::{DeviceRequest, parse_device};

pub fn resolve(request: &str, assigned: &[usize]) -> Result<Device, String> {
    let req = parse_device(request)?;
    let available = tch::Cuda::is_available();
    let count = if available { tch::Cuda::device_count() as usize } else { 0 };
    let pick = |n: Option<usize>| -> Result<Device, String> {
        let index = n.or_else(|| assigned.first().copied()).unwrap_or(0);
        if index >= count {
            return Err(format!("device cuda:{index} requested, but this machine has {count} CUDA device(s)"));
        }
        Ok(Device::Cuda(index))
    };
    let device = match req {
        DeviceRequest::Cpu => Ok(Device::Cpu),
        DeviceRequest::Auto if available => pick(None),
        DeviceRequest::Auto => Ok(Device::Cpu),
        DeviceRequest::Cuda(n) if available => pick(n),
        DeviceRequest::Cuda(_) => Err(format!(
            "device = \"{request}\" but CUDA is not available here (libtorch sees no GPU{}); use device = \"auto\" to fall back to the CPU",
            if std::path::Path::new("/dev/nvidiactl").exists() {
                ": a driver is present, so check that libtorch_cuda.so is loaded (see bin/env.sh)"
            } else {
                ""
            }
        )),
    }?;
    if device.is_cuda() {
        // Patches and tiles have one fixed size, so cuDNN's autotuner pays once (the first batch)
        // and then picks the fastest convolution algorithms instead of its heuristics' guess.
        tch::Cuda::cudnn_set_benchmark(true);
    }
    Ok(device)
}

/// A short description of the device for logs and benchmark reports.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cpu => format!("CPU ({} threads)", tch::get_num_threads()),
        Device::Cuda(i) => format!("CUDA:{i} (cuDNN {})", if tch::Cuda::cudnn_is_available() { "on" } else { "off" }),
        other => format!("{other:?}"),
    }
}
