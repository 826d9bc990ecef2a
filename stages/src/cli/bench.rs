//! `pipeline bench loader`: patches/s of the patch loader, side by side with an openslide-python
//! + numpy loader doing the same work (stages/data/bench/openslide_loader.py).
//!
//! `pipeline bench bootstrap`: what the score stage's bootstrap intervals cost on a test set.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;
use midog_data::loader::{AugmentConfig, FourierMix, LoaderBenchConfig, bench_loader};

#[derive(Args, Debug)]
pub struct LoaderBenchArgs {
    /// TIFF files, or a dataset directory (every *.tif / *.tiff in it).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Thread counts to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    #[arg(long, default_value_t = 40)]
    pub batches: usize,
    #[arg(long, default_value_t = 12)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 512)]
    pub patch_size: u32,
    /// Also run the openslide + numpy baseline with this Python (needs openslide-python, numpy, pillow).
    #[arg(long, value_name = "PYTHON")]
    pub python: Option<PathBuf>,
    /// Fourier-domain mixing on every patch with this blend ratio β (both sides), styles from a
    /// bank of `--fourier-bank` random patches of the other files.
    #[arg(long, value_name = "BETA")]
    pub fourier: Option<f32>,
    /// Low-frequency window of Fourier mixing (fraction of the patch side).
    #[arg(long, default_value_t = 0.05)]
    pub fourier_window: f32,
    /// Style patches in the Fourier bank.
    #[arg(long, default_value_t = 64)]
    pub fourier_bank: usize,
}

fn files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for i in inputs {
        if i.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(i)
                .with_context(|| format!("reading {}", i.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "tif" || e == "tiff"))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(i.clone());
        }
    }
    if out.is_empty() {
        bail!("no TIFF files given");
    }
    Ok(out)
}

pub fn run(a: LoaderBenchArgs) -> Result<()> {
    let paths = files(&a.inputs)?;
    let fourier = a.fourier.map(|beta| FourierMix {
        beta,
        window: a.fourier_window,
        probability: 1.0,
        bank_size: a.fourier_bank,
        style_images: [0, paths.len()],
    });
    if fourier.is_some() && paths.len() < 2 {
        bail!("--fourier mixes with patches of other files: give at least two");
    }
    let cfg = LoaderBenchConfig {
        patch_size: a.patch_size,
        batch_size: a.batch_size,
        batches: a.batches,
        threads: a.threads.clone(),
        augment: AugmentConfig { fourier, ..AugmentConfig::STANDARD },
        ..LoaderBenchConfig::default()
    };
    println!(
        "patch loader: {} files, {} batches of {} × {} px patches, augmented{}",
        paths.len(),
        a.batches,
        a.batch_size,
        a.patch_size,
        match a.fourier {
            Some(beta) => format!(" + Fourier mixing (β {beta}, window {}, bank {})", a.fourier_window, a.fourier_bank),
            None => String::new(),
        }
    );
    let ours = bench_loader(&paths, &cfg)?;
    for r in &ours {
        println!("  ours     {r}");
    }
    let Some(python) = &a.python else { return Ok(()) };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/data/bench/openslide_loader.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg("--workers")
        .args(a.threads.iter().map(|t| t.to_string()))
        .arg("--batches")
        .arg(a.batches.to_string())
        .arg("--batch-size")
        .arg(a.batch_size.to_string())
        .arg("--patch-size")
        .arg(a.patch_size.to_string());
    if let Some(beta) = a.fourier {
        cmd.args(["--fourier".into(), beta.to_string(), "--fourier-window".into(), a.fourier_window.to_string()])
            .args(["--fourier-bank".to_string(), a.fourier_bank.to_string()]);
    }
    cmd.args(&paths);
    let out = cmd.output().with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!("the openslide baseline failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let theirs: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("openslide_loader").and_then(|r| r.as_array()).cloned())
        .unwrap_or_default();
    for t in &theirs {
        let workers = t["workers"].as_u64().unwrap_or(0) as usize;
        let pps = t["patches_per_s"].as_f64().unwrap_or(f64::NAN);
        let ratio = ours.iter().find(|r| r.threads == workers).map(|r| r.patches_per_s / pps);
        println!(
            "  openslide {workers} worker(s): {pps:.1} patches/s  → ours is {}",
            ratio.map(|r| format!("{r:.2}× faster")).unwrap_or_else(|| "not comparable".into())
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct BootstrapBenchArgs {
    /// Test images (spread over three scanners, as MIDOG's labelled ones).
    #[arg(long, default_value_t = 200)]
    pub images: usize,
    #[arg(long, default_value_t = midog_eval::bootstrap::DEFAULT_RESAMPLES)]
    pub resamples: usize,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 7)]
    pub repeats: usize,
    /// Thread counts to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
}

/// Times the intervals the score stage adds for one split (every scanner's row and the overall
/// row) and one paired comparison of two models over the same rows, on per-image counts drawn
/// like a detector's (a few figures per image, some images without any).
pub fn run_bootstrap(a: BootstrapBenchArgs) -> Result<()> {
    use midog_eval::{Bootstrap, Counts};
    use rand::{Rng, SeedableRng};
    if a.images < 2 || a.repeats == 0 {
        bail!("--images must be at least 2 and --repeats at least 1");
    }
    let plan = Bootstrap::new(a.resamples, midog_eval::bootstrap::DEFAULT_LEVEL, 0)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut draw = || {
        let gt = rng.random_range(0..12u64);
        let tp = rng.random_range(0..=gt);
        Counts::new(tp, rng.random_range(0..5), gt - tp)
    };
    let a_counts: Vec<Counts> = (0..a.images).map(|_| draw()).collect();
    // The second model sees the same figures and finds a different share of them.
    let b_counts: Vec<Counts> = a_counts
        .iter()
        .map(|c| {
            let tp = rng.random_range(0..=c.ground_truth());
            Counts::new(tp, rng.random_range(0..5), c.ground_truth() - tp)
        })
        .collect();
    let scanners = ["XR", "S360", "CS2"];
    let rows: Vec<(String, Vec<usize>)> = std::iter::once(("test/all".to_string(), (0..a.images).collect()))
        .chain(scanners.iter().enumerate().map(|(k, s)| (format!("test/{s}"), (k..a.images).step_by(3).collect())))
        .collect();
    println!(
        "bootstrap: {} test images ({} rows: all + {} scanners), {} resamples, F1/precision/recall intervals + paired F1 difference",
        a.images,
        rows.len(),
        scanners.len(),
        a.resamples
    );
    for &threads in &a.threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build()?;
        let time = |f: &(dyn Fn() + Sync)| {
            let mut t: Vec<f64> = (0..a.repeats)
                .map(|_| {
                    let start = std::time::Instant::now();
                    pool.install(f);
                    start.elapsed().as_secs_f64()
                })
                .collect();
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        };
        let intervals = time(&|| {
            for (label, idx) in &rows {
                let row: Vec<Counts> = idx.iter().map(|&i| a_counts[i]).collect();
                let i = plan.intervals(&row, Bootstrap::stream(label));
                assert!(i.is_ok(), "{label}: {i:?}");
            }
        });
        let paired = time(&|| {
            for (label, idx) in &rows {
                let side = |c: &[Counts]| vec![idx.iter().map(|&i| c[i]).collect::<Vec<_>>()];
                let d = plan.paired_f1_difference(&side(&a_counts), &side(&b_counts), Bootstrap::stream(label));
                assert!(d.is_ok(), "{label}: {d:?}");
            }
        });
        println!(
            "  {threads} thread(s): score-stage intervals {:.1} ms, paired comparison of two models {:.1} ms (median of {})",
            intervals * 1e3,
            paired * 1e3,
            a.repeats
        );
    }
    Ok(())
}
