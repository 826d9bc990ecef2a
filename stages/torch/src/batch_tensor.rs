//! Loader batches written straight into (pinned) host tensors, so a batch reaches the GPU with
//! one asynchronous copy and no intermediate buffer.

use midog_data::loader::BatchBuffer;
use tch::{Device, Kind, Tensor};

/// A `uint8 [N, H, W, 3]` host tensor the loader fills in place.
pub struct TensorBatch {
    pub tensor: Tensor,
}

// SAFETY: the tensor is a plain CPU buffer owned by this value; the loader hands it from one
// worker thread to the consumer, never sharing it.
unsafe impl Send for TensorBatch {}

impl TensorBatch {
    /// `bytes` = N·H·W·3; pinned when the consumer is a CUDA device.
    pub fn allocate(n: i64, size: i64, device: Device) -> TensorBatch {
        let t = Tensor::empty([n, size, size, 3], (Kind::Uint8, Device::Cpu));
        let t = if device.is_cuda() { t.pin_memory(device) } else { t };
        TensorBatch { tensor: t }
    }
}

impl BatchBuffer for TensorBatch {
    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.tensor.numel();
        // SAFETY: a contiguous uint8 CPU tensor of `len` elements owned by `self`, borrowed
        // mutably for as long as the returned slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.tensor.data_ptr() as *mut u8, len) }
    }
}
