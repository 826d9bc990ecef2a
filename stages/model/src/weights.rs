//! Weights import (torchvision state dicts saved as safetensors) and self-describing checkpoints.
//!
//! The model's `VarStore` names equal torchvision's state-dict names, so loading is a name lookup:
//!
//! * a whole RetinaNet state dict (`backbone.body.…`, `backbone.fpn.…`, `head.…`, as torchvision 0.26
//!   writes it for v1 and v2; the pre-0.13 names `head.*.conv.{2i}.weight` and
//!   `backbone.fpn.inner_blocks.{i}.weight` are renamed as torchvision's `_load_from_state_dict` does);
//! * an ImageNet classification ResNet state dict (`conv1.weight`, `layer1.0.bn1.running_mean`, …,
//!   `fc.*` ignored), loaded into `backbone.body`.
//!
//! `num_batches_tracked` entries are ignored (frozen batch norm has no such buffer). Missing, unexpected
//! and mis-shaped tensors are reported together, by name.
//!
//! A checkpoint is a safetensors file of all variables plus the [`RetinaNetConfig`] as JSON in the
//! metadata under [`CONFIG_KEY`], so it can be rebuilt without any other file (and read by torchvision
//! with `load_state_dict(..., strict=False)`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, View};
use tch::{Device, Kind, Tensor, nn};

use crate::Error;
use crate::config::RetinaNetConfig;

/// Metadata key holding the model config JSON in a checkpoint.
pub const CONFIG_KEY: &str = "midog_model.config";
/// Metadata key naming the checkpoint format.
pub const FORMAT_KEY: &str = "midog_model.format";
/// Value of [`FORMAT_KEY`].
pub const FORMAT: &str = "retinanet-1";

/// What kind of state dict a weights file held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    /// Whole detector (`backbone.…`, `head.…`).
    RetinaNet,
    /// ImageNet classification ResNet, loaded into `backbone.body`.
    ImageNetResNet,
}

/// Result of a successful load.
#[derive(Debug)]
pub struct LoadReport {
    pub format: WeightsFormat,
    /// Variables overwritten.
    pub loaded: usize,
    /// File tensors deliberately not used (`fc.*`, `num_batches_tracked`, skipped prefixes).
    pub ignored: Vec<String>,
}

/// Named tensors in file order (sorted by name).
pub type NamedTensors = Vec<(String, Tensor)>;

/// All tensors of a safetensors file (on the CPU, in the file's dtype) and its metadata.
pub fn read_safetensors(path: &Path) -> Result<(NamedTensors, HashMap<String, String>), Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.into(), source })?;
    let st_err = |source| Error::SafeTensors { path: path.into(), source };
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(st_err)?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes).map_err(st_err)?;
    let mut out = Vec::with_capacity(st.len());
    for (name, view) in st.tensors() {
        let kind = match view.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F64 => Kind::Double,
            Dtype::I64 => Kind::Int64,
            Dtype::I32 => Kind::Int,
            Dtype::I16 => Kind::Int16,
            Dtype::I8 => Kind::Int8,
            Dtype::U8 => Kind::Uint8,
            Dtype::BOOL => Kind::Bool,
            other => {
                return Err(Error::UnsupportedDtype { path: path.into(), name, dtype: format!("{other:?}") });
            }
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, metadata))
}

/// A CPU tensor's bytes for the safetensors writer.
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn to_bytes(t: &Tensor) -> Result<Bytes, Error> {
    let dtype = match t.kind() {
        Kind::Float => Dtype::F32,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        k => return Err(Error::Torch(tch::TchError::Kind(format!("cannot save dtype {k:?}")))),
    };
    let t = t.detach().to_device(Device::Cpu).contiguous();
    let numel = t.numel();
    let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)?;
    Ok(Bytes { dtype, shape: t.size().iter().map(|&d| d as usize).collect(), data })
}

/// Named tensors (any device) and string metadata as the bytes of a safetensors file.
pub fn safetensors_bytes(tensors: &[(String, Tensor)], metadata: HashMap<String, String>) -> Result<Vec<u8>, Error> {
    let bytes: Vec<(String, Bytes)> =
        tensors.iter().map(|(n, t)| Ok((n.clone(), to_bytes(t)?))).collect::<Result<_, Error>>()?;
    let views = bytes.iter().map(|(n, b)| (n.as_str(), b));
    safetensors::serialize(views, Some(metadata)).map_err(Error::SafeTensorsEncode)
}

/// Writes named tensors (any device) and string metadata as a safetensors file. Encoding happens
/// in memory first, so a failed write (a full disk) is an I/O error naming the file. Not atomic:
/// the train stage commits its checkpoints as a whole directory.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<(), Error> {
    let bytes = safetensors_bytes(tensors, metadata)?;
    std::fs::write(path, bytes).map_err(|source| Error::Io { path: path.into(), source })
}

/// torchvision's pre-0.13 names → current names (`conv.{2i}.w` → `conv.{i}.0.w` in the heads,
/// `inner_blocks.{i}.w` → `inner_blocks.{i}.0.w` in the FPN).
fn modernise_name(name: &str) -> Cow<'_, str> {
    let parts: Vec<&str> = name.split('.').collect();
    let n = parts.len();
    let leaf = parts.last().copied().unwrap_or("");
    if n >= 4 && (leaf == "weight" || leaf == "bias") {
        let block = parts[n - 3];
        if let Ok(i) = parts[n - 2].parse::<usize>() {
            let prefix = parts[..n - 3].join(".");
            let head = parts.first() == Some(&"head") && block == "conv" && i % 2 == 0;
            let fpn = parts.contains(&"fpn") && (block == "inner_blocks" || block == "layer_blocks");
            if head {
                return Cow::Owned(format!("{prefix}.conv.{}.0.{leaf}", i / 2));
            }
            if fpn {
                return Cow::Owned(format!("{prefix}.{block}.{i}.0.{leaf}"));
            }
        }
    }
    Cow::Borrowed(name)
}

/// Loads a weights file (see the module docs for the accepted layouts) into `vs`.
///
/// `skip`: variable-name prefixes that are neither required nor loaded (e.g.
/// `"head.classification_head.cls_logits"` to fine-tune COCO weights with another class count).
pub fn load_weights(vs: &nn::VarStore, path: &Path, skip: &[&str]) -> Result<LoadReport, Error> {
    let (tensors, _) = read_safetensors(path)?;
    load_state_dict(vs, tensors, path, skip)
}

/// Loads `cfg.backbone_weights` into a freshly built model when set (`cfg.backbone_weights_skip`
/// prefixes excluded), and logs what was loaded. Every detector's `build` calls this.
pub fn load_initial_weights(vs: &nn::VarStore, cfg: &RetinaNetConfig) -> Result<(), Error> {
    let Some(path) = &cfg.backbone_weights else { return Ok(()) };
    let skip: Vec<&str> = cfg.backbone_weights_skip.iter().map(String::as_str).collect();
    let report = load_weights(vs, path, &skip)?;
    tracing::info!(
        path = %path.display(),
        format = ?report.format,
        loaded = report.loaded,
        ignored = report.ignored.len(),
        "loaded initial weights"
    );
    Ok(())
}

/// Loads named tensors (a torchvision state dict) into `vs`; `source` names them in errors.
pub fn load_state_dict(
    vs: &nn::VarStore,
    tensors: Vec<(String, Tensor)>,
    source: &Path,
    skip: &[&str],
) -> Result<LoadReport, Error> {
    let vars = vs.variables();
    let is_detector = tensors.iter().any(|(n, _)| n.starts_with("backbone.") || n.starts_with("head."));
    let format = if is_detector { WeightsFormat::RetinaNet } else { WeightsFormat::ImageNetResNet };
    let skipped = |n: &str| skip.iter().any(|p| n.starts_with(p));

    let mut ignored = Vec::new();
    // model name → (name in the file, tensor)
    let mut file: BTreeMap<String, (String, Tensor)> = BTreeMap::new();
    for (name, t) in tensors {
        let mapped = match format {
            WeightsFormat::RetinaNet => modernise_name(&name).into_owned(),
            WeightsFormat::ImageNetResNet => format!("backbone.body.{name}"),
        };
        let is_fc = format == WeightsFormat::ImageNetResNet && name.starts_with("fc.");
        if name.ends_with("num_batches_tracked") || is_fc || skipped(&mapped) {
            ignored.push(name);
        } else {
            file.insert(mapped, (name, t));
        }
    }
    let expected: Vec<&String> = vars
        .keys()
        .filter(|n| !skipped(n))
        .filter(|n| format == WeightsFormat::RetinaNet || n.starts_with("backbone.body."))
        .collect();
    let expected_set: HashSet<&str> = expected.iter().map(|s| s.as_str()).collect();
    let mut missing: Vec<String> =
        expected.iter().filter(|n| !file.contains_key(n.as_str())).map(|n| n.to_string()).collect();
    let unexpected: Vec<String> =
        file.iter().filter(|(n, _)| !expected_set.contains(n.as_str())).map(|(_, (orig, _))| orig.clone()).collect();
    let mut mis_shaped = Vec::new();
    for (name, (orig, t)) in &file {
        if let Some(v) = vars.get(name)
            && v.size() != t.size()
        {
            mis_shaped.push(format!("{orig}: file {:?}, model {:?}", t.size(), v.size()));
        }
    }
    missing.sort();
    if !missing.is_empty() || !unexpected.is_empty() || !mis_shaped.is_empty() {
        return Err(Error::WeightsMismatch { path: source.to_path_buf(), missing, unexpected, mis_shaped });
    }
    let _guard = tch::no_grad_guard();
    for (name, (_, t)) in &file {
        if let Some(v) = vars.get(name) {
            let mut v = v.shallow_clone();
            v.f_copy_(t)?;
        }
    }
    Ok(LoadReport { format, loaded: file.len(), ignored })
}

/// Saves every variable of `vs` with `cfg` (JSON) in the metadata; `extra` metadata is added as is.
pub fn save_checkpoint(
    vs: &nn::VarStore,
    cfg: &RetinaNetConfig,
    path: &Path,
    extra: &HashMap<String, String>,
) -> Result<(), Error> {
    let bytes = checkpoint_bytes(vs, cfg, extra)?;
    std::fs::write(path, bytes).map_err(|source| Error::Io { path: path.into(), source })
}

/// The bytes of the checkpoint [`save_checkpoint`] writes, for callers that write it themselves.
pub fn checkpoint_bytes(
    vs: &nn::VarStore,
    cfg: &RetinaNetConfig,
    extra: &HashMap<String, String>,
) -> Result<Vec<u8>, Error> {
    let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut meta = extra.clone();
    meta.insert(CONFIG_KEY.into(), serde_json::to_string(cfg).map_err(|e| Error::Config(e.to_string()))?);
    meta.insert(FORMAT_KEY.into(), FORMAT.into());
    safetensors_bytes(&tensors, meta)
}

/// The config stored in a checkpoint's metadata.
pub fn checkpoint_config(path: &Path, metadata: &HashMap<String, String>) -> Result<RetinaNetConfig, Error> {
    let bad = |message: String| Error::Checkpoint { path: PathBuf::from(path), message };
    let json = metadata
        .get(CONFIG_KEY)
        .ok_or_else(|| bad(format!("no `{CONFIG_KEY}` metadata: not a checkpoint written by midog-model")))?;
    let cfg: RetinaNetConfig = serde_json::from_str(json).map_err(|e| bad(format!("config metadata: {e}")))?;
    cfg.validate().map_err(|e| bad(e.to_string()))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names() {
        assert_eq!(
            modernise_name("head.classification_head.conv.6.weight"),
            "head.classification_head.conv.3.0.weight"
        );
        assert_eq!(modernise_name("head.regression_head.conv.2.0.weight"), "head.regression_head.conv.2.0.weight");
        assert_eq!(modernise_name("backbone.fpn.inner_blocks.1.bias"), "backbone.fpn.inner_blocks.1.0.bias");
        assert_eq!(modernise_name("backbone.fpn.layer_blocks.1.0.bias"), "backbone.fpn.layer_blocks.1.0.bias");
        assert_eq!(modernise_name("backbone.body.layer1.0.conv1.weight"), "backbone.body.layer1.0.conv1.weight");
        assert_eq!(
            modernise_name("head.classification_head.cls_logits.weight"),
            "head.classification_head.cls_logits.weight"
        );
    }

    #[test]
    fn a_full_disk_is_reported_as_a_write_error_naming_the_file() {
        // /dev/full answers every write with ENOSPC, as a full file system does.
        let t = Tensor::from_slice(&[1f32; 1024]);
        let e = write_safetensors(Path::new("/dev/full"), &[("t".into(), t)], HashMap::new()).unwrap_err();
        assert!(matches!(&e, Error::Io { source, .. } if source.raw_os_error() == Some(28)), "{e:?}");
        let text = e.to_string();
        assert!(text.starts_with("/dev/full: ") && text.contains("No space left on device"), "{text}");
        assert!(!text.contains("safetensors"), "{text}");
    }

    #[test]
    fn safetensors_roundtrip_with_metadata() {
        let dir = std::env::temp_dir().join(format!("midog-model-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.safetensors");
        let a = Tensor::from_slice(&[1f32, 2., 3., 4.]).reshape([2, 2]);
        let b = Tensor::from_slice(&[7i64, 8]);
        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        write_safetensors(&p, &[("a".into(), a.shallow_clone()), ("b".into(), b.shallow_clone())], meta).unwrap();
        let (t, m) = read_safetensors(&p).unwrap();
        assert_eq!(m["k"], "v");
        assert_eq!(t[0].0, "a");
        assert!(t[0].1.equal(&a) && t[1].1.equal(&b));
        let garbage = dir.join("g.safetensors");
        std::fs::write(&garbage, b"not a safetensors file").unwrap();
        let e = read_safetensors(&garbage).unwrap_err().to_string();
        assert!(e.contains("g.safetensors") && e.contains("safetensors"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
