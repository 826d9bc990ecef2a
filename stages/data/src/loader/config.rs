//! What a patch loader is asked to do: patch size, threads, seed, augmentations, prefetch.

/// Random augmentations, drawn per patch from its own RNG.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentConfig {
    /// Random horizontal and vertical flips (each with probability ½).
    pub flips: bool,
    /// Random rotation by 0, 90, 180 or 270°.
    pub rot90: bool,
    /// HED stain jitter (Tellez et al. 2018): each of the H, E, D optical densities (natural-log
    /// units, skimage's Ruifrok–Johnston matrix) becomes `d · α + β`, α ~ U(1 − σ, 1 + σ),
    /// β ~ U(−σ, σ). 0.05 is "HED-light"; 0 turns it off.
    pub stain_jitter: f32,
    /// Brightness factor ~ U(1 − b, 1 + b); 0 = off.
    pub brightness: f32,
    /// Contrast factor ~ U(1 − c, 1 + c) around the patch's mean grey; 0 = off.
    pub contrast: f32,
    /// Scale ~ U(1 − s, 1 + s): a region of `patch_size / scale` is resampled (bilinear) to
    /// `patch_size`, centred on the same point; 0 = off.
    pub scale_jitter: f32,
    /// Fourier-domain mixing with a style patch of another image; `None` = off.
    pub fourier: Option<FourierMix>,
}

/// Fourier-domain mixing (see `loader::fourier`): with probability `probability`, a patch's
/// low-frequency amplitude spectrum moves by `beta` towards that of a style patch drawn from a
/// bank of `bank_size` random patches of the style images (`style_images`, indices into the
/// loader's image list), never one of the patch's own image. The bank is drawn from the loader's
/// seed, so mixing is deterministic per (seed, batch, position) like every other augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FourierMix {
    /// Blend ratio in [0, 1]: 0 keeps the patch, 1 replaces its low-frequency amplitude.
    pub beta: f32,
    /// Low-frequency window half-side as a fraction of the patch side (FDA's L), in (0, 0.5].
    pub window: f32,
    /// Probability in [0, 1] that a patch is mixed.
    pub probability: f32,
    /// Style patches drawn per loader (a new bank for every seed, i.e. every epoch).
    pub bank_size: usize,
    /// Half-open range `[start, end)` of loader image indices that style patches come from.
    pub style_images: [usize; 2],
}

impl AugmentConfig {
    /// No augmentation: patches are the pixels of the file.
    pub const NONE: AugmentConfig = AugmentConfig {
        flips: false,
        rot90: false,
        stain_jitter: 0.0,
        brightness: 0.0,
        contrast: 0.0,
        scale_jitter: 0.0,
        fourier: None,
    };

    /// The training default: all dihedral transforms, light stain, brightness, contrast and scale jitter.
    pub const STANDARD: AugmentConfig = AugmentConfig {
        flips: true,
        rot90: true,
        stain_jitter: 0.05,
        brightness: 0.1,
        contrast: 0.1,
        scale_jitter: 0.1,
        fourier: None,
    };

    pub(crate) fn validate(&self) -> Result<(), String> {
        for (name, v, max) in [
            ("stain_jitter", self.stain_jitter, 1.0),
            ("brightness", self.brightness, 1.0),
            ("contrast", self.contrast, 1.0),
            ("scale_jitter", self.scale_jitter, 0.5),
        ] {
            if !(0.0..=max).contains(&v) {
                return Err(format!("augment.{name} = {v} is outside [0, {max}]"));
            }
        }
        if let Some(f) = &self.fourier {
            f.validate()?;
        }
        Ok(())
    }
}

impl FourierMix {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.beta) {
            return Err(format!("fourier.beta = {} is outside [0, 1]", self.beta));
        }
        if !(self.window > 0.0 && self.window <= 0.5) {
            return Err(format!("fourier.window = {} is outside (0, 0.5]", self.window));
        }
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(format!("fourier.probability = {} is outside [0, 1]", self.probability));
        }
        if self.bank_size == 0 {
            return Err("fourier.bank_size must be at least 1".into());
        }
        if self.style_images[0] >= self.style_images[1] {
            return Err(format!("fourier.style_images {:?} is empty", self.style_images));
        }
        Ok(())
    }
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig::NONE
    }
}

/// Loader settings. Results depend on `patch_size`, `seed` and `augment` only, never on
/// `threads` or `prefetch_batches`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoaderConfig {
    /// Patch side in level-0 pixels (before scale jitter) and in output pixels.
    pub patch_size: u32,
    /// Worker threads (0 is taken as 1).
    pub threads: usize,
    pub seed: u64,
    pub augment: AugmentConfig,
    /// Finished batches that may wait for the consumer, besides one in progress per worker.
    pub prefetch_batches: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig { patch_size: 512, threads: 2, seed: 0, augment: AugmentConfig::STANDARD, prefetch_batches: 4 }
    }
}
