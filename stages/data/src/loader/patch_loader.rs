//! `PatchLoader`: worker threads turn batches of patch specs into augmented pixel batches,
//! delivered in order through a bounded channel.
//!
//! - Workers claim batch indices in increasing order. A worker may start batch `i` only while
//!   `i < yielded + prefetch_batches + threads`, so at most that many batch buffers exist beyond
//!   those already handed to the caller, and the batch the caller waits for is always in work.
//! - Each patch's randomness comes from (seed, batch, position): results do not depend on the
//!   thread count or on timing. Finished batches are reordered before they are yielded.
//! - Dropping the loader stops the workers after the patch they are reading.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::augment::{PatchAugment, patch_rng};
use super::batch::{Batch, BatchBuffer, LoaderImage, PatchSpec};
use super::config::LoaderConfig;
use super::patch::PatchWorker;
use super::style_bank::StyleBank;
use crate::error::DataError;
use crate::tiff::{TiffImage, TileCache};

/// Decoded-tile cache of a loader started without one.
pub const DEFAULT_LOADER_CACHE_BYTES: usize = 256 << 20;

type Allocator<B> = Box<dyn Fn(usize) -> B + Send + Sync>;
type Delivery<B> = (usize, Result<Batch<B>, DataError>);

/// State shared by the consumer and the workers.
struct Shared<B> {
    images: Vec<TiffImage>,
    boxes: Vec<Vec<[f32; 4]>>,
    /// Stain normalisation per image (applied first, to every patch of it).
    stains: Vec<Option<crate::stain::StainTransform>>,
    batches: Vec<Vec<PatchSpec>>,
    config: LoaderConfig,
    alloc: Allocator<B>,
    /// Fourier styles (when `config.augment.fourier` is on).
    styles: Option<StyleBank>,
    /// Next batch index a worker claims.
    next_claim: AtomicUsize,
    /// Batches handed to the caller so far; workers wait on `window_moved` for it to grow.
    yielded: Mutex<usize>,
    window_moved: Condvar,
    window: usize,
    stop: AtomicBool,
}

/// Iterator over augmented batches, in order (batch 0, 1, 2, …).
pub struct PatchLoader<B: BatchBuffer> {
    shared: Arc<Shared<B>>,
    receiver: Option<Receiver<Delivery<B>>>,
    pending: BTreeMap<usize, Result<Batch<B>, DataError>>,
    next: usize,
    workers: Vec<JoinHandle<()>>,
}

impl<B: BatchBuffer> PatchLoader<B> {
    /// Opens the images (a missing or unreadable file fails here, named) and starts the workers.
    /// `alloc(bytes)` makes the buffer of one batch; it is called from the worker threads.
    pub fn start(
        images: Vec<LoaderImage>,
        batches: Vec<Vec<PatchSpec>>,
        config: LoaderConfig,
        alloc: impl Fn(usize) -> B + Send + Sync + 'static,
    ) -> Result<PatchLoader<B>, DataError> {
        let cache = Arc::new(TileCache::new(DEFAULT_LOADER_CACHE_BYTES));
        PatchLoader::start_with_cache(images, batches, config, cache, alloc)
    }

    /// [`start`](Self::start) with a caller-provided decoded-tile cache.
    pub fn start_with_cache(
        images: Vec<LoaderImage>,
        batches: Vec<Vec<PatchSpec>>,
        config: LoaderConfig,
        cache: Arc<TileCache>,
        alloc: impl Fn(usize) -> B + Send + Sync + 'static,
    ) -> Result<PatchLoader<B>, DataError> {
        let invalid = |message: String| DataError::LoaderConfig { message };
        if !(1..=16_384).contains(&config.patch_size) {
            return Err(invalid(format!("patch_size {} is outside 1..=16384", config.patch_size)));
        }
        config.augment.validate().map_err(invalid)?;
        for (b, batch) in batches.iter().enumerate() {
            if let Some((p, spec)) = batch.iter().enumerate().find(|(_, s)| s.image >= images.len()) {
                return Err(invalid(format!(
                    "batch {b}, patch {p} names image {} but the loader has {} images",
                    spec.image,
                    images.len()
                )));
            }
        }
        let mut opened = Vec::with_capacity(images.len());
        let mut boxes = Vec::with_capacity(images.len());
        let mut stains = Vec::with_capacity(images.len());
        for image in images {
            opened.push(TiffImage::open_with_cache(&image.path, Arc::clone(&cache))?);
            boxes.push(image.boxes);
            stains.push(image.stain);
        }
        if let Some(f) = &config.augment.fourier
            && f.style_images[1] > opened.len()
        {
            return Err(invalid(format!(
                "fourier.style_images {:?} reaches past the loader's {} images",
                f.style_images,
                opened.len()
            )));
        }
        let styles = config.augment.fourier.map(|f| StyleBank::draw(&f, &opened, config.patch_size, config.seed));
        let threads = config.threads.max(1);
        let window = config.prefetch_batches + threads;
        let shared = Arc::new(Shared {
            images: opened,
            boxes,
            stains,
            batches,
            config,
            alloc: Box::new(alloc),
            styles,
            next_claim: AtomicUsize::new(0),
            yielded: Mutex::new(0),
            window_moved: Condvar::new(),
            window,
            stop: AtomicBool::new(false),
        });
        let (sender, receiver) = crossbeam_channel::bounded(window);
        let mut workers = Vec::with_capacity(threads);
        for t in 0..threads {
            let (worker_shared, sender) = (Arc::clone(&shared), sender.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("patch-loader-{t}"))
                .spawn(move || work(&worker_shared, &sender))
                .map_err(|e| invalid(format!("cannot start worker thread: {e}")));
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(e) => {
                    shutdown(&shared, &mut workers);
                    return Err(e);
                }
            }
        }
        Ok(PatchLoader { shared, receiver: Some(receiver), pending: BTreeMap::new(), next: 0, workers })
    }

    /// Number of batches this loader yields in total.
    pub fn batch_count(&self) -> usize {
        self.shared.batches.len()
    }

    /// The open images (sizes, resolution), in the order they were given.
    pub fn images(&self) -> &[TiffImage] {
        &self.shared.images
    }

    fn advance_window(&mut self) {
        self.next += 1;
        *lock(&self.shared.yielded) = self.next;
        self.shared.window_moved.notify_all();
    }
}

impl<B: BatchBuffer> Iterator for PatchLoader<B> {
    type Item = Result<Batch<B>, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.shared.batches.len() {
            return None;
        }
        loop {
            if let Some(result) = self.pending.remove(&self.next) {
                self.advance_window();
                return Some(result);
            }
            let received = self.receiver.as_ref().map(Receiver::recv);
            match received {
                Some(Ok((index, result))) => {
                    self.pending.insert(index, result);
                }
                _ => {
                    let batch = self.next;
                    self.next = self.shared.batches.len();
                    return Some(Err(DataError::LoaderWorker { batch, message: "all workers have exited".into() }));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.shared.batches.len() - self.next;
        (left, Some(left))
    }
}

impl<B: BatchBuffer> ExactSizeIterator for PatchLoader<B> {}

impl<B: BatchBuffer> Drop for PatchLoader<B> {
    fn drop(&mut self) {
        self.receiver = None; // a worker blocked on a full channel gets an error and exits
        shutdown(&self.shared, &mut self.workers);
    }
}

fn shutdown<B>(shared: &Shared<B>, workers: &mut Vec<JoinHandle<()>>) {
    shared.stop.store(true, Ordering::SeqCst);
    drop(lock(&shared.yielded)); // no worker is between its window check and its wait
    shared.window_moved.notify_all();
    for worker in workers.drain(..) {
        let _ = worker.join();
    }
}

/// A worker: claim the next batch, wait for the window, build it, deliver it.
fn work<B: BatchBuffer>(shared: &Shared<B>, sender: &Sender<Delivery<B>>) {
    let mut worker = PatchWorker::default();
    loop {
        let index = shared.next_claim.fetch_add(1, Ordering::SeqCst);
        if index >= shared.batches.len() {
            return;
        }
        {
            let mut yielded = lock(&shared.yielded);
            while !shared.stop.load(Ordering::SeqCst) && index >= *yielded + shared.window {
                yielded = shared.window_moved.wait(yielded).unwrap_or_else(|p| p.into_inner());
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let result = match catch_unwind(AssertUnwindSafe(|| build_batch(shared, &mut worker, index))) {
            Ok(Some(result)) => result,
            Ok(None) => return, // stopped mid-batch
            Err(panic) => {
                worker = PatchWorker::default();
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("worker panicked");
                Err(DataError::LoaderWorker { batch: index, message: message.to_string() })
            }
        };
        if sender.send((index, result)).is_err() {
            return;
        }
    }
}

/// Builds batch `index`; `None` when the loader was dropped meanwhile.
fn build_batch<B: BatchBuffer>(
    shared: &Shared<B>,
    worker: &mut PatchWorker,
    index: usize,
) -> Option<Result<Batch<B>, DataError>> {
    let specs = &shared.batches[index];
    let size = shared.config.patch_size;
    let patch_bytes = size as usize * size as usize * 3;
    let mut pixels = (shared.alloc)(specs.len() * patch_bytes);
    let buffer = pixels.bytes_mut();
    if buffer.len() < specs.len() * patch_bytes {
        let message =
            format!("the allocator returned {} bytes, the batch needs {}", buffer.len(), specs.len() * patch_bytes);
        return Some(Err(DataError::LoaderWorker { batch: index, message }));
    }
    let mut boxes = Vec::with_capacity(specs.len());
    for (position, (spec, out)) in specs.iter().zip(buffer.chunks_exact_mut(patch_bytes)).enumerate() {
        if shared.stop.load(Ordering::Relaxed) {
            return None;
        }
        let aug = PatchAugment::sample(&shared.config.augment, &mut patch_rng(shared.config.seed, index, position));
        let image = &shared.images[spec.image];
        let style = match style_of(shared, worker, &aug, spec.image, index) {
            Ok(style) => style,
            Err(e) => return Some(Err(e)),
        };
        let style = style.as_ref().map(|(a, beta)| (a.as_ref(), *beta));
        let stain = shared.stains[spec.image].as_ref();
        match worker.produce(image, &shared.boxes[spec.image], spec, size, &aug, stain, style, out) {
            Ok(b) => boxes.push(b),
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(Batch { index, pixels, boxes, specs: specs.clone() }))
}

/// The Fourier style of a patch of `own_image` whose augmentation asks for one (none when
/// every bank entry is from the patch's own image).
fn style_of<B>(
    shared: &Shared<B>,
    worker: &mut PatchWorker,
    aug: &PatchAugment,
    own_image: usize,
    batch: usize,
) -> Result<Option<(Arc<super::fourier::LowAmplitude>, f32)>, DataError> {
    let (Some((start, beta)), Some(bank), Some(f)) = (aug.fourier, &shared.styles, &shared.config.augment.fourier)
    else {
        return Ok(None);
    };
    let Some(k) = bank.pick(start, own_image) else { return Ok(None) };
    let size = shared.config.patch_size;
    let amplitude = bank.amplitude(k, |d| {
        let (image, stain) = (&shared.images[d.image], shared.stains[d.image].as_ref());
        worker.style_amplitude(image, stain, d.x, d.y, size, f.window).map_err(|e| e.to_string())
    });
    // The worker needs the plans for the mix itself even when another worker computed the entry.
    worker.mixer(size, f.window);
    match amplitude {
        Ok(a) => Ok(Some((a, beta))),
        Err(message) => Err(DataError::LoaderWorker { batch, message: format!("Fourier style patch: {message}") }),
    }
}

fn lock(m: &Mutex<usize>) -> MutexGuard<'_, usize> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
