//! The style patches of Fourier mixing: `bank_size` random patches of the style images, drawn
//! from the loader's seed alone, their low-frequency amplitudes computed once, by whichever
//! worker first needs one. A bank per loader (the train stage starts one per epoch with an epoch
//! seed) costs `bank_size` extra patch reads instead of one per mixed patch.

use std::sync::{Arc, OnceLock};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::FourierMix;
use super::fourier::LowAmplitude;
use crate::tiff::TiffImage;

/// Where one style patch is: image index and top-left corner (level-0 px).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StyleDraw {
    pub image: usize,
    pub x: i64,
    pub y: i64,
}

pub(crate) struct StyleBank {
    draws: Vec<StyleDraw>,
    amplitudes: Vec<OnceLock<Result<Arc<LowAmplitude>, String>>>,
}

impl StyleBank {
    /// Draws the bank's patch positions (uniform over the style images, then inside the image).
    pub(crate) fn draw(config: &FourierMix, images: &[TiffImage], patch_size: u32, seed: u64) -> StyleBank {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..].copy_from_slice(b"midog fourier style bank");
        let mut rng = ChaCha8Rng::from_seed(key);
        let [start, end] = config.style_images;
        let draws = (0..config.bank_size)
            .map(|_| {
                let image = rng.random_range(start..end);
                let (w, h) = (images[image].width(), images[image].height());
                let x = rng.random_range(0..=w.saturating_sub(patch_size));
                let y = rng.random_range(0..=h.saturating_sub(patch_size));
                StyleDraw { image, x: i64::from(x), y: i64::from(y) }
            })
            .collect();
        StyleBank { draws, amplitudes: (0..config.bank_size).map(|_| OnceLock::new()).collect() }
    }

    /// The first entry from `start` on (cyclically) whose patch is not from `own_image`.
    pub(crate) fn pick(&self, start: usize, own_image: usize) -> Option<usize> {
        let n = self.draws.len();
        (0..n).map(|i| (start + i) % n).find(|&k| self.draws[k].image != own_image)
    }

    /// Entry `k`'s amplitude, computed by `compute` the first time any worker asks.
    pub(crate) fn amplitude(
        &self,
        k: usize,
        compute: impl FnOnce(StyleDraw) -> Result<LowAmplitude, String>,
    ) -> Result<Arc<LowAmplitude>, String> {
        self.amplitudes[k].get_or_init(|| compute(self.draws[k]).map(Arc::new)).clone()
    }
}
