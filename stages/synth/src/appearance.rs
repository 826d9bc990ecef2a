//! Appearance statistics of 128 × 128 px crops centred on mitotic figures, defined exactly as
//! in shared/midog-appearance.md, so that synthetic scanners can be compared with the measured
//! real MIDOG ones (and the comparison printed for the docs).
//!
//! Definitions: RGB 0–255; "centre" = the central 40 × 40 px; "ring" = pixels more than 40 px
//! from the crop centre; H/E/D = scikit-image `rgb2hed` × 1000; "object" = the largest
//! 8-connected component of {H > crop mean H + 1 sd} inside the central 64 × 64 that touches the
//! centre (40 × 40); sharpness = mean absolute 4-neighbour Laplacian of the grey image
//! (0.2125 R + 0.7154 G + 0.0721 B, 0–255) over the crop's interior; near-white = all
//! channels > 220.

use std::path::Path;

use serde::{Deserialize, Serialize};

use midog_data::{Category, MidogJson};

use crate::dataset::SyntheticTruth;
use crate::error::SynthError;
use crate::rgb_image::RgbImage;
use crate::scene::TruthClass;
use crate::stain::rgb2hed;

pub const CROP: usize = 128;
const CENTRE: usize = 40;
const OBJECT_WINDOW: usize = 64;
const RING_RADIUS: f64 = 40.0;

/// Statistics of one crop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CropStats {
    pub mean_rgb: [f64; 3],
    pub sd_rgb: [f64; 3],
    pub centre_rgb: [f64; 3],
    pub ring_rgb: [f64; 3],
    pub hed: [f64; 3],
    pub hed_centre: [f64; 3],
    /// Area (px) and mean RGB of the object at the centre, if any.
    pub object_area: Option<usize>,
    pub object_rgb: Option<[f64; 3]>,
    pub near_white: f64,
    pub sharpness: f64,
}

/// Statistics of the 128 × 128 crop centred on (cx, cy); `None` if the crop leaves the image.
pub fn crop_stats(img: &RgbImage, cx: f64, cy: f64) -> Option<CropStats> {
    let x0 = cx.round() as i64 - (CROP / 2) as i64;
    let y0 = cy.round() as i64 - (CROP / 2) as i64;
    if x0 < 0 || y0 < 0 || x0 + CROP as i64 > img.width as i64 || y0 + CROP as i64 > img.height as i64 {
        return None;
    }
    let n = CROP * CROP;
    let mut rgb = Vec::with_capacity(n);
    for y in 0..CROP {
        for x in 0..CROP {
            rgb.push(img.pixel((x0 + x as i64) as u32, (y0 + y as i64) as u32));
        }
    }
    let hed: Vec<[f32; 3]> = rgb.iter().map(|p| rgb2hed(*p)).collect();

    let mut sum = [0.0f64; 3];
    let mut sum2 = [0.0f64; 3];
    let mut hsum = [0.0f64; 3];
    let (mut centre, mut centre_n) = ([0.0f64; 3], 0usize);
    let mut hcentre = [0.0f64; 3];
    let (mut ring, mut ring_n) = ([0.0f64; 3], 0usize);
    let mut white = 0usize;
    let c0 = (CROP - CENTRE) / 2;
    for y in 0..CROP {
        for x in 0..CROP {
            let i = y * CROP + x;
            let p = rgb[i];
            let in_centre = (c0..c0 + CENTRE).contains(&x) && (c0..c0 + CENTRE).contains(&y);
            let (dx, dy) = (x as f64 + 0.5 - (CROP / 2) as f64, y as f64 + 0.5 - (CROP / 2) as f64);
            let in_ring = (dx * dx + dy * dy).sqrt() > RING_RADIUS;
            for c in 0..3 {
                let v = p[c] as f64;
                sum[c] += v;
                sum2[c] += v * v;
                hsum[c] += hed[i][c] as f64 * 1000.0;
                if in_centre {
                    centre[c] += v;
                    hcentre[c] += hed[i][c] as f64 * 1000.0;
                }
                if in_ring {
                    ring[c] += v;
                }
            }
            centre_n += in_centre as usize;
            ring_n += in_ring as usize;
            white += (p[0] > 220 && p[1] > 220 && p[2] > 220) as usize;
        }
    }
    let nf = n as f64;
    let mean_rgb = sum.map(|s| s / nf);
    let sd_rgb = [0, 1, 2].map(|c| (sum2[c] / nf - mean_rgb[c] * mean_rgb[c]).max(0.0).sqrt());

    // Object: haematoxylin above mean + 1 sd inside the central 64 × 64.
    let h: Vec<f64> = hed.iter().map(|v| v[0] as f64).collect();
    let hm = h.iter().sum::<f64>() / nf;
    let hsd = (h.iter().map(|v| (v - hm) * (v - hm)).sum::<f64>() / nf).sqrt();
    let w0 = (CROP - OBJECT_WINDOW) / 2;
    let mut mask = vec![false; OBJECT_WINDOW * OBJECT_WINDOW];
    for y in 0..OBJECT_WINDOW {
        for x in 0..OBJECT_WINDOW {
            mask[y * OBJECT_WINDOW + x] = h[(y + w0) * CROP + x + w0] > hm + hsd;
        }
    }
    let inner = (OBJECT_WINDOW - CENTRE) / 2;
    let mut best: Option<Vec<usize>> = None;
    for comp in components(&mask, OBJECT_WINDOW) {
        let touches = comp.iter().any(|&i| {
            let (x, y) = (i % OBJECT_WINDOW, i / OBJECT_WINDOW);
            (inner..inner + CENTRE).contains(&x) && (inner..inner + CENTRE).contains(&y)
        });
        if touches && best.as_ref().is_none_or(|b| comp.len() > b.len()) {
            best = Some(comp);
        }
    }
    let (object_area, object_rgb) = match best {
        Some(comp) => {
            let mut s = [0.0f64; 3];
            for &i in &comp {
                let p = rgb[(i / OBJECT_WINDOW + w0) * CROP + i % OBJECT_WINDOW + w0];
                for c in 0..3 {
                    s[c] += p[c] as f64;
                }
            }
            (Some(comp.len()), Some(s.map(|v| v / comp.len() as f64)))
        }
        None => (None, None),
    };

    let grey: Vec<f64> =
        rgb.iter().map(|p| 0.2125 * p[0] as f64 + 0.7154 * p[1] as f64 + 0.0721 * p[2] as f64).collect();
    let mut lap = 0.0;
    for y in 1..CROP - 1 {
        for x in 1..CROP - 1 {
            let i = y * CROP + x;
            lap += (4.0 * grey[i] - grey[i - 1] - grey[i + 1] - grey[i - CROP] - grey[i + CROP]).abs();
        }
    }
    Some(CropStats {
        mean_rgb,
        sd_rgb,
        centre_rgb: centre.map(|v| v / centre_n as f64),
        ring_rgb: ring.map(|v| v / ring_n as f64),
        hed: hsum.map(|v| v / nf),
        hed_centre: hcentre.map(|v| v / centre_n as f64),
        object_area,
        object_rgb,
        near_white: white as f64 / nf,
        sharpness: lap / ((CROP - 2) * (CROP - 2)) as f64,
    })
}

/// 8-connected components of a square mask, as lists of indices.
fn components(mask: &[bool], side: usize) -> Vec<Vec<usize>> {
    let mut seen = vec![false; mask.len()];
    let mut out = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        let mut comp = Vec::new();
        let mut stack = vec![start];
        seen[start] = true;
        while let Some(i) = stack.pop() {
            comp.push(i);
            let (x, y) = ((i % side) as i64, (i / side) as i64);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= side as i64 || ny >= side as i64 {
                        continue;
                    }
                    let j = ny as usize * side + nx as usize;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        out.push(comp);
    }
    out
}

/// Summary over the crops of one scanner, in the rows of midog-appearance.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppearanceStats {
    pub crops: usize,
    pub mean_rgb: [f64; 3],
    /// Mean over crops of the within-crop pixel sd.
    pub pixel_sd: [f64; 3],
    pub crop_sd_of_mean: [f64; 3],
    pub centre_rgb: [f64; 3],
    pub ring_rgb: [f64; 3],
    pub hed: [f64; 3],
    pub hed_centre: [f64; 3],
    pub object_found: f64,
    /// Median and quartiles of the object area (px) and the median in µm².
    pub object_area_px: [f64; 3],
    pub object_area_um2: f64,
    /// Channel-wise median of the object mean RGB.
    pub object_rgb: [f64; 3],
    pub near_white: f64,
    /// Mean and quartiles of the sharpness.
    pub sharpness: [f64; 3],
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Aggregates crop statistics of one scanner (`um_per_px` converts the object area).
pub fn appearance_stats(crops: &[CropStats], um_per_px: f64) -> AppearanceStats {
    let n = crops.len().max(1) as f64;
    let avg = |f: &dyn Fn(&CropStats) -> [f64; 3]| {
        let mut s = [0.0; 3];
        for c in crops {
            let v = f(c);
            for k in 0..3 {
                s[k] += v[k];
            }
        }
        s.map(|v| v / n)
    };
    let mean_rgb = avg(&|c| c.mean_rgb);
    let mut sd_of_mean = [0.0; 3];
    for c in crops {
        for k in 0..3 {
            sd_of_mean[k] += (c.mean_rgb[k] - mean_rgb[k]).powi(2);
        }
    }
    let sd_of_mean = sd_of_mean.map(|v| (v / n).sqrt());
    let mut areas: Vec<f64> = crops.iter().filter_map(|c| c.object_area.map(|a| a as f64)).collect();
    areas.sort_by(f64::total_cmp);
    let mut object_rgb = [0.0; 3];
    for (k, o) in object_rgb.iter_mut().enumerate() {
        let mut v: Vec<f64> = crops.iter().filter_map(|c| c.object_rgb.map(|r| r[k])).collect();
        v.sort_by(f64::total_cmp);
        *o = quantile(&v, 0.5);
    }
    let mut sharp: Vec<f64> = crops.iter().map(|c| c.sharpness).collect();
    sharp.sort_by(f64::total_cmp);
    let median_area = quantile(&areas, 0.5);
    AppearanceStats {
        crops: crops.len(),
        mean_rgb,
        pixel_sd: avg(&|c| c.sd_rgb),
        crop_sd_of_mean: sd_of_mean,
        centre_rgb: avg(&|c| c.centre_rgb),
        ring_rgb: avg(&|c| c.ring_rgb),
        hed: avg(&|c| c.hed),
        hed_centre: avg(&|c| c.hed_centre),
        object_found: areas.len() as f64 / n,
        object_area_px: [median_area, quantile(&areas, 0.25), quantile(&areas, 0.75)],
        object_area_um2: median_area * um_per_px * um_per_px,
        object_rgb,
        near_white: crops.iter().map(|c| c.near_white).sum::<f64>() / n,
        sharpness: [sharp.iter().sum::<f64>() / n, quantile(&sharp, 0.25), quantile(&sharp, 0.75)],
    }
}

/// Appearance of the mitotic figures of one scanner in a generated dataset directory. Labelled
/// scanners use MIDOG.json; GT450 (unannotated) uses synthetic_truth.json.
pub fn dataset_appearance(dir: &Path, scanner: &str) -> Result<AppearanceStats, SynthError> {
    let truth_path = dir.join("synthetic_truth.json");
    let truth = SyntheticTruth::load(&truth_path)?;
    let midog_path = dir.join("MIDOG.json");
    let midog = MidogJson::load(&midog_path).map_err(|e| SynthError::Data { path: midog_path.clone(), source: e })?;
    let mut crops = Vec::new();
    let mut mpp = 0.25;
    for img in truth.images.iter().filter(|i| i.scanner.eq_ignore_ascii_case(scanner)) {
        let centres: Vec<(f64, f64)> = {
            let from_json: Vec<(f64, f64)> = midog
                .annotations
                .iter()
                .filter(|a| a.image_id == img.id && a.category_id == Category::Mitosis.id())
                .map(|a| a.centre())
                .collect();
            if from_json.is_empty() {
                img.objects.iter().filter(|o| o.class == TruthClass::Mitosis).map(|o| (o.x, o.y)).collect()
            } else {
                from_json
            }
        };
        if centres.is_empty() {
            continue;
        }
        let rgb = RgbImage::read(&dir.join(&img.file_name))?;
        mpp = img.um_per_px;
        crops.extend(centres.iter().filter_map(|&(x, y)| crop_stats(&rgb, x, y)));
    }
    Ok(appearance_stats(&crops, mpp))
}

/// The measured real MIDOG 2021 values (shared/midog-appearance.md); `None` for GT450.
pub fn real_midog_appearance(scanner: &str) -> Option<AppearanceStats> {
    let make =
        |mean, sd, sdm, centre, ring, hed, hedc, found, area: [f64; 3], um2, obj, white, sharp| AppearanceStats {
            crops: 0,
            mean_rgb: mean,
            pixel_sd: sd,
            crop_sd_of_mean: sdm,
            centre_rgb: centre,
            ring_rgb: ring,
            hed,
            hed_centre: hedc,
            object_found: found,
            object_area_px: area,
            object_area_um2: um2,
            object_rgb: obj,
            near_white: white,
            sharpness: sharp,
        };
    match scanner.to_ascii_uppercase().as_str() {
        "XR" => Some(make(
            [186., 132., 197.],
            [42., 47., 27.],
            [10., 16., 7.],
            [155., 102., 177.],
            [189., 134., 198.],
            [32., 26., 10.],
            [63., 31., 10.],
            0.94,
            [516., 387., 680.],
            27.,
            [76., 44., 133.],
            0.03,
            [10.6, 9.2, 12.0],
        )),
        "S360" => Some(make(
            [193., 127., 178.],
            [37., 48., 33.],
            [13., 21., 13.],
            [166., 98., 157.],
            [195., 128., 180.],
            [21., 30., 23.],
            [40., 41., 29.],
            0.94,
            [531., 428., 691.],
            28.,
            [99., 39., 107.],
            0.04,
            [8.2, 7.6, 8.8],
        )),
        "CS2" => Some(make(
            [193., 137., 167.],
            [45., 54., 43.],
            [16., 26., 20.],
            [171., 114., 147.],
            [194., 139., 168.],
            [20., 20., 33.],
            [38., 23., 41.],
            0.93,
            [424., 322., 551.],
            27.,
            [82., 46., 88.],
            0.09,
            [14.6, 12.5, 16.3],
        )),
        _ => None,
    }
}

fn fmt3(v: [f64; 3]) -> String {
    format!("{:.0}, {:.0}, {:.0}", v[0], v[1], v[2])
}

/// Markdown table: one row per statistic, "synthetic / real" per scanner.
pub fn comparison_table(rows: &[(String, AppearanceStats, Option<AppearanceStats>)]) -> String {
    let mut out = String::from("| |");
    for (name, s, _) in rows {
        out.push_str(&format!(" {name} synthetic ({} crops) | {name} real |", s.crops));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|---|".repeat(rows.len()));
    out.push('\n');
    type Cell = fn(&AppearanceStats) -> String;
    let lines: [(&str, Cell); 14] = [
        ("whole crop mean R, G, B", |s| fmt3(s.mean_rgb)),
        ("pixel sd R, G, B", |s| fmt3(s.pixel_sd)),
        ("crop-to-crop sd of the mean", |s| fmt3(s.crop_sd_of_mean)),
        ("centre mean R, G, B", |s| fmt3(s.centre_rgb)),
        ("ring mean R, G, B", |s| fmt3(s.ring_rgb)),
        ("whole crop H, E, D", |s| fmt3(s.hed)),
        ("centre H, E, D", |s| fmt3(s.hed_centre)),
        ("object found at the centre", |s| format!("{:.0} %", 100.0 * s.object_found)),
        ("object area, median px (IQR)", |s| {
            format!("{:.0} ({:.0}–{:.0})", s.object_area_px[0], s.object_area_px[1], s.object_area_px[2])
        }),
        ("object area ≈ µm²", |s| format!("{:.0}", s.object_area_um2)),
        ("object mean RGB (median)", |s| fmt3(s.object_rgb)),
        ("near-white fraction (mean)", |s| format!("{:.2}", s.near_white)),
        ("sharpness mean (IQR)", |s| format!("{:.1} ({:.1}–{:.1})", s.sharpness[0], s.sharpness[1], s.sharpness[2])),
        ("crops", |s| s.crops.to_string()),
    ];
    for (label, f) in lines {
        out.push_str(&format!("| {label} |"));
        for (_, s, r) in rows {
            let real = r.as_ref().map(f).unwrap_or_else(|| "—".into());
            let real = if label == "crops" && r.is_some() { "—".into() } else { real };
            out.push_str(&format!(" {} | {} |", f(s), real));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic_crop(dark: bool) -> RgbImage {
        let mut pixels = Vec::new();
        for y in 0..200u32 {
            for x in 0..200u32 {
                let d = ((x as f64 - 100.0).powi(2) + (y as f64 - 100.0).powi(2)).sqrt();
                if dark && d < 12.0 {
                    pixels.extend_from_slice(&[70, 40, 130]);
                } else if (x + y) % 2 == 0 {
                    pixels.extend_from_slice(&[200, 140, 200]);
                } else {
                    pixels.extend_from_slice(&[190, 130, 195]);
                }
            }
        }
        RgbImage { width: 200, height: 200, um_per_px: 0.25, pixels }
    }

    #[test]
    fn finds_the_central_object_and_its_area() {
        let s = crop_stats(&synthetic_crop(true), 100.0, 100.0).unwrap();
        let a = s.object_area.unwrap();
        assert!((a as f64 - std::f64::consts::PI * 144.0).abs() < 30.0, "{a}");
        assert_eq!(s.object_rgb.unwrap(), [70.0, 40.0, 130.0]);
        assert!(s.centre_rgb[0] < s.ring_rgb[0]);
        assert_eq!(s.near_white, 0.0);
        assert!(crop_stats(&synthetic_crop(true), 30.0, 100.0).is_none());
        let blank = crop_stats(&synthetic_crop(false), 100.0, 100.0).unwrap();
        // A checkerboard alternating by 9.64 grey levels: |4g − 4g'| = 38.6 everywhere.
        assert!((blank.sharpness - 38.56).abs() < 0.05, "{}", blank.sharpness);
    }

    #[test]
    fn table_lists_synthetic_and_real() {
        let s = appearance_stats(&[crop_stats(&synthetic_crop(true), 100.0, 100.0).unwrap()], 0.25);
        let t = comparison_table(&[("XR".into(), s, real_midog_appearance("XR"))]);
        assert!(t.contains("| whole crop mean R, G, B |") && t.contains("186, 132, 197"), "{t}");
    }
}
