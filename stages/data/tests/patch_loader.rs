//! The patch loader: determinism across thread counts, boxes that follow the pixels, order,
//! bounded memory, errors naming files, cancellation.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use midog_data::DataError;
use midog_data::loader::{AugmentConfig, Batch, LoaderConfig, LoaderImage, PatchLoader, PatchSpec};

/// Writes an uncompressed, tiled, little-endian RGB TIFF (an independent minimal writer).
fn write_tiled_tiff(path: &Path, width: u32, height: u32, tile: u32, rgb: &[u8]) {
    let (across, down) = (width.div_ceil(tile), height.div_ceil(tile));
    let tile_bytes = tile * tile * 3;
    let mut data = Vec::with_capacity((across * down * tile_bytes) as usize);
    for ty in 0..down {
        for tx in 0..across {
            for row in 0..tile {
                for col in 0..tile {
                    let (x, y) = (tx * tile + col, ty * tile + row);
                    if x < width && y < height {
                        let i = ((y * width + x) * 3) as usize;
                        data.extend_from_slice(&rgb[i..i + 3]);
                    } else {
                        data.extend_from_slice(&[0, 0, 0]);
                    }
                }
            }
        }
    }
    let tiles = across * down;
    let offsets_at = 8 + data.len() as u32;
    let counts_at = offsets_at + tiles * 4;
    let bits_at = counts_at + tiles * 4;
    let ifd_at = bits_at + 6;
    let entries: [(u16, u16, u32, u32); 10] = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, bits_at),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (277, 3, 1, 3),
        (322, 3, 1, tile),
        (323, 3, 1, tile),
        (324, 4, tiles, offsets_at),
        (325, 4, tiles, counts_at),
    ];
    let mut b = b"II*\0".to_vec();
    b.extend(ifd_at.to_le_bytes());
    b.extend(&data);
    b.extend((0..tiles).flat_map(|i| (8 + i * tile_bytes).to_le_bytes()));
    b.extend((0..tiles).flat_map(|_| tile_bytes.to_le_bytes()));
    b.extend([8u8, 0, 8, 0, 8, 0]);
    b.extend((entries.len() as u16).to_le_bytes());
    for (tag, ty, count, value) in entries {
        b.extend(tag.to_le_bytes());
        b.extend(ty.to_le_bytes());
        b.extend(count.to_le_bytes());
        b.extend(value.to_le_bytes());
    }
    b.extend(0u32.to_le_bytes());
    std::fs::write(path, b).unwrap();
}

/// A textured image (gradients and a checkerboard) so that every transform shows.
fn textured(width: u32, height: u32) -> Vec<u8> {
    (0..height)
        .flat_map(|y| {
            (0..width).flat_map(move |x| {
                let check = if (x / 7 + y / 5) % 2 == 0 { 40 } else { 0 };
                [(x % 200) as u8 + check, (y % 200) as u8 + 20, ((x * 3 + y) % 180) as u8 + check / 2]
            })
        })
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    images: Vec<LoaderImage>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut images = Vec::new();
    for (i, (w, h)) in [(420u32, 300u32), (333, 257)].into_iter().enumerate() {
        let path = dir.path().join(format!("img{i}.tif"));
        write_tiled_tiff(&path, w, h, 64, &textured(w, h));
        let boxes = vec![[50.0, 60.0, 100.0, 110.0], [200.0, 100.0, 250.0, 150.0], [10.0, 200.0, 60.0, 250.0]];
        images.push(LoaderImage { path, boxes, stain: None });
    }
    Fixture { _dir: dir, images }
}

fn plan(batches: usize, per_batch: usize) -> Vec<Vec<PatchSpec>> {
    (0..batches)
        .map(|b| {
            (0..per_batch)
                .map(|p| {
                    let k = (b * per_batch + p) as i64;
                    PatchSpec { image: (k % 2) as usize, x: (k * 37) % 300 - 20, y: (k * 53) % 200 - 10 }
                })
                .collect()
        })
        .collect()
}

fn config(threads: usize, augment: AugmentConfig) -> LoaderConfig {
    LoaderConfig { patch_size: 96, threads, seed: 42, augment, prefetch_batches: 2 }
}

fn collect(images: &[LoaderImage], batches: Vec<Vec<PatchSpec>>, config: LoaderConfig) -> Vec<Batch<Vec<u8>>> {
    PatchLoader::start(images.to_vec(), batches, config, |n| vec![0u8; n]).unwrap().map(Result::unwrap).collect()
}

#[test]
fn batches_are_identical_for_any_thread_count() {
    let f = fixture();
    let reference = collect(&f.images, plan(12, 5), config(1, AugmentConfig::STANDARD));
    assert_eq!(reference.len(), 12);
    for threads in [2, 4] {
        let other = collect(&f.images, plan(12, 5), config(threads, AugmentConfig::STANDARD));
        for (a, b) in reference.iter().zip(&other) {
            assert_eq!(a.index, b.index);
            assert!(a.pixels == b.pixels, "batch {} pixels differ with {threads} threads", a.index);
            assert_eq!(a.boxes, b.boxes, "batch {} boxes differ with {threads} threads", a.index);
            assert_eq!(a.specs, b.specs);
        }
    }
    let reseeded = collect(&f.images, plan(12, 5), LoaderConfig { seed: 43, ..config(2, AugmentConfig::STANDARD) });
    assert!(reseeded[0].pixels != reference[0].pixels);
}

#[test]
fn without_augmentation_patches_are_the_file_pixels() {
    let f = fixture();
    let batches = collect(&f.images, plan(3, 4), config(2, AugmentConfig::NONE));
    let image = midog_data::TiffImage::open(&f.images[0].path).unwrap();
    let spec = batches[0].specs[0];
    assert_eq!(spec.image, 0);
    let expected = image.read_region_vec(0, spec.x, spec.y, 96, 96).unwrap();
    assert!(batches[0].pixels[..96 * 96 * 3] == expected[..]);
}

/// A white image with one red square per box: after flips and rotations, the red pixels of a
/// patch must fill exactly the boxes the loader reports.
#[test]
fn boxes_follow_flips_and_rotations_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (400u32, 300u32);
    let boxes: Vec<[f32; 4]> = vec![[40.0, 30.0, 70.0, 52.0], [230.0, 160.0, 262.0, 210.0], [300.0, 20.0, 321.0, 61.0]];
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    for b in &boxes {
        for y in b[1] as u32..b[3] as u32 {
            for x in b[0] as u32..b[2] as u32 {
                rgb[((y * w + x) * 3) as usize..][..3].copy_from_slice(&[200, 0, 0]);
            }
        }
    }
    let path = dir.path().join("squares.tif");
    write_tiled_tiff(&path, w, h, 64, &rgb);
    let images = vec![LoaderImage { path, boxes, stain: None }];
    // Patches holding each square whole, and one that cuts the second square (centre inside).
    let corners = [(10, 0), (200, 140), (270, 0), (190, 120), (220, 150)];
    let batches: Vec<Vec<PatchSpec>> =
        (0..8).map(|_| corners.iter().map(|&(x, y)| PatchSpec { image: 0, x, y }).collect()).collect();
    let augment = AugmentConfig { flips: true, rot90: true, ..AugmentConfig::NONE };
    let size = 80usize;
    let cfg = LoaderConfig { patch_size: size as u32, threads: 2, seed: 7, augment, prefetch_batches: 1 };
    let mut seen_transforms = std::collections::HashSet::new();
    for batch in PatchLoader::start(images, batches, cfg, |n| vec![0u8; n]).unwrap() {
        let batch = batch.unwrap();
        for (p, patch) in batch.pixels.chunks_exact(size * size * 3).enumerate() {
            let red: Vec<bool> = patch.chunks_exact(3).map(|px| px == [200, 0, 0]).collect();
            let mut painted = vec![false; size * size];
            for b in &batch.boxes[p] {
                assert!(b.iter().all(|v| v.fract() == 0.0), "{b:?}");
                for y in b[1] as usize..b[3] as usize {
                    for x in b[0] as usize..b[2] as usize {
                        painted[y * size + x] = true;
                    }
                }
            }
            assert_eq!(
                red, painted,
                "batch {}, patch {p}: red pixels and boxes {:?} disagree",
                batch.index, batch.boxes[p]
            );
            assert!(!batch.boxes[p].is_empty());
            seen_transforms.insert(format!("{:?}", batch.boxes[p]));
        }
    }
    assert!(seen_transforms.len() > 10, "augmentations barely varied: {}", seen_transforms.len());
}

#[test]
fn scale_jitter_scales_boxes_with_the_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (300u32, 300u32);
    let b = [120.0f32, 130.0, 170.0, 180.0];
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    for y in 130..180u32 {
        for x in 120..170u32 {
            rgb[((y * w + x) * 3) as usize..][..3].copy_from_slice(&[0, 0, 200]);
        }
    }
    let path = dir.path().join("square.tif");
    write_tiled_tiff(&path, w, h, 64, &rgb);
    let augment = AugmentConfig { scale_jitter: 0.3, flips: true, rot90: true, ..AugmentConfig::NONE };
    let size = 128usize;
    let cfg = LoaderConfig { patch_size: size as u32, threads: 1, seed: 3, augment, prefetch_batches: 1 };
    let batches = vec![(0..6).map(|_| PatchSpec { image: 0, x: 90, y: 95 }).collect::<Vec<_>>()];
    let images = vec![LoaderImage { path, boxes: vec![b], stain: None }];
    for batch in PatchLoader::start(images, batches, cfg, |n| vec![0u8; n]).unwrap() {
        let batch = batch.unwrap();
        for (p, patch) in batch.pixels.chunks_exact(size * size * 3).enumerate() {
            let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
            for (i, px) in patch.chunks_exact(3).enumerate() {
                if px[0] < 128 {
                    let (x, y) = (i % size, i / size);
                    (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
                }
            }
            let got = batch.boxes[p][0];
            let blue = [x0 as f32, y0 as f32, x1 as f32, y1 as f32];
            for (g, e) in got.iter().zip(&blue) {
                assert!((g - e).abs() <= 1.5, "patch {p}: box {got:?}, blue pixels span {blue:?}");
            }
        }
    }
}

#[test]
fn batches_arrive_in_order_with_memory_bounded() {
    let f = fixture();
    let allocated = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&allocated);
    let (threads, prefetch) = (3, 2);
    let cfg = LoaderConfig { threads, prefetch_batches: prefetch, ..config(threads, AugmentConfig::STANDARD) };
    let loader = PatchLoader::start(f.images.clone(), plan(20, 3), cfg, move |n| {
        counter.fetch_add(1, Ordering::SeqCst);
        vec![0u8; n]
    })
    .unwrap();
    assert_eq!(loader.len(), 20);
    let mut max_ahead = 0;
    for (i, batch) in loader.enumerate() {
        let batch = batch.unwrap();
        assert_eq!(batch.index, i);
        std::thread::sleep(std::time::Duration::from_millis(15)); // let the workers run ahead
        let ahead = allocated.load(Ordering::SeqCst) - (i + 1);
        assert!(ahead <= prefetch + threads, "{ahead} batches allocated ahead after batch {i}");
        max_ahead = max_ahead.max(ahead);
    }
    assert!(max_ahead >= 1, "the workers never ran ahead");
    assert_eq!(allocated.load(Ordering::SeqCst), 20);
}

#[test]
fn dropping_the_loader_stops_the_workers() {
    let f = fixture();
    let mut loader =
        PatchLoader::start(f.images.clone(), plan(500, 8), config(4, AugmentConfig::STANDARD), |n| vec![0u8; n])
            .unwrap();
    loader.next().unwrap().unwrap();
    drop(loader); // joins the workers: returns only if they stopped
}

fn first_error(images: Vec<LoaderImage>, batches: Vec<Vec<PatchSpec>>) -> DataError {
    match PatchLoader::start(images, batches, config(2, AugmentConfig::STANDARD), |n| vec![0u8; n]) {
        Err(e) => e,
        Ok(loader) => loader.filter_map(Result::err).next().expect("an error"),
    }
}

#[test]
fn missing_and_corrupt_files_are_named() {
    let f = fixture();
    let missing = PathBuf::from("/nonexistent/dir/042.tiff");
    let mut images = f.images.clone();
    images.push(LoaderImage { path: missing.clone(), boxes: vec![], stain: None });
    let err = first_error(images, plan(2, 2));
    assert!(err.to_string().contains("/nonexistent/dir/042.tiff"), "{err}");

    // Cut after three tiles: the directory (written last) is gone, the open names the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.tif");
    let mut bytes = std::fs::read(&f.images[0].path).unwrap();
    bytes.truncate(8 + 64 * 64 * 3 * 3);
    std::fs::write(&path, &bytes).unwrap();
    let images = vec![LoaderImage { path: path.clone(), boxes: vec![], stain: None }];
    let err = first_error(images, plan(1, 1)).to_string();
    assert!(err.contains(&path.display().to_string()) && err.contains("IFD"), "{err}");

    let err = first_error(f.images.clone(), vec![vec![PatchSpec { image: 5, x: 0, y: 0 }]]);
    assert!(err.to_string().contains("names image 5"), "{err}");
}

#[test]
fn a_corrupt_tile_fails_only_its_batch() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one-bad-tile.tif");
    let image = midog_data::TiffImage::open(&f.images[0].path).unwrap();
    // Tile 7 (column 0, row 1 of 7 columns) byte count → past the end of the file.
    let (offset, len) = image.chunk_byte_range(0, 7).unwrap();
    let mut bytes = std::fs::read(&f.images[0].path).unwrap();
    let counts_at = u32::from_le_bytes(bytes[bytes.len() - 4 - 12 + 8..bytes.len() - 4].try_into().unwrap()) as usize;
    bytes[counts_at + 7 * 4..counts_at + 8 * 4].copy_from_slice(&(u32::MAX - 1).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    assert!(offset > 0 && len > 0);
    let images = vec![LoaderImage { path: path.clone(), boxes: vec![], stain: None }];
    let batches = vec![
        vec![PatchSpec { image: 0, x: 0, y: 0 }],
        vec![PatchSpec { image: 0, x: 10, y: 70 }], // touches tile 7
        vec![PatchSpec { image: 0, x: 200, y: 0 }],
    ];
    let cfg = LoaderConfig { patch_size: 40, ..config(2, AugmentConfig::NONE) };
    let results: Vec<_> = PatchLoader::start(images, batches, cfg, |n| vec![0u8; n]).unwrap().collect();
    assert!(results[0].is_ok() && results[2].is_ok());
    let err = results[1].as_ref().unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()) && err.contains("tile 7"), "{err}");
}

/// Every augmentation but HED jitter (whose clipping of negative densities would repaint the
/// green style colour of these tests), plus Fourier mixing.
const BASE: AugmentConfig = AugmentConfig { stain_jitter: 0.0, ..AugmentConfig::STANDARD };

fn fourier(beta: f32, probability: f32, style_images: [usize; 2]) -> AugmentConfig {
    AugmentConfig {
        fourier: Some(midog_data::loader::FourierMix { beta, window: 0.05, probability, bank_size: 8, style_images }),
        ..BASE
    }
}

/// A third, differently coloured image as the style source of Fourier mixing.
fn with_style_image(f: &Fixture) -> Vec<LoaderImage> {
    let path = f._dir.path().join("style.tif");
    let rgb: Vec<u8> = textured(300, 300).chunks_exact(3).flat_map(|p| [p[0] / 2 + 20, p[1] / 3 + 150, p[2]]).collect();
    write_tiled_tiff(&path, 300, 300, 64, &rgb);
    let mut images = f.images.clone();
    images.push(LoaderImage { path, boxes: vec![], stain: None });
    images
}

#[test]
fn fourier_mixing_is_deterministic_and_beta_zero_changes_nothing() {
    let f = fixture();
    let images = with_style_image(&f);
    let off = collect(&images, plan(4, 5), config(1, BASE));
    let zero = collect(&images, plan(4, 5), config(2, fourier(0.0, 1.0, [2, 3])));
    for (a, b) in off.iter().zip(&zero) {
        assert!(a.pixels == b.pixels, "beta = 0 changed batch {}", a.index);
        assert_eq!(a.boxes, b.boxes);
    }
    let one = collect(&images, plan(4, 5), config(1, fourier(1.0, 1.0, [2, 3])));
    let four = collect(&images, plan(4, 5), config(4, fourier(1.0, 1.0, [2, 3])));
    for ((a, b), c) in one.iter().zip(&four).zip(&off) {
        assert!(a.pixels == b.pixels, "batch {} depends on the thread count", a.index);
        assert_eq!(a.boxes, c.boxes, "mixing moved boxes");
        assert!(a.pixels != c.pixels, "beta = 1 left batch {} unchanged", a.index);
    }
    // Mixed towards the green style image: the mean green rises.
    let green = |b: &Batch<Vec<u8>>| b.pixels.chunks_exact(3).map(|p| f64::from(p[1])).sum::<f64>();
    assert!(green(&one[0]) > green(&off[0]) * 1.2, "{} vs {}", green(&one[0]), green(&off[0]));
    // Probability 0 draws a bank entry but mixes nothing.
    let never = collect(&images, plan(2, 5), config(2, fourier(1.0, 0.0, [2, 3])));
    assert!(never[0].pixels == off[0].pixels && never[1].pixels == off[1].pixels);
}

#[test]
fn fourier_styles_never_come_from_the_patch_own_image() {
    // Style pool = image 0 only: patches of image 0 find no other image and stay unmixed, those of
    // image 1 are mixed.
    let f = fixture();
    let off = collect(&f.images, plan(2, 6), config(1, BASE));
    let mixed = collect(&f.images, plan(2, 6), config(1, fourier(1.0, 1.0, [0, 1])));
    let patch = 96 * 96 * 3;
    for (a, b) in off.iter().zip(&mixed) {
        for (p, spec) in a.specs.iter().enumerate() {
            let same = a.pixels[p * patch..(p + 1) * patch] == b.pixels[p * patch..(p + 1) * patch];
            assert_eq!(same, spec.image == 0, "patch {p} of image {}", spec.image);
        }
    }
}

#[test]
fn bad_fourier_settings_are_named() {
    let f = fixture();
    let start = |augment| PatchLoader::start(f.images.clone(), plan(1, 1), config(1, augment), |n| vec![0u8; n]);
    let e = start(fourier(1.5, 1.0, [0, 2])).err().unwrap().to_string();
    assert!(e.contains("fourier.beta = 1.5") && e.contains("[0, 1]"), "{e}");
    let e = start(fourier(0.5, 1.0, [0, 5])).err().unwrap().to_string();
    assert!(e.contains("style_images"), "{e}");
}
