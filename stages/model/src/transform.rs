//! Input normalisation: torchvision's `GeneralizedRCNNTransform` semantics without resizing or
//! batching (our batches are already equal-sized patches).

use tch::{Device, Kind, Tensor};

/// `uint8 [N, H, W, 3]` (RGB, on any device) → `f32 [N, 3, H, W]`: `(x / 255 − mean) / std` per channel.
///
/// `channels_last`: return the NCHW tensor with NHWC memory layout (a free permutation of the input)
/// instead of a contiguous one; cuDNN runs channels-last convolutions faster with bf16/fp16.
pub fn normalize_images(images: &Tensor, mean: [f64; 3], std: [f64; 3], channels_last: bool) -> Tensor {
    // built on the device with fill kernels: a host→device copy would synchronise the CUDA stream
    let opts = (Kind::Float, images.device());
    let to_t = |v: [f64; 3]| Tensor::stack(&v.map(|x| Tensor::full([1], x, opts)), 0).view([1, 3, 1, 1]);
    let x = images.permute([0, 3, 1, 2]);
    let x = if channels_last { x } else { x.contiguous() };
    (x.to_kind(Kind::Float) / 255.0 - to_t(mean)) / to_t(std)
}

/// Copies a host tensor to `device` without stalling the CUDA stream: through pinned memory with a
/// non-blocking copy (a plain `to_device` from pageable memory synchronises the whole stream, i.e.
/// waits for the previous training step). Other cases are a plain `to_device`. Use it for every
/// per-step upload (images, targets).
pub fn upload(t: &Tensor, device: Device) -> Tensor {
    match device {
        Device::Cuda(_) if t.device() == Device::Cpu => t.pin_memory(device).to_device_(device, t.kind(), true, false),
        _ => t.to_device(device),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn normalises_like_torchvision() {
        let img = Tensor::from_slice(&[0u8, 128, 255, 10, 20, 30]).view([1, 1, 2, 3]);
        for cl in [false, true] {
            let x = normalize_images(&img, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], cl);
            assert_eq!(x.size(), vec![1, 3, 1, 2]);
            assert_eq!(crate::precision::is_channels_last(&x), cl);
            let v: Vec<f32> = Vec::try_from(x.reshape([-1])).unwrap();
            let e0 = (0.0 / 255.0 - 0.485f32) / 0.229;
            let e1 = (128.0 / 255.0 - 0.456f32) / 0.224;
            assert!((v[0] - e0).abs() < 1e-6 && (v[2] - e1).abs() < 1e-6, "{v:?}");
        }
        let _ = Device::Cpu;
    }
}
