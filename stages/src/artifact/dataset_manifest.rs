//! `dataset.json`: the dataset stage's output. Every image with its scanner and other domains
//! (tumour type, species, origin lab), resolution, labels and boxes, so no later stage reads the
//! annotation file or guesses domains again.
//!
//! A MIDOG 2021 dataset has the scanner as its only domain attribute, and its `dataset.json`
//! carries none of the multi-domain fields (so it is the same file it always was).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use engine::{Artifact, StageError};
use midog_data::DomainSummary;
use midog_data::domain_names::{SCANNER, UNKNOWN};
use midog_data::{OfficialSet, Scanner};
use serde::{Deserialize, Serialize};

pub const FILE: &str = "dataset.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetImage {
    pub id: u32,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
    /// Short scanner name (`XR`, `S360`, `CS2`, `GT450`, or a user-defined one).
    pub scanner: String,
    /// From the file's resolution tags, else the scanner's nominal value.
    pub um_per_px: f64,
    /// Unlabelled images never enter supervised training, validation or scoring.
    pub labelled: bool,
    /// Mitotic figure boxes `[x1, y1, x2, y2]`, level-0 px.
    pub mitoses: Vec<[f64; 4]>,
    /// Hard-negative boxes.
    pub imposters: Vec<[f64; 4]>,
    /// Domain attributes besides the scanner (`tumor_type`, `species`, `origin`), canonical
    /// values; `unknown` where no source gives one for an unlabelled image.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub domains: BTreeMap<String, String>,
    /// The image's set in the domain table's official cross-validation split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub official_set: Option<OfficialSet>,
}

impl DatasetImage {
    /// The image's value of a domain attribute (`scanner`, `tumor_type`, …).
    pub fn domain(&self, attribute: &str) -> Option<&str> {
        if attribute == SCANNER { Some(&self.scanner) } else { self.domains.get(attribute).map(String::as_str) }
    }

    pub fn mitosis_centres(&self) -> Vec<(f64, f64)> {
        self.mitoses.iter().map(|b| ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetManifest {
    /// Absolute directory of the image files, or `None` when they live inside this artifact
    /// under `images/` (a synthetic dataset).
    pub external_root: Option<PathBuf>,
    pub scanners: Vec<Scanner>,
    pub images: Vec<DatasetImage>,
    /// How the domains were found (multi-domain datasets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains: Option<DomainsInfo>,
}

/// Where a multi-domain dataset's domains came from and what was renamed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DomainsInfo {
    /// Attributes besides the scanner (report order), sources, renamings, notes.
    #[serde(flatten)]
    pub summary: DomainSummary,
    /// Whether a domain table gave each labelled image its official set.
    pub official_sets: bool,
}

impl DatasetManifest {
    /// Every domain attribute of the dataset: `scanner` first, then e.g. `tumor_type`.
    pub fn attributes(&self) -> Vec<String> {
        let mut out = vec![SCANNER.to_string()];
        out.extend(self.domains.iter().flat_map(|d| d.summary.attributes.iter().cloned()));
        out
    }

    /// The values of an attribute among `images` (sorted, `unknown` last).
    pub fn values_among<'a>(attribute: &str, images: impl IntoIterator<Item = &'a DatasetImage>) -> Vec<String> {
        let mut v: Vec<String> = images.into_iter().filter_map(|i| i.domain(attribute)).map(str::to_string).collect();
        v.sort_by(|a, b| (a == UNKNOWN).cmp(&(b == UNKNOWN)).then(a.cmp(b)));
        v.dedup();
        v
    }

    /// Each attribute with its values over the whole dataset.
    pub fn attribute_values(&self) -> Vec<(String, Vec<String>)> {
        self.attributes().into_iter().map(|a| (a.clone(), Self::values_among(&a, &self.images))).collect()
    }

    pub fn load(artifact: &Artifact) -> Result<LoadedDataset, StageError> {
        let manifest: DatasetManifest = super::read_json(&artifact.dir.join(FILE))?;
        let images_dir = manifest.external_root.clone().unwrap_or_else(|| artifact.dir.join("images"));
        Ok(LoadedDataset { manifest, images_dir })
    }

    pub fn image(&self, id: u32) -> Option<&DatasetImage> {
        self.images.iter().find(|i| i.id == id)
    }

    pub fn scanner(&self, name: &str) -> Option<&Scanner> {
        self.scanners.iter().find(|s| s.name == name)
    }
}

/// A manifest with the directory its images are in.
#[derive(Debug, Clone)]
pub struct LoadedDataset {
    pub manifest: DatasetManifest,
    pub images_dir: PathBuf,
}

impl LoadedDataset {
    pub fn path_of(&self, image: &DatasetImage) -> PathBuf {
        self.images_dir.join(&image.file_name)
    }

    pub fn image(&self, id: u32) -> Result<&DatasetImage, StageError> {
        self.manifest.image(id).ok_or_else(|| StageError::msg(format!("image id {id} is not in the dataset")))
    }

    pub fn dir(&self) -> &Path {
        &self.images_dir
    }
}
