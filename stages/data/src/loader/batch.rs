//! What goes in (patch specs, images with boxes) and what comes out (batches) of the loader.

use std::path::PathBuf;

use crate::stain::StainTransform;

/// One patch to read: top-left corner in level-0 pixels of image `image` (an index into the
/// loader's image list). The corner may lie outside the image: outside pixels are white.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PatchSpec {
    pub image: usize,
    pub x: i64,
    pub y: i64,
}

/// An image the loader reads, with its object boxes `[x1, y1, x2, y2]` in level-0 pixels and,
/// optionally, the stain normalisation applied to its pixels before any augmentation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoaderImage {
    pub path: PathBuf,
    pub boxes: Vec<[f32; 4]>,
    pub stain: Option<StainTransform>,
}

/// A finished batch: `pixels` holds N × H × W × 3 interleaved RGB bytes (N = `specs.len()`),
/// `boxes[i]` the boxes of patch i in its pixel coordinates after augmentation, clipped to the
/// patch (boxes whose centre left the patch are dropped).
#[derive(Debug)]
pub struct Batch<B> {
    pub index: usize,
    pub pixels: B,
    pub boxes: Vec<Vec<[f32; 4]>>,
    pub specs: Vec<PatchSpec>,
}

/// Memory a batch is written into: a `Vec<u8>`, or pinned host memory owned by the caller (a
/// tch tensor) so that pixels go straight from the decoder to a DMA-able buffer.
pub trait BatchBuffer: Send + 'static {
    /// The writable bytes; the loader uses the first N × H × W × 3.
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl BatchBuffer for Vec<u8> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl BatchBuffer for Box<[u8]> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}
