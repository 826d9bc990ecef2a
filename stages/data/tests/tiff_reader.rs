//! The TIFF reader against fixtures written and decoded by tifffile/imagecodecs and libtiff
//! (tests/fixtures/make_fixtures.py), plus borders, concurrency and corrupt files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use midog_data::tiff::{ChunkLayout, TiffImage, TileCache};
use midog_data::{DataError, read_png_rgb};
use serde::Deserialize;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// One line of references.json: a region of a level must equal a PNG decoded by tifffile.
#[derive(Debug, Deserialize)]
struct Reference {
    tiff: String,
    png: String,
    level: usize,
    x: i64,
    y: i64,
    w: u32,
    h: u32,
    max_abs: u8,
    mean_abs: f64,
    width: u32,
    height: u32,
    levels: usize,
    samples: u16,
    compression: u16,
    tiled: bool,
    um_per_px: f64,
    #[serde(default)]
    bigtiff: bool,
    #[serde(default)]
    photometric: Option<u16>,
}

fn references() -> Vec<Reference> {
    let text = std::fs::read_to_string(fixtures().join("references.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// (max abs diff, mean abs diff) of two equally long pixel buffers.
fn diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let max = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0);
    let sum: u64 = a.iter().zip(b).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    (max, sum as f64 / a.len().max(1) as f64)
}

fn crop(rgb: &[u8], width: u32, x: u32, y: u32, w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for row in y..y + h {
        let start = ((row * width + x) * 3) as usize;
        out.extend_from_slice(&rgb[start..start + (w * 3) as usize]);
    }
    out
}

#[test]
fn every_fixture_matches_the_other_reader() {
    let refs = references();
    assert!(refs.len() >= 15, "references.json lists {} entries", refs.len());
    let mut report = Vec::new();
    for r in &refs {
        let image = TiffImage::open(fixtures().join(&r.tiff)).unwrap_or_else(|e| panic!("{e}"));
        let info = image.info();
        assert_eq!((image.width(), image.height()), (r.width, r.height), "{}", r.tiff);
        assert_eq!(image.levels().len(), r.levels, "{}: {info}", r.tiff);
        assert_eq!(info.samples_per_pixel, r.samples, "{}", r.tiff);
        assert_eq!(info.compression.code(), r.compression, "{}", r.tiff);
        assert_eq!(matches!(info.layout, ChunkLayout::Tiled { .. }), r.tiled, "{}", r.tiff);
        assert_eq!(info.bigtiff, r.bigtiff, "{}", r.tiff);
        if let Some(p) = r.photometric {
            assert_eq!(info.photometric.code(), p, "{}", r.tiff);
        }
        let um = image.um_per_px().unwrap_or_else(|| panic!("{}: no resolution", r.tiff));
        assert!((um - r.um_per_px).abs() < 1e-6, "{}: {um} µm/px, expected {}", r.tiff, r.um_per_px);

        let (rw, rh, expected) = read_png_rgb(fixtures().join(&r.png)).unwrap();
        assert_eq!((rw, rh), (r.w, r.h), "{}", r.png);
        let got = image.read_region_vec(r.level, r.x, r.y, r.w, r.h).unwrap();
        let (max, mean) = diff(&got, &expected);
        report.push(format!("{} level {}: max {max}, mean {mean:.3}", r.tiff, r.level));
        assert!(
            max <= r.max_abs && mean <= r.mean_abs,
            "{} level {}: max abs diff {max} (allowed {}), mean {mean:.3} (allowed {})",
            r.tiff,
            r.level,
            r.max_abs,
            r.mean_abs
        );
    }
    println!("{}", report.join("\n"));
}

#[test]
fn ycbcr_jpeg_is_converted_and_rgb_jpeg_is_not() {
    // Against the lossless source: converting RGB-photometric JPEG as YCbCr (or leaving YCbCr
    // unconverted) would be off by tens of levels, not by JPEG noise.
    let (w, h, source) = read_png_rgb(fixtures().join("rgb.png")).unwrap();
    let names = [
        "tiled_jpeg_ycbcr.tif",
        "tiled_jpeg_rgb.tif",
        "tiled_jpegtables_ycbcr.tif",
        "stripped_jpegtables_rgb.tif",
        "tiled_jpegtables_rgb_ids123.tif",
        "tiled_jpegtables_ycbcr_idsRGB.tif",
    ];
    for name in names {
        let image = TiffImage::open(fixtures().join(name)).unwrap();
        let got = image.read_region_vec(0, 0, 0, w, h).unwrap();
        let (_, mean) = diff(&got, &source);
        println!("{name}: mean abs diff to the lossless source {mean:.2}");
        // 4:2:0 chroma smears the 1-px coloured grid lines (≈6); a wrong conversion is ≈40+.
        assert!(mean < 8.0, "{name}: mean abs diff to the source image {mean:.2}");
    }
}

#[test]
fn regions_over_the_border_are_white() {
    let image = TiffImage::open(fixtures().join("tiled_deflate_pred.tif")).unwrap();
    let (w, h, source) = read_png_rgb(fixtures().join("rgb.png")).unwrap();
    let cases: [(i64, i64, u32, u32); 6] = [
        (-10, -7, 50, 40),
        (w as i64 - 30, h as i64 - 20, 64, 64),
        (-5, 100, 400, 10),
        (-100, -100, 20, 20),
        (500, 0, 8, 8),
        (-3, -3, 306, 206),
    ];
    for (x, y, rw, rh) in cases {
        let got = image.read_region_vec(0, x, y, rw, rh).unwrap();
        for row in 0..rh as i64 {
            for col in 0..rw as i64 {
                let (sx, sy) = (x + col, y + row);
                let i = ((row * rw as i64 + col) * 3) as usize;
                let expected = if (0..w as i64).contains(&sx) && (0..h as i64).contains(&sy) {
                    let j = ((sy * w as i64 + sx) * 3) as usize;
                    &source[j..j + 3]
                } else {
                    &[255, 255, 255][..]
                };
                assert_eq!(&got[i..i + 3], expected, "region {x},{y} {rw}×{rh} at pixel {col},{row}");
            }
        }
    }
    let mut wrong = vec![0u8; 10];
    assert!(image.read_region(0, 0, 0, 4, 4, &mut wrong).is_err());
    assert!(image.read_region(3, 0, 0, 2, 2, &mut [0u8; 12]).is_err());
    image.read_region(0, 0, 0, 0, 5, &mut []).unwrap();
}

#[test]
fn regions_spanning_chunks_equal_the_reference_in_every_layout() {
    let (w, h, source) = read_png_rgb(fixtures().join("rgb.png")).unwrap();
    let (sw, sh, small) = read_png_rgb(fixtures().join("rgb_small.png")).unwrap();
    let files = [
        ("tiled_lzw.tif", true),
        ("tiled_none.tif", true),
        ("stripped_none.tif", true),
        ("be_stripped_lzw_pred.tif", false),
        ("stripped_deflate32946_pred.tif", false),
        ("bigtiff_be_tiled_lzw_pred.tif", true),
        ("rgba_tiled_deflate.tif", true),
    ];
    for (name, is_small) in files {
        let image = TiffImage::open(fixtures().join(name)).unwrap();
        let (iw, ih, reference) = if is_small { (sw, sh, &small) } else { (w, h, &source) };
        for (x, y, rw, rh) in
            [(0, 0, 1, 1), (31, 15, 40, 50), (iw - 17, ih - 9, 17, 9), (47, 16, 3, 70), (5, 5, iw - 10, 30)]
        {
            let got = image.read_region_vec(0, i64::from(x), i64::from(y), rw, rh).unwrap();
            assert_eq!(got, crop(reference, iw, x, y, rw, rh), "{name}: region {x},{y} {rw}×{rh}");
        }
    }
}

#[test]
fn pyramid_levels_are_found_and_sorted() {
    let image = TiffImage::open(fixtures().join("pyramid_subifds_deflate.tif")).unwrap();
    let sizes: Vec<_> = image.levels().iter().map(|l| (l.width, l.height)).collect();
    assert_eq!(sizes, [(300, 200), (150, 100), (75, 50)]);
    assert!((image.levels()[2].downsample - 4.0).abs() < 1e-9);

    // SVS-like chain: the stripped thumbnail and the label are not levels.
    let image = TiffImage::open(fixtures().join("pyramid_chain_jpeg.tif")).unwrap();
    let sizes: Vec<_> = image.levels().iter().map(|l| (l.width, l.height)).collect();
    assert_eq!(sizes, [(300, 200), (150, 100)]);
    let info = image.info();
    assert_eq!(info.directories, 4);
    let text = info.to_string();
    for needle in
        ["300 × 200 px", "tiled, 64 × 64 px tiles (5 × 4)", "JPEG (7)", "YCbCr", "0.2500 µm/px", "levels       2"]
    {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let text = TiffImage::open(fixtures().join("bigtiff_be_tiled_lzw_pred.tif")).unwrap().info().to_string();
    assert!(text.contains("BigTIFF, big-endian") && text.contains("LZW (5), horizontal predictor"), "{text}");
    let text = TiffImage::open(fixtures().join("stripped_none.tif")).unwrap().info().to_string();
    assert!(text.contains("stripped, 37 rows per strip (3 strips)") && text.contains("0.5000 µm/px"), "{text}");
}

#[test]
fn many_threads_read_identical_pixels_through_a_small_shared_cache() {
    let path = fixtures().join("tiled_jpeg_ycbcr.tif");
    let reference = TiffImage::open_with_cache(&path, Arc::new(TileCache::new(0))).unwrap();
    let regions: Vec<(i64, i64, u32, u32)> = (0..64)
        .map(|i: i64| ((i * 37) % 320 - 20, (i * 53) % 220 - 20, 20 + (i as u32 * 7) % 90, 15 + (i as u32 * 11) % 70))
        .collect();
    let expected: Vec<Vec<u8>> =
        regions.iter().map(|&(x, y, w, h)| reference.read_region_vec(0, x, y, w, h).unwrap()).collect();
    // ~4 tiles of budget: constant eviction while 8 threads read.
    let shared = Arc::new(TiffImage::open_with_cache(&path, Arc::new(TileCache::new(4 * 64 * 64 * 3 + 400))).unwrap());
    std::thread::scope(|s| {
        for t in 0..8 {
            let (shared, regions, expected) = (&shared, &regions, &expected);
            s.spawn(move || {
                for round in 0..4 {
                    for (i, &(x, y, w, h)) in regions.iter().enumerate().skip((t + round) % 5) {
                        assert_eq!(
                            shared.read_region_vec(0, x, y, w, h).unwrap(),
                            expected[i],
                            "thread {t}, region {i}"
                        );
                    }
                }
            });
        }
    });
    let stats = shared.cache().stats();
    assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
}

// ---------------------------------------------------------------------------------------------
// Corrupt files

fn copy_to(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(fixtures().join(name)).unwrap();
    edit(&mut bytes);
    let path = dir.join(format!("corrupt-{name}"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Opens and reads the whole level 0; the error, if any, must name the file.
fn read_all(path: &Path) -> Result<Vec<u8>, DataError> {
    let image = TiffImage::open_with_cache(path, Arc::new(TileCache::new(0)))?;
    image.read_region_vec(0, 0, 0, image.width(), image.height())
}

fn assert_names_file(err: &DataError, path: &Path) {
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "error does not name the file: {text}");
}

#[test]
fn truncated_files_fail_with_the_file_named_or_read_correctly() {
    let dir = tempfile::tempdir().unwrap();
    for name in
        ["tiled_jpeg_ycbcr.tif", "tiled_deflate_pred.tif", "be_stripped_lzw_pred.tif", "bigtiff_tiled_deflate_pred.tif"]
    {
        let full = read_all(&fixtures().join(name)).unwrap();
        let len = std::fs::metadata(fixtures().join(name)).unwrap().len() as usize;
        for cut in [0, 7, 15, 100, len / 3, len / 2, len * 9 / 10, len - 1] {
            let path = copy_to(dir.path(), name, |b| b.truncate(cut));
            match read_all(&path) {
                Ok(pixels) => assert_eq!(pixels, full, "{name} cut at {cut} read without error but differently"),
                Err(e) => assert_names_file(&e, &path),
            }
        }
    }
}

#[test]
fn corrupt_chunk_data_names_the_file_and_the_tile() {
    let dir = tempfile::tempdir().unwrap();
    // Garbage over the start of a tile (zlib header, JPEG SOI) and LZW codes, tile 6 each.
    for (name, kind) in [
        ("tiled_deflate_pred.tif", "tile 6"),
        ("tiled_jpeg_ycbcr.tif", "tile 6"),
        ("be_stripped_lzw_pred.tif", "strip 3"),
    ] {
        let image = TiffImage::open(fixtures().join(name)).unwrap();
        let index = if kind.starts_with("tile") { 6 } else { 3 };
        let (offset, len) = image.chunk_byte_range(0, index).unwrap();
        let path = copy_to(dir.path(), name, |b| {
            for byte in &mut b[offset as usize..(offset + len) as usize] {
                *byte = 0xFF;
            }
        });
        let err = read_all(&path).unwrap_err();
        assert_names_file(&err, &path);
        assert!(err.to_string().contains(&format!("level 0, {kind}:")), "{err}");
        // Other chunks still read.
        let image = TiffImage::open(&path).unwrap();
        image.read_region_vec(0, 0, 0, 8, 8).unwrap();
    }
}

#[test]
fn random_bytes_inside_a_jpeg_tile_are_an_error_and_verify_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let name = "tiled_jpeg_ycbcr.tif";
    let image = TiffImage::open(fixtures().join(name)).unwrap();
    let index = 6;
    let (offset, len) = image.chunk_byte_range(0, index).unwrap();
    // Seeded noise over the middle third of the entropy-coded data (the headers stay intact).
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let path = copy_to(dir.path(), name, |b| {
        let (start, end) = ((offset + len / 3) as usize, (offset + 2 * len / 3) as usize);
        for byte in &mut b[start..end] {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
    });
    let err = read_all(&path).unwrap_err();
    assert_names_file(&err, &path);
    let text = err.to_string();
    assert!(text.contains("level 0, tile 6:") && text.contains(&format!("at offset {offset}")), "{text}");

    // `verify` finds it without reading any region, and passes the intact file.
    let damaged = TiffImage::open(&path).unwrap();
    let count = std::sync::atomic::AtomicUsize::new(0);
    let err = damaged.verify(&|| {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(err.unwrap_err().to_string().contains("tile 6:"));
    assert_eq!(count.into_inner(), damaged.chunk_total());
    TiffImage::open(fixtures().join(name)).unwrap().verify(&|| {}).unwrap();
}

#[test]
fn bad_directory_offsets_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let name = "tiled_deflate_pred.tif"; // classic little-endian: first IFD offset at bytes 4..8
    for offset in [0u32, 3, 1 << 30, 9] {
        let path = copy_to(dir.path(), name, |b| b[4..8].copy_from_slice(&offset.to_le_bytes()));
        let err = TiffImage::open(&path).unwrap_err();
        assert_names_file(&err, &path);
        assert!(err.to_string().contains("IFD"), "{err}");
    }
    let path = copy_to(dir.path(), name, |b| b[..2].copy_from_slice(b"XX"));
    assert!(TiffImage::open(&path).unwrap_err().to_string().contains("not a TIFF"));
    let missing = dir.path().join("missing.tif");
    assert_names_file(&TiffImage::open(&missing).unwrap_err(), &missing);
}

#[test]
fn random_byte_flips_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let names = [
        "tiled_jpeg_ycbcr.tif",
        "tiled_jpegtables_ycbcr.tif",
        "stripped_jpegtables_rgb.tif",
        "tiled_lzw.tif",
        "tiled_deflate_pred.tif",
        "bigtiff_be_tiled_lzw_pred.tif",
    ];
    let mut errors = 0;
    for name in names {
        let len = std::fs::metadata(fixtures().join(name)).unwrap().len() as usize;
        for _ in 0..40 {
            let flips: Vec<(usize, u8)> =
                (0..1 + next() % 8).map(|_| ((next() % len as u64) as usize, next() as u8)).collect();
            let path = copy_to(dir.path(), name, |b| {
                for (at, value) in flips {
                    b[at] = value;
                }
            });
            if let Err(e) = read_all(&path) {
                assert_names_file(&e, &path);
                errors += 1;
            }
        }
    }
    assert!(errors > 0);
}

/// A minimal tiled little-endian TIFF (uncompressed RGB 16 × 16 tiles) with a tag replaced.
fn hand_made_tiff(dir: &Path, name: &str, replace: (u16, u16, u32, u32)) -> PathBuf {
    let (w, h, tile) = (40u32, 20u32, 16u32);
    let tiles = w.div_ceil(tile) * h.div_ceil(tile);
    let tile_bytes = tile * tile * 3;
    let data_start = 8u32;
    let data_len = tiles * tile_bytes;
    let offsets_at = data_start + data_len;
    let counts_at = offsets_at + tiles * 4;
    let ifd_at = counts_at + tiles * 4;
    let mut entries: Vec<(u16, u16, u32, u32)> = vec![
        (256, 3, 1, w),
        (257, 3, 1, h),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (277, 3, 1, 3),
        (322, 3, 1, tile),
        (323, 3, 1, tile),
        (324, 4, tiles, offsets_at),
        (325, 4, tiles, counts_at),
    ];
    if let Some(e) = entries.iter_mut().find(|e| e.0 == replace.0) {
        *e = replace;
    } else {
        entries.push(replace);
        entries.sort_by_key(|e| e.0);
    }
    let mut b = b"II*\0".to_vec();
    b.extend(ifd_at.to_le_bytes());
    b.extend((0..data_len).map(|i| (i % 251) as u8));
    b.extend((0..tiles).flat_map(|i| (data_start + i * tile_bytes).to_le_bytes()));
    b.extend((0..tiles).flat_map(|_| tile_bytes.to_le_bytes()));
    b.extend((entries.len() as u16).to_le_bytes());
    for (tag, ty, count, value) in entries {
        b.extend(tag.to_le_bytes());
        b.extend(ty.to_le_bytes());
        b.extend(count.to_le_bytes());
        b.extend(value.to_le_bytes());
    }
    b.extend(0u32.to_le_bytes());
    let path = dir.join(name);
    std::fs::write(&path, b).unwrap();
    path
}

#[test]
fn wrong_tags_are_errors_naming_the_file_and_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let ok = hand_made_tiff(dir.path(), "ok.tif", (254, 4, 1, 0));
    assert_eq!(read_all(&ok).unwrap().len(), 40 * 20 * 3);
    type Entry = (u16, u16, u32, u32);
    let cases: [(Entry, &str); 9] = [
        ((258, 3, 1, 16), "bits per sample"),
        ((277, 3, 1, 1), "samples per pixel"),
        ((259, 3, 1, 34712), "compression 34712"),
        ((259, 3, 1, 6), "old-style JPEG"),
        ((262, 3, 1, 5), "photometric interpretation 5"),
        ((284, 3, 1, 2), "planar configuration 2"),
        ((324, 4, 3, 8), "TileOffsets has 3 values, expected 6"),
        ((323, 3, 1, 0), "tile size"),
        ((317, 3, 1, 3), "predictor 3"),
    ];
    for (i, (tag, needle)) in cases.into_iter().enumerate() {
        let path = hand_made_tiff(dir.path(), &format!("bad{i}.tif"), tag);
        let err = read_all(&path).unwrap_err();
        assert_names_file(&err, &path);
        assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
    }
    // Byte counts read from the offsets array (8, 776, …, 3848): tile 0 is short, tile 5 runs
    // past the end of the file. The open succeeds; reads name the tile.
    let path = hand_made_tiff(dir.path(), "counts.tif", (325, 4, 6, 8 + 6 * 768));
    let image = TiffImage::open(&path).unwrap();
    let err = image.read_region_vec(0, 0, 0, 16, 16).unwrap_err();
    assert!(err.to_string().contains("level 0, tile 0: 8 bytes of pixel data, expected 768"), "{err}");
    let err = image.read_region_vec(0, 39, 19, 1, 1).unwrap_err();
    assert!(err.to_string().contains("tile 5: 3848 bytes at offset 3848 extend past the end"), "{err}");
    assert_names_file(&err, &path);
}
