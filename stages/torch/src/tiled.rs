//! Whole-image inference: an image is covered by overlapping tiles ([`TileGrid`]); CPU threads
//! decode the next batches of tiles into (pinned) host tensors while the device runs the current
//! one; every candidate above `min_score` is kept with its tile index. Memory stays bounded: at
//! most `threads + 1` decoded batches exist at once, and the TIFF tile cache is bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::tile_grid::TileGrid;
use midog_data::TiffImage;
use midog_data::stain::StainTransform;
use midog_model::{Detector, Precision};
use tch::Device;

use crate::batch_tensor::TensorBatch;

/// One candidate box in image coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub tile: u32,
    pub b: [f64; 4],
    pub score: f64,
}

pub struct TiledDetector<'a> {
    pub net: &'a dyn Detector,
    pub device: Device,
    pub precision: Precision,
    pub tile: u32,
    pub overlap: f64,
    pub batch_size: usize,
    pub min_score: f64,
    pub threads: usize,
    pub channels_last: bool,
}

impl TiledDetector<'_> {
    /// All candidates of one image; `on_batch(tiles_done)` reports progress and may stop the work
    /// by returning false. With `stain`, the image's stain normalisation is applied to every tile
    /// in the decoding threads, exactly as the patch loader applies it in training.
    pub fn detect_normalised(
        &self,
        image: &Arc<TiffImage>,
        stain: Option<&StainTransform>,
        on_batch: &mut dyn FnMut(usize) -> bool,
    ) -> Result<Vec<Candidate>, String> {
        self.detect_timed(image, stain, on_batch).map(|(c, _)| c)
    }

    /// [`TiledDetector::detect_normalised`], also returning the seconds the device side spent
    /// waiting for decoded tiles (how far decoding, not the model, bounds the run).
    pub fn detect_timed(
        &self,
        image: &Arc<TiffImage>,
        stain: Option<&StainTransform>,
        on_batch: &mut dyn FnMut(usize) -> bool,
    ) -> Result<(Vec<Candidate>, f64), String> {
        let _guard = tch::no_grad_guard();
        let grid = TileGrid::new(image.width(), image.height(), self.tile, self.overlap);
        let origins: Arc<Vec<(i64, i64)>> = Arc::new(grid.origins().collect());
        let batches = origins.len().div_ceil(self.batch_size);
        let (tx, rx) = crossbeam_channel::bounded::<(usize, Result<TensorBatch, String>)>(self.threads + 1);
        let next = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut out = (Vec::new(), 0.0);
        std::thread::scope(|scope| -> Result<(), String> {
            for _ in 0..self.threads.max(1) {
                let (tx, next, origins, stop) = (tx.clone(), next.clone(), origins.clone(), stop.clone());
                let (image, tile, bs, device) = (image.clone(), self.tile, self.batch_size, self.device);
                let stain = stain.cloned();
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= batches || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let tiles = &origins[i * bs..((i + 1) * bs).min(origins.len())];
                        let mut batch = TensorBatch::allocate(tiles.len() as i64, tile as i64, device);
                        let result = read_tiles(&image, tiles, tile, stain.as_ref(), &mut batch).map(|()| batch);
                        if tx.send((i, result)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            // `rx` moves into the consumer: when it returns (done, failed or cancelled) the channel
            // closes and blocked workers stop instead of waiting forever.
            out = self.consume(rx, batches, &origins, image, &stop, on_batch)?;
            Ok(())
        })?;
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn consume(
        &self,
        rx: crossbeam_channel::Receiver<(usize, Result<TensorBatch, String>)>,
        batches: usize,
        origins: &[(i64, i64)],
        image: &TiffImage,
        stop: &std::sync::atomic::AtomicBool,
        on_batch: &mut dyn FnMut(usize) -> bool,
    ) -> Result<(Vec<Candidate>, f64), String> {
        let mut out = Vec::new();
        let mut waited = 0.0;
        // Consume in order (a small reorder buffer: workers run at most `threads` ahead).
        let mut pending: std::collections::BTreeMap<usize, Result<TensorBatch, String>> = Default::default();
        let mut want = 0;
        let mut done_tiles = 0;
        while want < batches {
            let batch = match pending.remove(&want) {
                Some(b) => b,
                None => match timed(&mut waited, || rx.recv()) {
                    Ok((i, b)) => {
                        pending.insert(i, b);
                        continue;
                    }
                    Err(_) => return Err("tile decoding stopped unexpectedly".into()),
                },
            };
            let batch = batch.inspect_err(|_| stop.store(true, Ordering::Relaxed))?;
            let first = want * self.batch_size;
            let n = batch.tensor.size()[0] as usize;
            out.extend(self.run_batch(&batch, &origins[first..first + n], first as u32, image.width(), image.height()));
            done_tiles += n;
            want += 1;
            if !on_batch(done_tiles) {
                stop.store(true, Ordering::Relaxed);
                return Err("cancelled".into());
            }
        }
        Ok((out, waited))
    }

    fn run_batch(
        &self,
        batch: &TensorBatch,
        origins: &[(i64, i64)],
        first_tile: u32,
        w: u32,
        h: u32,
    ) -> Vec<Candidate> {
        let pixels = midog_model::transform::upload(&batch.tensor, self.device);
        let images = self.net.normalize(&pixels, self.channels_last);
        let dets = self.net.detect(&images, self.precision);
        let mut found = Vec::new();
        for (i, d) in dets.into_iter().enumerate() {
            let boxes: Vec<f32> = Vec::try_from(d.boxes.to_device(Device::Cpu).reshape([-1])).unwrap_or_default();
            let scores: Vec<f32> = Vec::try_from(d.scores.to_device(Device::Cpu)).unwrap_or_default();
            let (ox, oy) = (origins[i].0 as f64, origins[i].1 as f64);
            for (b, &s) in boxes.chunks(4).zip(&scores) {
                if (s as f64) <= self.min_score {
                    continue;
                }
                let bx = [
                    (b[0] as f64 + ox).clamp(0.0, w as f64),
                    (b[1] as f64 + oy).clamp(0.0, h as f64),
                    (b[2] as f64 + ox).clamp(0.0, w as f64),
                    (b[3] as f64 + oy).clamp(0.0, h as f64),
                ];
                if bx[2] > bx[0] && bx[3] > bx[1] {
                    found.push(Candidate { tile: first_tile + i as u32, b: bx, score: s as f64 });
                }
            }
        }
        found
    }
}

/// Runs `f`, adding its wall time in seconds to `total`.
fn timed<T>(total: &mut f64, f: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let r = f();
    *total += t.elapsed().as_secs_f64();
    r
}

fn read_tiles(
    image: &TiffImage,
    tiles: &[(i64, i64)],
    tile: u32,
    stain: Option<&StainTransform>,
    batch: &mut TensorBatch,
) -> Result<(), String> {
    use midog_data::loader::BatchBuffer;
    let bytes = batch.bytes_mut();
    let per = (tile * tile * 3) as usize;
    for (k, &(x, y)) in tiles.iter().enumerate() {
        let out = &mut bytes[k * per..(k + 1) * per];
        image.read_region(0, x, y, tile, tile, out).map_err(|e| e.to_string())?;
        if let Some(t) = stain {
            t.apply(out);
        }
    }
    Ok(())
}
