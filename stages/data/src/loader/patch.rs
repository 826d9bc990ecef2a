//! One augmented patch: read (a scaled region around the patch centre), resample, flip/rotate,
//! colour, and the patch's boxes transformed the same way. Scratch buffers live in the worker
//! and are reused, so the hot path allocates nothing per patch beyond the box list.

use super::augment::PatchAugment;
use super::batch::PatchSpec;
use super::color;
use super::fourier::{FourierMixer, LowAmplitude};
use super::resample::Resampler;
use crate::error::DataError;
use crate::stain::StainTransform;
use crate::tiff::TiffImage;

#[derive(Debug, Default)]
pub(crate) struct PatchWorker {
    region: Vec<u8>,
    resized: Vec<u8>,
    resampler: Resampler,
    /// FFT plans of Fourier mixing, made on first use for the loader's patch size and window.
    mixer: Option<FourierMixer>,
}

impl PatchWorker {
    pub(crate) fn mixer(&mut self, size: u32, window: f32) -> &mut FourierMixer {
        self.mixer.get_or_insert_with(|| FourierMixer::new(size as usize, window))
    }

    /// The low-frequency amplitude of the un-augmented patch at (x, y): a Fourier style.
    pub(crate) fn style_amplitude(
        &mut self,
        image: &TiffImage,
        stain: Option<&StainTransform>,
        x: i64,
        y: i64,
        size: u32,
        window: f32,
    ) -> Result<LowAmplitude, DataError> {
        let mut pixels = std::mem::take(&mut self.region);
        pixels.resize(size as usize * size as usize * 3, 0);
        let read = image.read_region(0, x, y, size, size, &mut pixels);
        if let Some(t) = stain {
            t.apply(&mut pixels);
        }
        let amplitude = read.map(|()| self.mixer(size, window).amplitude(&pixels));
        self.region = pixels;
        amplitude
    }

    /// Writes the `size` × `size` RGB patch of `spec` into `out` and returns its boxes. `stain`
    /// normalises the pixels first; `style` is the Fourier style and β when the patch is mixed
    /// (after the geometry, before the colour augmentations).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn produce(
        &mut self,
        image: &TiffImage,
        boxes: &[[f32; 4]],
        spec: &PatchSpec,
        size: u32,
        aug: &PatchAugment,
        stain: Option<&StainTransform>,
        style: Option<(&LowAmplitude, f32)>,
        out: &mut [u8],
    ) -> Result<Vec<[f32; 4]>, DataError> {
        let n = size as usize;
        let bytes = n * n * 3;
        let out = &mut out[..bytes];
        // Source square: size / scale pixels, centred where the unscaled patch is centred.
        let src_size = if aug.scale == 1.0 { size } else { ((size as f32 / aug.scale).round() as u32).max(1) };
        let offset = (i64::from(size) - i64::from(src_size)).div_euclid(2);
        let (ox, oy) = (spec.x + offset, spec.y + offset);
        let s = src_size as usize;
        let turn = !aug.dihedral.is_identity();

        // Stain normalisation acts on the file's pixels, before any resampling, as in inference.
        let normalise = |px: &mut [u8]| {
            if let Some(t) = stain {
                t.apply(px);
            }
        };
        if s == n && !turn {
            image.read_region(0, ox, oy, size, size, out)?;
            normalise(out);
        } else {
            self.region.resize(s * s * 3, 0);
            image.read_region(0, ox, oy, src_size, src_size, &mut self.region)?;
            normalise(&mut self.region);
            if s == n {
                aug.dihedral.apply(&self.region, out, n);
            } else if turn {
                self.resized.resize(bytes, 0);
                self.resampler.resize(&self.region, s, &mut self.resized, n);
                aug.dihedral.apply(&self.resized, out, n);
            } else {
                self.resampler.resize(&self.region, s, out, n);
            }
        }
        if let (Some((amplitude, beta)), Some(mixer)) = (style, self.mixer.as_mut()) {
            mixer.mix(out, amplitude, beta);
        }
        if let Some((alpha, beta)) = aug.stain {
            color::stain_jitter(out, alpha, beta);
        }
        color::brightness_contrast(out, aug.brightness, aug.contrast);

        let f = size as f32 / src_size as f32;
        let side = size as f32;
        let mut kept = Vec::new();
        for b in boxes {
            let local =
                [(b[0] - ox as f32) * f, (b[1] - oy as f32) * f, (b[2] - ox as f32) * f, (b[3] - oy as f32) * f];
            let m = aug.dihedral.map_box(local, side);
            let (cx, cy) = ((m[0] + m[2]) / 2.0, (m[1] + m[3]) / 2.0);
            if (0.0..side).contains(&cx) && (0.0..side).contains(&cy) {
                kept.push(m.map(|v| v.clamp(0.0, side)));
            }
        }
        Ok(kept)
    }
}
