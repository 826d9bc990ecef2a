//! Calibration against the measured appearance of real MIDOG mitotic figures: a few small
//! images per scanner, a 128 × 128 crop around every synthetic figure, the statistics of
//! shared/midog-appearance.md, compared with the real table within stated tolerances.

use rayon::prelude::*;

use midog_synth::appearance::{comparison_table, real_midog_appearance};
use midog_synth::dataset::render_image;
use midog_synth::{
    AppearanceStats, Compression, ImageScene, ScannerProfile, TruthClass, appearance_stats, crop_stats, plan_images,
};

fn measure(p: &ScannerProfile) -> AppearanceStats {
    let plans = plan_images(std::slice::from_ref(p), 10, 0.1, 11, 120.0);
    let crops: Vec<_> = plans
        .par_iter()
        .flat_map_iter(|plan| {
            let scene = ImageScene::build(plan);
            let img = render_image(&scene, 256, Compression::Jpeg { quality: 85 }).expect("render");
            scene
                .cells
                .iter()
                .filter(|c| c.truth.class == TruthClass::Mitosis)
                .filter_map(|c| crop_stats(&img, c.truth.x, c.truth.y))
                .collect::<Vec<_>>()
        })
        .collect();
    appearance_stats(&crops, p.um_per_px)
}

fn close3(what: &str, scanner: &str, s: [f64; 3], r: [f64; 3], tol: f64, problems: &mut Vec<String>) {
    for c in 0..3 {
        if (s[c] - r[c]).abs() > tol {
            problems.push(format!("{scanner} {what}[{c}]: synthetic {:.1}, real {:.1} (tolerance ±{tol})", s[c], r[c]));
        }
    }
}

#[test]
fn synthetic_figures_match_real_midog_statistics_per_scanner() {
    let profiles = ScannerProfile::all();
    let rows: Vec<_> =
        profiles.iter().map(|p| (p.name.to_string(), measure(p), real_midog_appearance(p.name))).collect();
    println!("{}", comparison_table(&rows));
    let mut problems = Vec::new();
    for (name, s, real) in &rows {
        assert!(s.crops >= 20, "{name}: only {} crops", s.crops);
        let Some(r) = real else { continue };
        close3("mean RGB", name, s.mean_rgb, r.mean_rgb, 12.0, &mut problems);
        close3("pixel sd", name, s.pixel_sd, r.pixel_sd, 10.0, &mut problems);
        close3("centre RGB", name, s.centre_rgb, r.centre_rgb, 16.0, &mut problems);
        close3("ring RGB", name, s.ring_rgb, r.ring_rgb, 12.0, &mut problems);
        close3("H/E/D", name, s.hed, r.hed, 8.0, &mut problems);
        close3("centre H/E/D", name, s.hed_centre, r.hed_centre, 12.0, &mut problems);
        close3("object RGB", name, s.object_rgb, r.object_rgb, 20.0, &mut problems);
        if s.object_found < 0.8 {
            problems.push(format!("{name}: object found in only {:.0} % of crops", 100.0 * s.object_found));
        }
        let area_ratio = s.object_area_px[0] / r.object_area_px[0];
        if !(0.75..=1.33).contains(&area_ratio) {
            problems
                .push(format!("{name}: object area {:.0} px vs real {:.0}", s.object_area_px[0], r.object_area_px[0]));
        }
        if (s.near_white - r.near_white).abs() > 0.05 {
            problems.push(format!("{name}: near-white {:.3} vs real {:.3}", s.near_white, r.near_white));
        }
        if (s.sharpness[0] - r.sharpness[0]).abs() > 2.5 {
            problems.push(format!("{name}: sharpness {:.1} vs real {:.1}", s.sharpness[0], r.sharpness[0]));
        }
    }
    // The scanners' sharpness order (S360 softest, CS2 sharpest) must hold.
    let sharp = |n: &str| rows.iter().find(|r| r.0 == n).map(|r| r.1.sharpness[0]).unwrap();
    if !(sharp("S360") < sharp("XR") && sharp("XR") < sharp("CS2")) {
        problems.push("sharpness order S360 < XR < CS2 broken".into());
    }
    // GT450 must look different from each labelled scanner.
    let gt = &rows.iter().find(|r| r.0 == "GT450").unwrap().1;
    for (name, s, _) in rows.iter().filter(|r| r.0 != "GT450") {
        let d = (0..3).map(|c| (gt.mean_rgb[c] - s.mean_rgb[c]).abs()).fold(0.0, f64::max);
        if d < 8.0 {
            problems.push(format!("GT450 mean colour within {d:.1} of {name}"));
        }
    }
    assert!(problems.is_empty(), "calibration off:\n{}", problems.join("\n"));
}
