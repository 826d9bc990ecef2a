//! The seven tumour types of MIDOG++ as caricatures for synthetic multi-domain sets: each has the
//! MIDOG++ id block, scanner, lab and species of the real one, and morphology that differs the
//! way a detector notices — nucleus size, nucleus density, and the size, darkness and rate of its
//! mitotic figures. The numbers are chosen to make the types clearly different (lymphoma: small,
//! crowded nuclei and many small dark figures; melanoma: large nuclei and large figures; soft
//! tissue sarcoma: sparse large nuclei), not measured on MIDOG++ images.
//!
//! Human breast cancer is the identity (every factor 1): images of it are exactly the images of
//! the MIDOG 2021-like generator.

use serde::{Deserialize, Serialize};

/// One tumour type's place in MIDOG++ and how it changes a scene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TumourProfile {
    /// As MIDOG++.json's `tumor_type` writes it.
    pub name: &'static str,
    /// As the MIDOG++ cross-validation table's `Tumor` column writes it.
    pub table_name: &'static str,
    /// First id and size of its MIDOG++ id block (breast: 1–200 over the four scanners).
    pub first_id: u32,
    pub block: u32,
    /// Scanner profile short name (breast: the MIDOG 2021 scanners chosen).
    pub scanner: &'static str,
    /// The scanner as the table writes it for this type.
    pub table_scanner: &'static str,
    pub origin: &'static str,
    /// As the table writes it (`Human`, `Canine`).
    pub species: &'static str,
    /// × the size of tumour nuclei.
    pub nucleus_size: f32,
    /// × the 9 µm spacing of the nucleus grid (below 1: denser).
    pub nucleus_spacing: f32,
    /// × the chromatin area of mitotic figures.
    pub figure_area: f64,
    /// × their darkness.
    pub figure_darkness: f32,
    /// × the scanner's rate of mitotic figures, and of hard negatives and look-alikes.
    pub mitosis_rate: f64,
    pub imposter_rate: f64,
}

impl TumourProfile {
    /// All seven, in MIDOG++ id order.
    pub fn all() -> Vec<TumourProfile> {
        vec![
            Self::breast(),
            Self::new("canine lung cancer", "canine lung cancer", 201, 44, "3D Histech", "VMU Vienna", "Canine")
                .morphology(1.1, 1.0, 1.1, 1.0, 0.7, 1.0),
            Self::new("canine lymphosarcoma", "canine lymphoma", 245, 55, "3D Histech", "VMU Vienna", "Canine")
                .morphology(0.72, 0.72, 0.7, 1.1, 2.0, 1.3),
            Self::new(
                "canine cutaneous mast cell tumor",
                "canine cutaneous mast cell tumor",
                300,
                50,
                "CS2",
                "FU Berlin",
                "Canine",
            )
            .morphology(0.9, 0.9, 0.9, 0.95, 0.4, 0.8),
            Self::new(
                "human neuroendocrine tumor",
                "human neuroendocrine tumor",
                350,
                55,
                "XR",
                "UMC Utrecht",
                "Human",
            )
            .morphology(0.8, 0.85, 0.8, 1.0, 0.5, 0.9),
            Self::new(
                "canine soft tissue sarcoma",
                "canine soft tissue sarcoma",
                405,
                100,
                "3D Histech",
                "AMC New York",
                "Canine",
            )
            .morphology(1.15, 1.25, 1.15, 0.9, 0.6, 1.0),
            Self::new("human melanoma", "human melanoma", 505, 49, "XR", "UMC Utrecht", "Human")
                .morphology(1.3, 1.15, 1.3, 1.05, 0.8, 1.2),
        ]
    }

    /// The MIDOG 2021 tumour type: every factor 1.
    pub fn breast() -> TumourProfile {
        Self::new("human breast cancer", "human breast cancer", 1, 200, "", "UMC Utrecht", "Human")
    }

    /// By MIDOG++.json or table name, ignoring case, spaces and punctuation.
    pub fn by_name(name: &str) -> Option<TumourProfile> {
        let key = midog_data::domain_names::name_key(name);
        Self::all().into_iter().find(|t| {
            midog_data::domain_names::name_key(t.name) == key || midog_data::domain_names::name_key(t.table_name) == key
        })
    }

    pub fn is_breast(&self) -> bool {
        self.first_id == 1
    }

    fn new(
        name: &'static str,
        table_name: &'static str,
        first_id: u32,
        block: u32,
        scanner: &'static str,
        origin: &'static str,
        species: &'static str,
    ) -> TumourProfile {
        let table_scanner = match scanner {
            "XR" => "Hamamatsu XR",
            "CS2" => "Aperio CS2",
            other => other,
        };
        TumourProfile {
            name,
            table_name,
            first_id,
            block,
            scanner,
            table_scanner,
            origin,
            species,
            nucleus_size: 1.0,
            nucleus_spacing: 1.0,
            figure_area: 1.0,
            figure_darkness: 1.0,
            mitosis_rate: 1.0,
            imposter_rate: 1.0,
        }
    }

    fn morphology(mut self, size: f32, spacing: f32, area: f64, darkness: f32, mitoses: f64, imposters: f64) -> Self {
        self.nucleus_size = size;
        self.nucleus_spacing = spacing;
        self.figure_area = area;
        self.figure_darkness = darkness;
        self.mitosis_rate = mitoses;
        self.imposter_rate = imposters;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_follow_midogpp_and_do_not_overlap() {
        let all = TumourProfile::all();
        assert_eq!(all.len(), 7);
        for w in all.windows(2) {
            assert_eq!(w[0].first_id + w[0].block, w[1].first_id, "{} → {}", w[0].name, w[1].name);
        }
        let last = all.last().unwrap();
        assert_eq!(last.first_id + last.block - 1, 553);
        assert_eq!(TumourProfile::by_name("Canine Lymphoma").unwrap().name, "canine lymphosarcoma");
        assert!(TumourProfile::by_name("feline fibrosarcoma").is_none());
        let b = TumourProfile::breast();
        assert!(b.is_breast() && b.nucleus_size == 1.0 && b.mitosis_rate == 1.0);
    }
}
