//! What the caller chooses about a synthetic dataset: how many images, how large, how dense,
//! which scanners and tumour types, how the tiles are compressed.

use serde::{Deserialize, Serialize};

use crate::error::SynthError;
use crate::scanner_profile::ScannerProfile;
use crate::tumour_profile::TumourProfile;

/// Tile compression of the written TIFFs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// Baseline JPEG tiles in YCbCr 4:2:0, as in the real MIDOG files (lossy).
    Jpeg { quality: u8 },
    /// Deflate with horizontal differencing (lossless, about 4× larger).
    Deflate,
    /// Uncompressed tiles (3 bytes per pixel on disk): what a reader costs without a codec.
    None,
}

/// Parameters of one synthetic dataset. The same config and seed always give the same bytes,
/// whatever the number of threads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    /// Images per scanner (at most 50, the size of a MIDOG id block).
    pub images_per_scanner: u32,
    /// Field-of-view factor in (0, 1]: each side of an image is `scale` × the real scanner's image
    /// side. Magnification does not change: cells keep their real size in pixels and boxes stay
    /// 50 × 50 px, so a small image is like a crop of a real one.
    pub scale: f64,
    /// Master seed; every image derives its own seed from it and its id.
    pub seed: u64,
    pub compression: Compression,
    /// Tile side in pixels (a multiple of 16).
    pub tile_size: u32,
    /// Scanner short names (`XR`, `S360`, `CS2`, `GT450`), in any order.
    pub scanners: Vec<String>,
    /// Multiplier of the per-image rates of mitotic figures, hard negatives and unlabelled
    /// look-alikes. At 1.0 the rates are the real MIDOG ones per unit area (about 9 figures and 14
    /// hard negatives in a full-size image), so at small `scale` most images hold none; small
    /// training sets raise it (e.g. 30–80 at scale 0.1–0.2) to get useful numbers of figures.
    pub density: f64,
    /// Several tumour types in the MIDOG++ layout (MIDOG++.json with `tumor_type`, and the
    /// cross-validation table); `None`: a MIDOG 2021-like set (MIDOG.json, breast cancer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_domain: Option<MultiDomain>,
}

/// The tumour types of a MIDOG++-like set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiDomain {
    /// MIDOG++ tumour type names (`human breast cancer`, `canine lymphosarcoma`, …; the table's
    /// spellings work too). Breast cancer images are `images_per_scanner` per chosen scanner.
    pub tumour_types: Vec<String>,
    /// Images of every other tumour type (at most its MIDOG++ id block).
    pub images_per_tumour_type: u32,
    /// Share of each tumour type's labelled images that the table's `Dataset` column marks
    /// `test` (MIDOG++: 111 of 503), seeded.
    pub test_fraction: f64,
}

impl Default for MultiDomain {
    fn default() -> Self {
        MultiDomain {
            tumour_types: TumourProfile::all().iter().map(|t| t.name.to_string()).collect(),
            images_per_tumour_type: 10,
            test_fraction: 0.22,
        }
    }
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            images_per_scanner: 50,
            scale: 1.0,
            seed: 2021,
            compression: Compression::Jpeg { quality: 85 },
            tile_size: 256,
            scanners: ScannerProfile::all().iter().map(|p| p.name.to_string()).collect(),
            density: 1.0,
            multi_domain: None,
        }
    }
}

impl SynthConfig {
    /// Checks ranges and resolves the scanner names to their profiles, in MIDOG id order.
    pub fn profiles(&self) -> Result<Vec<ScannerProfile>, SynthError> {
        if !(self.scale > 0.0 && self.scale <= 1.0) {
            return Err(SynthError::Config(format!("scale must be in (0, 1], got {}", self.scale)));
        }
        if !(self.density.is_finite() && self.density >= 0.0) {
            return Err(SynthError::Config(format!("density must be ≥ 0, got {}", self.density)));
        }
        if self.images_per_scanner == 0 || self.images_per_scanner > 50 {
            return Err(SynthError::Config(format!(
                "images_per_scanner must be 1–50 (one MIDOG id block), got {}",
                self.images_per_scanner
            )));
        }
        if self.tile_size < 16 || !self.tile_size.is_multiple_of(16) || self.tile_size > 4096 {
            return Err(SynthError::Config(format!(
                "tile_size must be a multiple of 16 in 16–4096, got {}",
                self.tile_size
            )));
        }
        if let Compression::Jpeg { quality } = self.compression
            && !(1..=100).contains(&quality)
        {
            return Err(SynthError::Config(format!("JPEG quality must be 1–100, got {quality}")));
        }
        let mut out: Vec<ScannerProfile> = Vec::new();
        for name in &self.scanners {
            let Some(p) = ScannerProfile::by_name(name) else {
                return Err(SynthError::Config(format!("unknown scanner `{name}` (known: XR, S360, CS2, GT450)")));
            };
            if out.iter().any(|o| o.name == p.name) {
                return Err(SynthError::Config(format!("scanner `{name}` listed twice")));
            }
            out.push(p);
        }
        if out.is_empty() {
            return Err(SynthError::Config("no scanners chosen".into()));
        }
        out.sort_by_key(|p| p.first_id);
        self.tumour_profiles()?;
        Ok(out)
    }

    /// The tumour types in MIDOG++ id order (only breast cancer for a MIDOG 2021-like set).
    pub fn tumour_profiles(&self) -> Result<Vec<TumourProfile>, SynthError> {
        let Some(m) = &self.multi_domain else { return Ok(vec![TumourProfile::breast()]) };
        let mut out: Vec<TumourProfile> = Vec::new();
        for name in &m.tumour_types {
            let Some(t) = TumourProfile::by_name(name) else {
                return Err(SynthError::Config(format!(
                    "unknown tumour type `{name}` (known: {})",
                    TumourProfile::all().iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
                )));
            };
            if out.iter().any(|o| o.name == t.name) {
                return Err(SynthError::Config(format!("tumour type `{name}` listed twice")));
            }
            if !t.is_breast() && !(1..=t.block).contains(&m.images_per_tumour_type) {
                return Err(SynthError::Config(format!(
                    "images_per_tumour_type must be 1–{} for `{}` (its MIDOG++ id block {}–{}), got {}",
                    t.block,
                    t.name,
                    t.first_id,
                    t.first_id + t.block - 1,
                    m.images_per_tumour_type
                )));
            }
            out.push(t);
        }
        if out.is_empty() {
            return Err(SynthError::Config("no tumour types chosen".into()));
        }
        if !(0.0..1.0).contains(&m.test_fraction) {
            return Err(SynthError::Config(format!("test_fraction must be in [0, 1), got {}", m.test_fraction)));
        }
        out.sort_by_key(|t| t.first_id);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_all_four_scanners_in_id_order() {
        let c = SynthConfig { scanners: vec!["gt450".into(), "XR".into()], ..SynthConfig::default() };
        let p = c.profiles().unwrap();
        assert_eq!(p.iter().map(|p| p.name).collect::<Vec<_>>(), ["XR", "GT450"]);
        assert_eq!(SynthConfig::default().profiles().unwrap().len(), 4);
    }

    #[test]
    fn bad_values_are_named() {
        let bad = SynthConfig { scale: 1.5, ..SynthConfig::default() };
        assert!(bad.profiles().unwrap_err().to_string().contains("scale"));
        let bad = SynthConfig { scanners: vec!["NanoZoomer".into()], ..SynthConfig::default() };
        assert!(bad.profiles().unwrap_err().to_string().contains("NanoZoomer"));
        let bad = SynthConfig { tile_size: 100, ..SynthConfig::default() };
        assert!(bad.profiles().unwrap_err().to_string().contains("tile_size"));
        let multi = |types: &[&str], n: u32| SynthConfig {
            multi_domain: Some(MultiDomain {
                tumour_types: types.iter().map(|t| t.to_string()).collect(),
                images_per_tumour_type: n,
                ..MultiDomain::default()
            }),
            ..SynthConfig::default()
        };
        let e = multi(&["human melanoma", "feline sarcoma"], 3).profiles().unwrap_err().to_string();
        assert!(e.contains("feline sarcoma") && e.contains("canine lymphosarcoma"), "{e}");
        let e = multi(&["human melanoma"], 50).profiles().unwrap_err().to_string();
        assert!(e.contains("1–49") && e.contains("505–553"), "{e}");
        let e = multi(&["canine lymphoma", "canine lymphosarcoma"], 3).profiles().unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        let ok = multi(&["human melanoma", "human breast cancer"], 3).tumour_profiles().unwrap();
        assert_eq!(ok.iter().map(|t| t.first_id).collect::<Vec<_>>(), [1, 505]);
    }
}
