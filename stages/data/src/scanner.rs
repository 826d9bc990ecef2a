//! Scanners and which image ids they scanned. MIDOG 2021: ids 1–50 Hamamatsu XR, 51–100
//! Hamamatsu S360, 101–150 Aperio ScanScope CS2, 151–200 Leica GT450 (unlabelled).

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scanner {
    /// Short name used in tables and params: `XR`, `S360`, `CS2`, `GT450`.
    pub name: String,
    /// Full product name.
    pub model: String,
    /// Nominal resolution (µm per pixel) when a file carries none.
    pub um_per_px: f64,
    /// Whether its images carry labels; unlabelled images never enter training or scoring.
    pub labelled: bool,
}

impl Scanner {
    fn new(name: &str, model: &str, um_per_px: f64, labelled: bool) -> Self {
        Scanner { name: name.into(), model: model.into(), um_per_px, labelled }
    }
}

/// The four MIDOG 2021 scanners, in id order.
pub fn midog_2021_scanners() -> Vec<Scanner> {
    vec![
        Scanner::new("XR", "Hamamatsu XR", 0.23, true),
        Scanner::new("S360", "Hamamatsu S360", 0.23, true),
        Scanner::new("CS2", "Aperio ScanScope CS2", 0.25, true),
        Scanner::new("GT450", "Leica GT450", 0.26, false),
    ]
}

/// Image id ranges → scanner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScannerMap {
    pub entries: Vec<(RangeInclusive<u32>, Scanner)>,
}

impl ScannerMap {
    pub fn midog_2021() -> ScannerMap {
        let s = midog_2021_scanners();
        ScannerMap {
            entries: vec![
                (1..=50, s[0].clone()),
                (51..=100, s[1].clone()),
                (101..=150, s[2].clone()),
                (151..=200, s[3].clone()),
            ],
        }
    }

    pub fn scanner_of(&self, image_id: u32) -> Option<&Scanner> {
        self.entries.iter().find(|(r, _)| r.contains(&image_id)).map(|(_, s)| s)
    }

    /// Scanners in first-appearance order, without duplicates.
    pub fn scanners(&self) -> Vec<&Scanner> {
        let mut out: Vec<&Scanner> = Vec::new();
        for (_, s) in &self.entries {
            if !out.iter().any(|o| o.name == s.name) {
                out.push(s);
            }
        }
        out
    }

    pub fn by_name(&self, name: &str) -> Option<&Scanner> {
        self.entries.iter().map(|(_, s)| s).find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// Whether image `image_id` is labelled by this map's definition (`None`: no scanner covers
    /// the id). Labels come from the dataset's definition, never from whether an image happens
    /// to have annotations: a labelled image without any is a negative image.
    pub fn labelled(&self, image_id: u32) -> Option<bool> {
        self.scanner_of(image_id).map(|s| s.labelled)
    }
}

/// Parses image id ranges: `"1-50"`, `"7"`, `"1-10, 12, 20-25"`. An empty string is no range.
pub fn parse_id_ranges(text: &str) -> Result<Vec<RangeInclusive<u32>>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| parse_id_range(part).ok_or_else(|| format!("`{part}` is not an id or a range like 1-50")))
        .collect()
}

fn parse_id_range(s: &str) -> Option<RangeInclusive<u32>> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then_some(a..=b)
        }
        None => {
            let v = s.parse().ok()?;
            Some(v..=v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midog_ranges() {
        let m = ScannerMap::midog_2021();
        assert_eq!(m.scanner_of(1).unwrap().name, "XR");
        assert_eq!(m.scanner_of(50).unwrap().name, "XR");
        assert_eq!(m.scanner_of(51).unwrap().name, "S360");
        assert_eq!(m.scanner_of(150).unwrap().name, "CS2");
        assert!(!m.scanner_of(151).unwrap().labelled);
        assert!(m.scanner_of(201).is_none());
        assert_eq!(m.scanners().len(), 4);
        assert_eq!((m.labelled(100), m.labelled(151), m.labelled(201)), (Some(true), Some(false), None));
    }

    #[test]
    fn id_ranges_parse() {
        assert_eq!(parse_id_ranges("1-50"), Ok(vec![1..=50]));
        assert_eq!(parse_id_ranges("7, 9-10,"), Ok(vec![7..=7, 9..=10]));
        assert_eq!(parse_id_ranges(""), Ok(vec![]));
        assert!(parse_id_ranges("9-3").unwrap_err().contains("`9-3`"));
        assert!(parse_id_ranges("x").is_err());
    }
}
