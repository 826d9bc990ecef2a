//! Renders any pixel rectangle of a scene: stain amounts (tissue ground substance, halos and
//! cytoplasm, ordinary nuclei, special cells) → scanner point-spread on the stain planes →
//! Beer–Lambert colour → sensor noise → 8-bit RGB. The rectangle is rendered with a margin for
//! the point-spread, so adjacent rectangles join seamlessly and the image does not depend on how
//! it is cut into tiles.

use crate::hash_noise::{gaussish, hash2};
use crate::nucleus::Blob;
use crate::scene::ImageScene;
use crate::stain::beer_lambert;
use crate::tissue::TissueSample;

/// Spacing (px) of the lattice on which the slowly varying tissue fields are evaluated and then
/// interpolated; anchored at absolute pixel positions so every region sees the same lattice.
const FIELD_STEP: i64 = 8;

/// Interleaved RGB8 of the `w` × `h` pixels whose top-left is (x0, y0).
pub fn render_region(scene: &ImageScene, x0: i64, y0: i64, w: usize, h: usize) -> Vec<u8> {
    let m = scene.plan.scanner.blur_radius_px() as i64;
    let (ex0, ey0) = (x0 - m, y0 - m);
    let (ew, eh) = (w + 2 * m as usize, h + 2 * m as usize);
    let mut hem = vec![0.0f32; ew * eh];
    let mut eos = vec![0.0f32; ew * eh];

    ground_substance(scene, ex0, ey0, ew, eh, &mut hem, &mut eos);

    let (fx0, fy0, fx1, fy1) = (ex0 as f32, ey0 as f32, (ex0 + ew as i64) as f32, (ey0 + eh as i64) as f32);
    let near: Vec<_> = scene
        .cells
        .iter()
        .filter(|c| {
            let (x, y) = (c.truth.x as f32, c.truth.y as f32);
            x + c.reach >= fx0 && x - c.reach <= fx1 && y + c.reach >= fy0 && y - c.reach <= fy1
        })
        .collect();
    for c in &near {
        for p in &c.drawing.patches {
            p.draw(&mut hem, &mut eos, ex0, ey0, ew);
        }
    }
    let reach = scene.nuclei.max_reach_px();
    let mut nuclei: Vec<Blob> = Vec::new();
    scene.nuclei.centred_in(&scene.tissue, fx0 - reach, fy0 - reach, fx1 + reach, fy1 + reach, &mut nuclei);
    // Make room for special cells near enough to matter.
    let crowd: Vec<_> = scene
        .cells
        .iter()
        .filter(|c| {
            let (x, y, r) = (c.truth.x as f32, c.truth.y as f32, c.drawing.clearance_px + reach);
            x + r >= fx0 - reach && x - r <= fx1 + reach && y + r >= fy0 - reach && y - r <= fy1 + reach
        })
        .collect();
    for b in &nuclei {
        let blocked = crowd.iter().any(|c| {
            let (dx, dy) = (c.truth.x as f32 - b.cx, c.truth.y as f32 - b.cy);
            dx * dx + dy * dy < c.drawing.clearance_px * c.drawing.clearance_px
        });
        if !blocked {
            b.draw(&mut hem, &mut eos, ex0, ey0, ew, &scene.grain_noise);
        }
    }
    for c in &near {
        for b in &c.drawing.blobs {
            b.draw(&mut hem, &mut eos, ex0, ey0, ew, &scene.grain_noise);
        }
    }

    let sigma = scene.plan.scanner.blur_sigma_px;
    gaussian_blur(&mut hem, ew, eh, sigma);
    gaussian_blur(&mut eos, ew, eh, sigma);

    let mut rgb = vec![0u8; w * h * 3];
    let noise_sd = scene.plan.scanner.noise_sd;
    for yy in 0..h {
        let py = y0 + yy as i64;
        for xx in 0..w {
            let px = x0 + xx as i64;
            let i = (yy + m as usize) * ew + xx + m as usize;
            let col = beer_lambert(&scene.white, &scene.hematoxylin_od, &scene.eosin_od, hem[i], eos[i]);
            let hsh = hash2(scene.sensor_seed, px, py);
            let lum = gaussish(hsh) * noise_sd;
            let o = (yy * w + xx) * 3;
            for c in 0..3 {
                let chroma = gaussish(hsh.rotate_left(17 + 13 * c as u32)) * noise_sd * 0.5;
                rgb[o + c] = (col[c] + lum + chroma + 0.5).clamp(0.0, 255.0) as u8;
            }
        }
    }
    rgb
}

/// Fills the stain planes with the tissue's ground substance, interpolating the slow fields
/// from the fixed lattice.
fn ground_substance(scene: &ImageScene, ex0: i64, ey0: i64, ew: usize, eh: usize, hem: &mut [f32], eos: &mut [f32]) {
    let gx0 = ex0.div_euclid(FIELD_STEP);
    let gy0 = ey0.div_euclid(FIELD_STEP);
    let gx1 = (ex0 + ew as i64).div_euclid(FIELD_STEP) + 1;
    let gy1 = (ey0 + eh as i64).div_euclid(FIELD_STEP) + 1;
    let gw = (gx1 - gx0 + 1) as usize;
    let mut lattice = Vec::with_capacity(gw * (gy1 - gy0 + 1) as usize);
    for gy in gy0..=gy1 {
        for gx in gx0..=gx1 {
            lattice.push(scene.tissue.sample((gx * FIELD_STEP) as f32, (gy * FIELD_STEP) as f32));
        }
    }
    let inv = 1.0 / FIELD_STEP as f32;
    for yy in 0..eh {
        let py = ey0 + yy as i64;
        let ly = (py.div_euclid(FIELD_STEP) - gy0) as usize;
        let ty = py.rem_euclid(FIELD_STEP) as f32 * inv;
        for xx in 0..ew {
            let px = ex0 + xx as i64;
            let lx = (px.div_euclid(FIELD_STEP) - gx0) as usize;
            let tx = px.rem_euclid(FIELD_STEP) as f32 * inv;
            let a = TissueSample::lerp(&lattice[ly * gw + lx], &lattice[ly * gw + lx + 1], tx);
            let b = TissueSample::lerp(&lattice[(ly + 1) * gw + lx], &lattice[(ly + 1) * gw + lx + 1], tx);
            let s = TissueSample::lerp(&a, &b, ty);
            let (hv, ev) = scene.tissue.base_stain(&s, px as f32, py as f32);
            hem[yy * ew + xx] = hv;
            eos[yy * ew + xx] = ev;
        }
    }
}

/// Separable Gaussian blur in place; edge pixels are clamped (the margin absorbs the error).
pub fn gaussian_blur(plane: &mut [f32], w: usize, h: usize, sigma: f32) {
    if sigma <= 0.05 || w == 0 || h == 0 {
        return;
    }
    let r = (3.0 * sigma).ceil() as usize;
    let mut k: Vec<f32> =
        (0..=2 * r).map(|i| (-((i as f32 - r as f32).powi(2)) / (2.0 * sigma * sigma)).exp()).collect();
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    // Horizontal pass through a padded row buffer.
    let mut padded = vec![0.0f32; w + 2 * r];
    let mut tmp = vec![0.0f32; plane.len()];
    for y in 0..h {
        let row = &plane[y * w..(y + 1) * w];
        padded[r..r + w].copy_from_slice(row);
        for i in 0..r {
            padded[i] = row[0];
            padded[r + w + i] = row[w - 1];
        }
        let out = &mut tmp[y * w..(y + 1) * w];
        for (x, o) in out.iter_mut().enumerate() {
            let win = &padded[x..x + 2 * r + 1];
            *o = win.iter().zip(&k).map(|(a, b)| a * b).sum();
        }
    }
    // Vertical pass row by row (contiguous, vectorisable).
    for y in 0..h {
        let out = &mut plane[y * w..(y + 1) * w];
        out.iter_mut().for_each(|v| *v = 0.0);
        for (j, kv) in k.iter().enumerate() {
            let yy = (y + j).saturating_sub(r).min(h - 1);
            let src = &tmp[yy * w..(yy + 1) * w];
            for (o, s) in out.iter_mut().zip(src) {
                *o += kv * s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scanner_profile::ScannerProfile;
    use crate::scene::plan_images;

    #[test]
    fn regions_join_seamlessly() {
        let plan = plan_images(&[ScannerProfile::cs2()], 1, 0.05, 3, 200.0).remove(0);
        let scene = ImageScene::build(&plan);
        let whole = render_region(&scene, 0, 0, 96, 64);
        let left = render_region(&scene, 0, 0, 48, 64);
        let right = render_region(&scene, 48, 0, 48, 64);
        for y in 0..64 {
            assert_eq!(&whole[y * 96 * 3..(y * 96 + 48) * 3], &left[y * 48 * 3..(y + 1) * 48 * 3]);
            assert_eq!(&whole[(y * 96 + 48) * 3..(y + 1) * 96 * 3], &right[y * 48 * 3..(y + 1) * 48 * 3]);
        }
    }

    #[test]
    fn blur_keeps_the_mean() {
        let mut p: Vec<f32> = (0..400).map(|i| (i % 7) as f32).collect();
        let before: f32 = p[100..300].iter().sum();
        gaussian_blur(&mut p, 20, 20, 1.2);
        let after: f32 = p[100..300].iter().sum();
        assert!((before - after).abs() / before < 0.05);
    }
}
