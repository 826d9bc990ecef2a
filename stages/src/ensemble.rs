//! The ensemble stage: the detections of several models merged into one set, scored like any
//! other (`midog_eval::ensemble`: points of different members within `radius_px` are one
//! cluster, its score the mean over the members, a member that missed it counting 0). Members
//! are its `needs`: the same stage in every replicate or fold (`needs = ["nms@replicate"]`), or
//! named stages (`needs = ["nms", "nms_r50"]`).
//!
//! Every member must have been tested on the same images. A validation image is merged over the
//! members that inferred it, so an ensemble of cross-validation folds (each fold validating on
//! its own images) has every training-pool image once, from the model that did not train on it:
//! a threshold chosen there is chosen on out-of-fold predictions.

use std::collections::{BTreeMap, BTreeSet};

use engine::{Artifact, ParamError, StageContext, StageDef, StageError};
use midog_eval::Detection;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifact::inferred::{self, InferredImage, InferredImages, Role};
use crate::artifact::tables::{DETECTIONS_FILE, Detections};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EnsembleParams {
    /// Points of different members closer than this (pixels) are one detection.
    pub radius_px: f64,
    /// The same radius in µm (converted with each image's resolution); overrides `radius_px`.
    pub radius_um: Option<f64>,
}

impl Default for EnsembleParams {
    fn default() -> Self {
        EnsembleParams { radius_px: 25.0, radius_um: None }
    }
}

pub struct EnsembleStage;

impl StageDef for EnsembleStage {
    type Params = EnsembleParams;
    const KIND: &'static str = "ensemble";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "merges several models' detections (a stage in every replicate or fold, or named stages): mean score per cluster";
    const NEEDS: &'static [&'static str] = &[];
    const MIN_NEEDS: usize = 1;

    fn validate(p: &EnsembleParams) -> Result<(), ParamError> {
        if !(p.radius_px >= 0.0 && p.radius_px.is_finite()) {
            return Err(ParamError::new(&["radius_px"], "must be a non-negative number of pixels"));
        }
        if p.radius_um.is_some_and(|r| !(r >= 0.0 && r.is_finite())) {
            return Err(ParamError::new(&["radius_um"], "must be a non-negative number of µm"));
        }
        Ok(())
    }
}

/// A member as messages name it: its stage, and its variant when it comes from another one.
fn label(a: &Artifact, ctx: &StageContext) -> String {
    if a.variant.is_empty() || a.variant == ctx.variant {
        format!("`{}`", a.name)
    } else {
        format!("`{}` [{}]", a.name, a.variant)
    }
}

/// An error about the members, pointing at the stage's `needs`.
fn members_error(ctx: &StageContext, message: String) -> StageError {
    let at = ctx.location.as_deref().map(|l| format!("{l}: ")).unwrap_or_default();
    StageError::msg(format!("{at}stage `{}` (`stages.{}.needs`): {message}", ctx.name, ctx.name))
}

struct Member<'a> {
    artifact: &'a Artifact,
    images: InferredImages,
    detections: Detections,
}

pub fn run(p: &EnsembleParams, ctx: &StageContext) -> Result<(), StageError> {
    if ctx.inputs.is_empty() {
        return Err(members_error(ctx, "an ensemble needs members: list them in `needs`".into()));
    }
    let mut members: Vec<Member> = Vec::new();
    for a in &ctx.inputs {
        if !inferred::has_detections(&a.dir) {
            return Err(members_error(
                ctx,
                format!(
                    "member {} (kind `{}`) has no detections (detections.parquet and images.json, as nms and blob_baseline write them)",
                    label(a, ctx),
                    a.kind
                ),
            ));
        }
        members.push(Member {
            artifact: a,
            images: InferredImages::load(&a.dir)?,
            detections: Detections::read(&a.dir.join(DETECTIONS_FILE))?,
        });
    }
    // Member order by key: the output is a function of the key alone.
    members.sort_by(|a, b| a.artifact.key.cmp(&b.artifact.key));
    members.dedup_by(|a, b| a.artifact.key == b.artifact.key);

    let test_of = |m: &Member| -> BTreeSet<u32> {
        m.images.images.iter().filter(|i| i.role == Role::Test).map(|i| i.id).collect()
    };
    let reference = test_of(&members[0]);
    for m in &members[1..] {
        let these = test_of(m);
        if these != reference {
            let only: Vec<String> = reference.symmetric_difference(&these).take(5).map(|id| id.to_string()).collect();
            return Err(members_error(
                ctx,
                format!(
                    "its members were not scored on the same images: {} tested {} images, {} tested {} (differing ids: {}); \
                     an ensemble merges models of the same test images, so its members must share the split's test set",
                    label(members[0].artifact, ctx),
                    reference.len(),
                    label(m.artifact, ctx),
                    these.len(),
                    only.join(", ")
                ),
            ));
        }
    }

    // Every image any member inferred, with the members that did; one role per image.
    let mut images: BTreeMap<u32, (InferredImage, Vec<usize>)> = BTreeMap::new();
    for (k, m) in members.iter().enumerate() {
        for img in &m.images.images {
            let entry = images.entry(img.id).or_insert_with(|| (img.clone(), Vec::new()));
            if entry.0.role != img.role {
                return Err(members_error(
                    ctx,
                    format!(
                        "image {} is a {} image of {} but a {} image of {}",
                        img.id,
                        entry.0.role.as_str(),
                        label(members[entry.1[0]].artifact, ctx),
                        img.role.as_str(),
                        label(m.artifact, ctx)
                    ),
                ));
            }
            entry.1.push(k);
        }
    }

    let mut out = Detections::default();
    let mut agreeing = 0u64;
    for (id, (img, who)) in &images {
        ctx.check_cancelled()?;
        let radius = p.radius_um.map(|um| um / img.um_per_px).unwrap_or(p.radius_px);
        let dets: Vec<Vec<Detection>> = who.iter().map(|&k| members[k].detections.of_image(*id)).collect();
        let slices: Vec<&[Detection]> = dets.iter().map(Vec::as_slice).collect();
        for m in midog_eval::ensemble::merge(&slices, radius) {
            agreeing += u64::from(m.votes == who.len() && who.len() > 1);
            out.push(*id, m.detection.x, m.detection.y, m.detection.score);
        }
    }
    ctx.set_summary("members", members.len() as u64);
    ctx.set_summary("detections", out.score.len() as u64);
    ctx.set_summary("found_by_every_member", agreeing);
    tracing::info!(
        "{} members, {} merged detections ({} found by every member that saw the image)",
        members.len(),
        out.score.len(),
        agreeing
    );
    InferredImages { images: images.into_values().map(|(img, _)| img).collect() }.save(ctx.out_dir())?;
    out.write(&ctx.out_dir().join(DETECTIONS_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::StageKey;

    fn image(id: u32, role: Role) -> InferredImage {
        InferredImage {
            id,
            file_name: format!("{id:03}.tiff"),
            role,
            scanner: "XR".into(),
            um_per_px: 0.23,
            width: 500,
            height: 400,
            tiles: 1,
            seconds: 0.0,
        }
    }

    /// A member's output directory, as nms writes it.
    fn member(root: &std::path::Path, name: &str, images: &[InferredImage], dets: &[(u32, f64, f64, f64)]) -> Artifact {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        InferredImages { images: images.to_vec() }.save(&dir).unwrap();
        let mut d = Detections::default();
        for &(id, x, y, s) in dets {
            d.push(id, x, y, s);
        }
        d.write(&dir.join(DETECTIONS_FILE)).unwrap();
        let key = engine::KeyInputs {
            kind: "nms".into(),
            version: 1,
            params: serde_json::json!({ "name": name }),
            upstream: vec![],
            external: vec![],
            names: None,
        }
        .key();
        Artifact { name: "nms".into(), variant: format!("v-{name}"), kind: "nms".into(), key, dir }
    }

    fn run_on(root: &std::path::Path, inputs: Vec<Artifact>) -> Result<(InferredImages, Detections), StageError> {
        let ctx = StageContext::detached("ensemble", "ensemble", inputs, root);
        std::fs::create_dir_all(ctx.out_dir()).unwrap();
        run(&EnsembleParams::default(), &ctx)?;
        Ok((InferredImages::load(ctx.out_dir())?, Detections::read(&ctx.out_dir().join(DETECTIONS_FILE))?))
    }

    #[test]
    fn an_ensemble_of_one_member_is_that_members_detections() {
        let root = tempfile::tempdir().unwrap();
        let imgs = [image(1, Role::Val), image(2, Role::Test), image(3, Role::Test)];
        let dets = [(1, 10.0, 10.0, 0.9), (2, 50.0, 60.0, 0.4), (2, 55.0, 62.0, 0.35), (3, 7.0, 8.0, 0.8)];
        let a = member(root.path(), "a", &imgs, &dets);
        let (images, merged) = run_on(root.path(), vec![a.clone()]).unwrap();
        assert_eq!(images, InferredImages::load(&a.dir).unwrap());
        let original = Detections::read(&a.dir.join(DETECTIONS_FILE)).unwrap();
        for id in [1, 2, 3] {
            let mut x = original.of_image(id);
            x.sort_by(|p, q| q.score.total_cmp(&p.score));
            assert_eq!(merged.of_image(id), x, "image {id}");
        }
    }

    #[test]
    fn members_are_merged_per_image_over_those_that_saw_it() {
        let root = tempfile::tempdir().unwrap();
        // Two folds: each validates on its own image, both test on image 9.
        let a = member(
            root.path(),
            "a",
            &[image(1, Role::Val), image(9, Role::Test)],
            &[(1, 5.0, 5.0, 0.6), (9, 100.0, 100.0, 0.8)],
        );
        let b = member(
            root.path(),
            "b",
            &[image(2, Role::Val), image(9, Role::Test)],
            &[(2, 5.0, 5.0, 0.7), (9, 104.0, 100.0, 0.4)],
        );
        let (images, merged) = run_on(root.path(), vec![a, b]).unwrap();
        assert_eq!(images.images.iter().map(|i| i.id).collect::<Vec<_>>(), [1, 2, 9]);
        assert_eq!(merged.of_image(1)[0].score, 0.6, "validation image 1 was seen by fold a alone");
        let test = merged.of_image(9);
        assert_eq!(test.len(), 1);
        assert!((test[0].score - 0.6).abs() < 1e-12 && test[0].x == 102.0, "{test:?}");
    }

    #[test]
    fn members_tested_on_different_images_are_refused_with_the_key_to_fix() {
        let root = tempfile::tempdir().unwrap();
        let a = member(root.path(), "a", &[image(9, Role::Test)], &[]);
        let b = member(root.path(), "b", &[image(9, Role::Test), image(10, Role::Test)], &[]);
        let e = run_on(root.path(), vec![a.clone(), b]).unwrap_err().to_string();
        assert!(
            e.contains("not scored on the same images") && e.contains("stages.ensemble.needs") && e.contains("10"),
            "{e}"
        );
        let c = member(root.path(), "c", &[image(9, Role::Val)], &[]);
        let e = run_on(root.path(), vec![a, c]).unwrap_err().to_string();
        assert!(e.contains("not scored on the same images"), "{e}");
        let e = run_on(root.path(), vec![]).unwrap_err().to_string();
        assert!(e.contains("needs members"), "{e}");
    }

    #[test]
    fn a_member_without_detections_is_named() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("split");
        std::fs::create_dir_all(&dir).unwrap();
        let key = StageKey::parse(&"1".repeat(64)).unwrap();
        let split = Artifact { name: "split".into(), variant: String::new(), kind: "split".into(), key, dir };
        let e = run_on(root.path(), vec![split]).unwrap_err().to_string();
        assert!(e.contains("member `split` (kind `split`) has no detections"), "{e}");
    }
}
