//! `pipeline weights fetch`, offline: a torchvision ResNet state dict made here (seeded, no
//! download) is converted by the real `pipeline-torch`, read back with the `safetensors` package
//! (an independent reader) and loaded into the train stage's model. The download path is
//! checked without a network: the URL it tries is torchvision's own for that backbone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../src/python_env.rs"]
mod python;
use python::pipeline_python;

const HINT: &str = "this test needs the pipeline's Python environment with torch 2.11.0, torchvision 0.26.0 and \
                    safetensors: install it with `bin/install-python-env --extras` (bin/test does), or point \
                    PIPELINE_PYTHON at a Python that has them";

fn pipeline_torch() -> PathBuf {
    std::env::var_os("PIPELINE_TORCH_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pipeline-torch")))
}

fn python(script: &str, dir: &Path) -> String {
    let out = Command::new(pipeline_python())
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); {HINT}", pipeline_python().display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{HINT}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fetch(dir: &Path, args: &[&str]) -> Output {
    Command::new(pipeline_torch())
        .args(["weights", "fetch"])
        .args(args)
        .current_dir(dir)
        .env("PIPELINE_PYTHON", pipeline_python())
        .output()
        .expect("spawn pipeline-torch")
}

#[test]
fn a_local_torchvision_state_dict_is_converted_read_back_and_loaded() {
    let dir = tempfile::tempdir().unwrap();
    // A torchvision ResNet-18 as its ImageNet weights are laid out (fc and num_batches_tracked
    // included), with seeded random values.
    python(
        "import torch, torchvision\ntorch.manual_seed(7)\nm = torchvision.models.resnet18()\n\
         torch.save(m.state_dict(), 'r18.pth')",
        dir.path(),
    );
    let out = fetch(dir.path(), &["resnet18", "--from", "r18.pth", "-o", "weights"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let file = dir.path().join("weights/resnet18-imagenet.safetensors");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("backbone_weights = \"{}\"\n", file.display()),
        "the line to paste"
    );
    assert!(
        stderr.contains("122 tensors") && stderr.contains("100 load into the train stage's resnet18 backbone"),
        "{stderr}"
    );
    let left: Vec<_> =
        std::fs::read_dir(dir.path().join("weights")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 1, "no temporary left: {left:?}");

    // The safetensors package reads back every tensor of the state dict, bit for bit.
    let check = python(
        "import torch\nfrom safetensors import safe_open\n\
         sd = torch.load('r18.pth', weights_only=True)\n\
         f = safe_open('weights/resnet18-imagenet.safetensors', 'pt')\n\
         assert sorted(f.keys()) == sorted(sd), set(f.keys()) ^ set(sd)\n\
         for k, v in sd.items():\n    t = f.get_tensor(k)\n    assert t.dtype == v.dtype and torch.equal(t, v), k\n\
         print(f.metadata()['source'], f'{sd[\"conv1.weight\"].double().sum().item():.17g}')",
        dir.path(),
    );
    let (source, sum) = check.trim().split_once(' ').unwrap();
    assert_eq!(source, "r18.pth");

    // The train stage's model loads it: its stem holds the state dict's values.
    let cfg = midog_model::DetectorConfig::RetinaNet(midog_model::RetinaNetConfig {
        trunk: midog_model::TrunkConfig {
            backbone: midog_model::BackboneKind::Resnet18,
            backbone_weights: Some(file.clone()),
            ..Default::default()
        },
        ..Default::default()
    });
    let (vs, _) = midog_model::build_detector(&cfg, tch::Device::Cpu).unwrap();
    let conv1 = &vs.variables()["backbone.body.conv1.weight"];
    let ours = conv1.to_kind(tch::Kind::Double).sum(tch::Kind::Double).double_value(&[]);
    assert_eq!(ours, sum.parse::<f64>().unwrap());
}

#[test]
fn weights_that_do_not_fit_the_backbone_are_refused_and_nothing_is_left() {
    let dir = tempfile::tempdir().unwrap();
    python("import torch, torchvision\ntorch.save(torchvision.models.resnet18().state_dict(), 'r18.pth')", dir.path());
    let out = fetch(dir.path(), &["resnet34", "--from", "r18.pth", "-o", "weights"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("does not fit the train stage's resnet34 backbone") && stderr.contains("missing"),
        "{stderr}"
    );
    assert!(!dir.path().join("weights").exists(), "a failed fetch leaves nothing");
    let out = fetch(dir.path(), &["resnet18", "--from", "nothing.pth"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from nothing.pth: no such file"));
}

#[test]
fn downloads_come_from_torchvisions_published_imagenet_weights() {
    let dir = tempfile::tempdir().unwrap();
    let urls = python(
        "import torchvision.models as m\n\
         for w in (m.ResNet18_Weights, m.ResNet34_Weights, m.ResNet50_Weights): print(w.IMAGENET1K_V1.url)",
        dir.path(),
    );
    for (backbone, url) in ["resnet18", "resnet34", "resnet50"].iter().zip(urls.lines()) {
        // No network in a test: a proxy nobody listens on makes the download fail at once.
        let out = Command::new(pipeline_torch())
            .args(["weights", "fetch", backbone, "-o", "w"])
            .current_dir(dir.path())
            .env("PIPELINE_PYTHON", pipeline_python())
            .env("https_proxy", "http://127.0.0.1:9")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("TORCH_HOME", dir.path().join("torch-home"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&format!("cannot download {url}")), "{backbone}: {stderr}");
        assert!(stderr.contains("use --from"), "{stderr}");
        assert!(!dir.path().join("w").exists());
    }
}
