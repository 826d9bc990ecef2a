//! Bad domain-generalisation input ends in one message naming the experiment file, the line and
//! the key: a Fourier β outside [0, 1] (found when the file is read), domain-adversarial training
//! without unlabelled images or without a second domain (found when the train stage starts).

mod common;

use common::*;

const BASE: &str = r#"[experiment]
name = "dg-errors"

[stages.dataset]
synthetic = { images_per_scanner = 3, scale = 0.06, density = 60, seed = 3, scanners = ["XR", "S360"] }

[stages.split]
preset = "stratified"
val_fraction = 0.34
test_fraction = 0.34

[stages.sample]
patch_size = 128
patches_per_image = 2

[stages.train]
fpn_levels = "p3p5"
fpn_channels = 32
head_channels = 32
head_convs = 1
anchor_sizes = [32.0, 64.0, 128.0]
batch_size = 2
epochs = 1
"#;

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no `{needle}`")) + 1
}

fn fails_with(p: &Project, file: &str, text: &str, dry: bool) -> String {
    p.write(file, text);
    let mut args = vec!["run", file];
    if dry {
        args.push("--dry-run");
    }
    let out = p.run(&args);
    assert!(!out.status.success(), "{file} should fail:\n{}", stdout(&out));
    format!("{}\n{}", stdout(&out), stderr(&out))
}

#[test]
fn bad_domain_generalisation_input_names_file_line_and_key() {
    let p = Project::new(pipeline_bin());

    let text = format!("{BASE}\n[stages.train.augment.fourier]\nbeta = 1.5\n");
    let e = fails_with(&p, "beta.toml", &text, true);
    let at = format!("beta.toml:{}", line_of(&text, "beta = 1.5"));
    assert!(e.contains(&at) && e.contains("stages.train.augment.fourier.beta") && e.contains("[0, 1]"), "{e}");

    // XR + S360 only: no unlabelled images to add to the batches.
    let text = format!("{BASE}\n[stages.train.domain_adversarial]\nunlabelled_per_batch = 4\n");
    let e = fails_with(&p, "no-unlabelled.toml", &text, false);
    let at = format!("no-unlabelled.toml:{}", line_of(&text, "unlabelled_per_batch = 4"));
    assert!(
        e.contains(&at)
            && e.contains("stages.train.domain_adversarial.unlabelled_per_batch")
            && e.contains("no unlabelled images"),
        "{e}"
    );

    // One training scanner and no unlabelled patches: a single domain.
    let text = BASE.replace("test_fraction = 0.34", "test_fraction = 0.34\ntrain_scanners = [\"XR\"]")
        + "\n[stages.train.domain_adversarial]\nunlabelled_per_batch = 0\n";
    let e = fails_with(&p, "one-domain.toml", &text, false);
    let at = format!("one-domain.toml:{}", line_of(&text, "[stages.train.domain_adversarial]"));
    assert!(e.contains(&at) && e.contains("stages.train.domain_adversarial") && e.contains("two domains"), "{e}");
}
