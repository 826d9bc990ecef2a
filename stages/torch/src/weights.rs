//! `pipeline weights fetch`: torchvision's ImageNet weights of a ResNet as the safetensors file
//! the train stage's `backbone_weights` loads.
//!
//! The pipeline's Python (torch only, no torchvision needed) downloads the published file into
//! torch's hub cache, checking the sha256 prefix in its name as torchvision does, and writes the
//! state dict as safetensors under a temporary name (`weights_fetch.py`). This side then builds
//! the train stage's RetinaNet with that backbone and loads the file into it (names and shapes
//! checked), and only then renames it into place.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use midog_model::weights::WeightsFormat;
use midog_model::{BackboneKind, DetectorConfig, RetinaNetConfig, TrunkConfig};
use stages::cli::{WeightsBackbone, WeightsFetchArgs};

const SCRIPT: &str = include_str!("weights_fetch.py");

/// torchvision's ImageNet-1k weights (`IMAGENET1K_V1`, what its detection models start from).
/// The 8 hex digits in each name are the start of the file's sha256.
pub fn published(backbone: WeightsBackbone) -> (BackboneKind, &'static str) {
    match backbone {
        WeightsBackbone::Resnet18 => {
            (BackboneKind::Resnet18, "https://download.pytorch.org/models/resnet18-f37072fd.pth")
        }
        WeightsBackbone::Resnet34 => {
            (BackboneKind::Resnet34, "https://download.pytorch.org/models/resnet34-b627a593.pth")
        }
        WeightsBackbone::Resnet50 => {
            (BackboneKind::Resnet50, "https://download.pytorch.org/models/resnet50-0676ba61.pth")
        }
    }
}

pub fn fetch(a: &WeightsFetchArgs) -> Result<()> {
    let (kind, url) = published(a.backbone);
    let name = kind.name();
    let source = match &a.from {
        Some(p) if !p.is_file() => bail!("--from {}: no such file", p.display()),
        Some(p) => p.to_string_lossy().into_owned(),
        None => url.to_string(),
    };
    let created = !a.output.exists();
    std::fs::create_dir_all(&a.output).with_context(|| format!("creating {}", a.output.display()))?;
    let out = a.output.join(format!("{name}-imagenet.safetensors"));
    let partial = a.output.join(format!(".{name}-imagenet.safetensors.partial.{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let meta = serde_json::json!({"source": source, "backbone": name, "written_by": "pipeline weights fetch"});
    let result = convert(&source, &partial, &meta).and_then(|tensors| check(kind, &partial).map(|n| (tensors, n)));
    let (tensors, loaded) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            if created {
                let _ = std::fs::remove_dir(&a.output);
            }
            return Err(e);
        }
    };
    // torch maps the file with mode 0600; weights are no secret.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("{}", partial.display()))?;
    std::fs::rename(&partial, &out).with_context(|| format!("renaming into {}", out.display()))?;
    if let Ok(dir) = std::fs::File::open(&a.output) {
        let _ = dir.sync_all();
    }
    let from = if a.from.is_some() { source.clone() } else { format!("{url}, sha256 checked") };
    eprintln!(
        "wrote {} ({tensors} tensors from {from}); {loaded} load into the train stage's {name} backbone",
        out.display()
    );
    eprintln!("paste into [stages.train] (a relative path resolves against the experiment file):");
    let abs = std::path::absolute(&out).unwrap_or(out);
    println!("backbone_weights = {}", toml::Value::String(abs.display().to_string()));
    Ok(())
}

/// Runs the conversion in the pipeline's Python; returns the number of tensors written.
fn convert(source: &str, partial: &Path, meta: &serde_json::Value) -> Result<usize> {
    let python = crate::python_env::pipeline_python();
    let out = Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(source)
        .arg(partial)
        .arg(meta.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| {
            format!(
                "cannot run the pipeline's Python {} (set PIPELINE_PYTHON, or run through bin/pipeline)",
                python.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "converting {source} failed (see above){}",
            if source.starts_with("https://") {
                "; without internet, download the file elsewhere and use --from"
            } else {
                ""
            }
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().with_context(|| format!("unexpected output of the conversion: {text}"))
}

/// Loads the file into the train stage's model with this backbone; returns the tensors used.
fn check(kind: BackboneKind, file: &Path) -> Result<usize> {
    let cfg = DetectorConfig::RetinaNet(RetinaNetConfig {
        trunk: TrunkConfig { backbone: kind, ..TrunkConfig::default() },
        ..RetinaNetConfig::default()
    });
    let (vs, _net) = midog_model::build_detector(&cfg, tch::Device::Cpu)?;
    let report = midog_model::weights::load_weights(&vs, file, &[])
        .with_context(|| format!("the converted file does not fit the train stage's {} backbone", kind.name()))?;
    if report.format != WeightsFormat::ImageNetResNet {
        bail!("{}: a whole detector's state dict, not an ImageNet {}", file.display(), kind.name());
    }
    Ok(report.loaded)
}
