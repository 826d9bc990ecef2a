//! The four MIDOG 2021 scanners as image-formation models: resolution, image size, MIDOG id
//! block, label rates, and the optics and colour that make their images differ (stain colours
//! via Beer–Lambert, sharpness as a Gaussian point-spread, sensor noise, brightness).
//!
//! XR, S360 and CS2 are calibrated against the measured appearance of real MIDOG mitotic
//! figures (shared/midog-appearance.md); GT450, unlabelled in MIDOG, is given a fourth, distinct
//! look (brighter and greyer, pale eosin, the softest optics and the strongest JPEG compression)
//! at its own resolution (0.26 µm/px, so cells are 10–12 % smaller in pixels than on the XR):
//! the held-out domain of the domain-generalisation study, with its labels in a separate file.

use serde::{Deserialize, Serialize};

/// One scanner's image-formation parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScannerProfile {
    /// Short name as in MIDOG tables: `XR`, `S360`, `CS2`, `GT450`.
    pub name: &'static str,
    /// Product name.
    pub model: &'static str,
    /// First image id of the scanner's MIDOG block (1, 51, 101, 151).
    pub first_id: u32,
    /// Resolution in µm per pixel.
    pub um_per_px: f64,
    /// Typical full image size (width, height) in pixels.
    pub full_size: (u32, u32),
    /// Relative per-image size variation (0 = every image the same size, as on the XR).
    pub size_jitter: f64,
    /// Whether MIDOG.json carries its annotations.
    pub labelled: bool,
    /// Mean mitotic figures per full-size image (MIDOG 2021 count / 50).
    pub mitoses_per_image: f64,
    /// Mean hard negatives per full-size image.
    pub hard_negatives_per_image: f64,
    /// Intensity of bare glass per channel (0–255): the scanner's white balance and brightness.
    pub white: [f32; 3],
    /// Optical density per channel of one unit of haematoxylin (natural log).
    pub hematoxylin_od: [f32; 3],
    /// Optical density per channel of one unit of eosin.
    pub eosin_od: [f32; 3],
    /// Standard deviation of the Gaussian point-spread in pixels (larger = softer).
    pub blur_sigma_px: f32,
    /// Sensor noise standard deviation in grey levels.
    pub noise_sd: f32,
    /// Per-image log-normal spread of the stain amounts (staining batch variation).
    pub stain_jitter: f32,
    /// Highest JPEG quality this scanner writes: a JPEG dataset's tiles of this scanner use
    /// min(dataset quality, this) (100 = the dataset's quality).
    pub jpeg_quality_cap: u8,
}

impl ScannerProfile {
    /// All four, in MIDOG id order.
    pub fn all() -> Vec<ScannerProfile> {
        vec![Self::xr(), Self::s360(), Self::cs2(), Self::gt450()]
    }

    pub fn by_name(name: &str) -> Option<ScannerProfile> {
        Self::all().into_iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// Hamamatsu NanoZoomer XR: the bluest of the three labelled scanners, medium sharpness.
    pub fn xr() -> ScannerProfile {
        ScannerProfile {
            name: "XR",
            model: "Hamamatsu XR",
            first_id: 1,
            um_per_px: 0.23,
            full_size: (7215, 5412),
            size_jitter: 0.0,
            labelled: true,
            mitoses_per_image: 451.0 / 50.0,
            hard_negatives_per_image: 724.0 / 50.0,
            white: [242.0, 240.0, 246.0],
            hematoxylin_od: [1.115, 1.493, 0.526],
            eosin_od: [0.116, 0.643, 0.224],
            blur_sigma_px: 0.5,
            noise_sd: 3.0,
            stain_jitter: 0.12,
            jpeg_quality_cap: 100,
        }
    }

    /// Hamamatsu NanoZoomer S360: the softest; magenta-violet figures.
    pub fn s360() -> ScannerProfile {
        ScannerProfile {
            name: "S360",
            model: "Hamamatsu S360",
            first_id: 51,
            um_per_px: 0.23,
            full_size: (7125, 5334),
            size_jitter: 0.01,
            labelled: true,
            mitoses_per_image: 582.0 / 50.0,
            hard_negatives_per_image: 1066.0 / 50.0,
            white: [244.0, 238.0, 242.0],
            hematoxylin_od: [1.015, 1.886, 0.834],
            eosin_od: [0.167, 0.816, 0.361],
            blur_sigma_px: 0.72,
            noise_sd: 2.6,
            stain_jitter: 0.14,
            jpeg_quality_cap: 100,
        }
    }

    /// Aperio ScanScope CS2: the pinkest and most textured, the sharpest; more bare glass.
    pub fn cs2() -> ScannerProfile {
        ScannerProfile {
            name: "CS2",
            model: "Aperio ScanScope CS2",
            first_id: 101,
            um_per_px: 0.25,
            full_size: (6476, 4846),
            size_jitter: 0.012,
            labelled: true,
            mitoses_per_image: 688.0 / 50.0,
            hard_negatives_per_image: 924.0 / 50.0,
            white: [246.0, 242.0, 240.0],
            hematoxylin_od: [1.151, 1.607, 0.916],
            eosin_od: [0.141, 0.702, 0.439],
            blur_sigma_px: 0.45,
            noise_sd: 3.8,
            stain_jitter: 0.16,
            jpeg_quality_cap: 100,
        }
    }

    /// Leica Aperio GT450: unlabelled in MIDOG. Chosen distinct from the three labelled scanners:
    /// bright glass, greyish-blue haematoxylin (less red and green absorption, more blue), pale
    /// eosin, the softest point spread (σ 1.0 px against 0.45–0.72) and JPEG quality at most 65.
    pub fn gt450() -> ScannerProfile {
        ScannerProfile {
            name: "GT450",
            model: "Leica Aperio GT450",
            first_id: 151,
            um_per_px: 0.26,
            full_size: (6206, 4666),
            size_jitter: 0.012,
            labelled: false,
            mitoses_per_image: 11.0,
            hard_negatives_per_image: 18.0,
            white: [248.0, 248.0, 250.0],
            hematoxylin_od: [0.86, 1.02, 0.74],
            eosin_od: [0.10, 0.42, 0.26],
            blur_sigma_px: 1.0,
            noise_sd: 3.4,
            stain_jitter: 0.12,
            jpeg_quality_cap: 65,
        }
    }

    /// 3DHistech Pannoramic Scan II, the scanner of MIDOG++'s canine lung cancer, lymphoma and
    /// soft tissue sarcoma (not a MIDOG 2021 scanner, so not in [`Self::all`]). Chosen distinct:
    /// darker violet haematoxylin, a deeper pink eosin, medium sharpness; its resolution and
    /// image size are the synthetic set's choice.
    pub fn histech_3d() -> ScannerProfile {
        ScannerProfile {
            name: "3D Histech",
            model: "3DHistech Pannoramic Scan II",
            first_id: 201,
            um_per_px: 0.25,
            full_size: (6577, 4933),
            size_jitter: 0.0,
            labelled: true,
            mitoses_per_image: 11.0,
            hard_negatives_per_image: 18.0,
            white: [240.0, 237.0, 243.0],
            hematoxylin_od: [1.22, 1.72, 0.70],
            eosin_od: [0.12, 0.78, 0.32],
            blur_sigma_px: 0.6,
            noise_sd: 2.8,
            stain_jitter: 0.14,
            jpeg_quality_cap: 100,
        }
    }

    /// A MIDOG 2021 scanner or `3D Histech`, by short name.
    pub fn any_by_name(name: &str) -> Option<ScannerProfile> {
        Self::by_name(name).or_else(|| {
            let h = Self::histech_3d();
            (midog_data::domain_names::name_key(name) == midog_data::domain_names::name_key(h.name)).then_some(h)
        })
    }

    /// Pixels of context a rendered region needs on each side for the point-spread.
    pub fn blur_radius_px(&self) -> usize {
        (3.0 * self.blur_sigma_px).ceil().max(1.0) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use midog_data::ScannerMap;

    #[test]
    fn profiles_agree_with_the_midog_scanner_map() {
        let map = ScannerMap::midog_2021();
        for p in ScannerProfile::all() {
            let s = map.scanner_of(p.first_id).unwrap();
            assert_eq!(s.name, p.name);
            assert_eq!(s.um_per_px, p.um_per_px);
            assert_eq!(s.labelled, p.labelled);
            assert!(map.scanner_of(p.first_id + 49).unwrap().name == p.name);
        }
    }
}
