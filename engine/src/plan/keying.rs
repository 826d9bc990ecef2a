//! Keying: the members of each fan-in, then every stage of every variant keyed in passes once
//! all it reads is keyed, its external inputs digested (or marked missing).

use std::path::Path;

use indexmap::IndexMap;

use crate::filedigest::DigestMemo;
use crate::inputs::ExternalFile;
use crate::key::{ExternalDigest, KeyInputs, OutputNames, UpstreamRef};
use crate::spec::{Experiment, SpecError};

use super::typing::{TypedStage, TypedVariant, in_variant, path_of};
use super::*;

/// For every variant, stage and fan-in need (`STAGE@AXIS`), the indices of the member variants:
/// those that agree with the variant on every swept key but the axis, in experiment order.
pub(super) type Members = Vec<IndexMap<String, Vec<Option<Vec<usize>>>>>;

pub(super) fn fan_in_members(exp: &Experiment, typed: &[TypedVariant]) -> Result<Members, SpecError> {
    let keys: Vec<String> =
        exp.variants.first().map(|v| v.swept.iter().map(|s| s.key.clone()).collect()).unwrap_or_default();
    let mut out: Members = Vec::new();
    for (vi, tv) in typed.iter().enumerate() {
        let mut of_variant = IndexMap::new();
        for (name, t) in &tv.stages {
            let mut per_need = Vec::new();
            for need in &t.needs {
                let Some(axis) = &need.axis else {
                    per_need.push(None);
                    continue;
                };
                let short = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
                let matching: Vec<&String> = keys
                    .iter()
                    .filter(|k| *k == axis)
                    .chain(keys.iter().filter(|k| *k != axis && short(k) == *axis))
                    .collect();
                let Some(key) = matching.first().copied() else {
                    let loc = tv.sources.value(&path_of(&["stages", name, "needs"]));
                    let axes: Vec<String> = keys.iter().map(|k| short(k)).collect();
                    let help = if axes.is_empty() {
                        "the experiment sweeps nothing: add a [sweep] (e.g. replicates = 3) or list the stages by name"
                            .to_string()
                    } else {
                        format!("the swept axes are: {}", axes.join(", "))
                    };
                    return Err(SpecError::at(
                        loc,
                        &exp.path,
                        format!(
                            "stage `{name}` needs `{}@{axis}`, but `{axis}` is not a swept axis of this experiment",
                            need.name
                        ),
                    )
                    .with_help(help));
                };
                let me = &exp.variants[vi];
                let members: Vec<usize> = exp
                    .variants
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.swept.iter().all(|s| &s.key == key || me.value_of(&s.key) == Some(&s.value)))
                    .map(|(i, _)| i)
                    .collect();
                per_need.push(Some(members));
            }
            of_variant.insert(name.clone(), per_need);
        }
        out.push(of_variant);
    }
    Ok(out)
}

/// Keys every stage of every variant: in passes, each stage once all it reads is keyed. Returns
/// the planned stages per variant (in topological order) and the global order they were keyed in.
#[allow(clippy::type_complexity)]
pub(super) fn key_all(
    exp: &Experiment,
    typed: &[TypedVariant],
    members: &Members,
    memo: &mut DigestMemo,
    missing: MissingInputs,
) -> Result<(Vec<IndexMap<String, PlannedStage>>, Vec<(usize, String)>), SpecError> {
    let n = typed.len();
    let mut planned: Vec<IndexMap<String, PlannedStage>> = (0..n).map(|_| IndexMap::new()).collect();
    let mut order: Vec<(usize, String)> = Vec::new();
    let total: usize = typed.iter().map(|t| t.stages.len()).sum();
    while order.len() < total {
        let before = order.len();
        for vi in 0..n {
            for (name, t) in &typed[vi].stages {
                if planned[vi].contains_key(name) {
                    continue;
                }
                let refs: Vec<(usize, String)> = t
                    .needs
                    .iter()
                    .zip(&members[vi][name])
                    .flat_map(|(need, m)| match m {
                        None => vec![(vi, need.name.clone())],
                        Some(ms) => ms.iter().map(|&j| (j, need.name.clone())).collect(),
                    })
                    .collect();
                if !refs.iter().all(|(j, m)| planned[*j].contains_key(m)) {
                    continue;
                }
                let stage = key_stage(exp, vi, &typed[vi], name, t, &refs, &planned, memo, missing)?;
                planned[vi].insert(name.clone(), stage);
                order.push((vi, name.clone()));
            }
        }
        assert!(order.len() > before, "internal: a stage waits for an upstream that can never be keyed");
    }
    // Each variant's stages in its topological order, whatever pass keyed them.
    let planned = planned
        .into_iter()
        .zip(typed)
        .map(|(mut p, t)| t.stages.keys().map(|name| (name.clone(), p.swap_remove(name).expect("keyed"))).collect())
        .collect();
    Ok((planned, order))
}

/// The key and everything else the plan knows of one stage, its upstream already keyed.
#[allow(clippy::too_many_arguments)]
pub(super) fn key_stage(
    exp: &Experiment,
    vi: usize,
    tv: &TypedVariant,
    name: &str,
    t: &TypedStage,
    refs: &[(usize, String)],
    planned: &[IndexMap<String, PlannedStage>],
    memo: &mut DigestMemo,
    missing: MissingInputs,
) -> Result<PlannedStage, SpecError> {
    let file = &exp.path;
    let sources = &tv.sources;
    let variant = &exp.variants[vi];
    // Relative paths resolve against the file that wrote them, so a base experiment keeps its
    // data and weights paths wherever the file extending it lives.
    let params_dir = t
        .stage
        .path_params()
        .iter()
        .filter(|p| t.params.get(**p).is_some_and(|v| !v.is_null()))
        .find_map(|p| sources.exact_key(&path_of(&["stages", name, p])))
        .map(|loc| loc.file.parent().map(Path::to_path_buf).unwrap_or_default())
        .unwrap_or_else(|| exp.dir.clone());
    // A missing input of its own says more (what to download) than waiting for upstream.
    let mut blocked = None;
    let inputs_list = match t.stage.external_inputs(&t.params, &params_dir) {
        Ok(list) => list,
        Err(e) if missing == MissingInputs::Allow && e.missing_input.is_some() => {
            blocked = e.missing_input.map(Blocked::InputMissing);
            Vec::new()
        }
        Err(e) => {
            let mut p = path_of(&["stages", name]);
            p.extend(e.path.iter().cloned());
            let mut err = SpecError::at(
                sources.key(&p),
                file,
                in_variant(exp, variant, format!("stage `{name}`: {}", e.message)),
            );
            err.help = e.help.clone();
            return Err(err);
        }
    };
    let inputs_list: Vec<_> = if missing == MissingInputs::Allow {
        // Listed files that are not there block the stage; its key is then a placeholder.
        let (present, absent): (Vec<_>, Vec<_>) = inputs_list.into_iter().partition(|i| i.path.exists());
        if let Some(first) = absent.first() {
            blocked = blocked.or(Some(Blocked::InputMissing(first.path.clone())));
        }
        present
    } else {
        inputs_list
    };
    blocked = blocked.or_else(|| {
        refs.iter().find_map(|(j, n)| match &planned[*j][n].blocked {
            Some(Blocked::InputMissing(_)) => Some(Blocked::WaitingFor(n.clone())),
            Some(waiting) => Some(waiting.clone()),
            None => None,
        })
    });
    let paths: Vec<_> = inputs_list.iter().map(|i| i.path.clone()).collect();
    let digests = memo.digests(&paths).map_err(|e| {
        SpecError::at(
            sources.key(&path_of(&["stages", name])),
            file,
            format!("stage `{name}`: cannot read input {}", e),
        )
    })?;
    let external: Vec<ExternalFile> = inputs_list
        .into_iter()
        .zip(digests)
        .map(|(i, digest)| ExternalFile { name: i.name, path: absolute(&i.path), digest })
        .collect();
    let upstream: Vec<UpstreamRef> = refs
        .iter()
        .map(|(j, n)| {
            let u = &planned[*j][n];
            UpstreamRef { name: n.clone(), kind: u.kind.clone(), key: u.key.clone() }
        })
        .collect();
    let mut key_params = t.params.clone();
    if let Some(map) = key_params.as_object_mut() {
        for k in t.stage.non_key_params() {
            map.remove(*k);
        }
    }
    // Names reach the output only of kinds that declare it; then they are in the key.
    let names = t.stage.names_in_output().then(|| OutputNames {
        experiment: exp.name.clone(),
        variant: variant.name.clone(),
        stage: name.to_string(),
    });
    let mut inputs = KeyInputs {
        kind: t.kind.clone(),
        version: t.stage.version(),
        params: key_params,
        upstream,
        external: external.iter().map(|e| ExternalDigest { name: e.name.clone(), digest: e.digest.clone() }).collect(),
        names,
    };
    if let Some(Blocked::InputMissing(path)) = &blocked {
        // Not a digest any file can have: no store holds this key, nothing runs under it.
        inputs.external.push(ExternalDigest { name: format!("missing:{}", path.display()), digest: "missing".into() });
    }
    let needs: Vec<String> = t.needs.iter().map(|n| n.name.clone()).collect();
    // Ancestors, nearest first (breadth-first over needs, in this variant: a fan-in's own member
    // stands for all of them).
    let mut ancestors: Vec<String> = Vec::new();
    let mut frontier = needs.clone();
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for n in frontier {
            if !ancestors.contains(&n) {
                ancestors.push(n.clone());
                next.extend(planned[vi][&n].needs.iter().cloned());
            }
        }
        frontier = next;
    }
    Ok(PlannedStage {
        variant: variant.name.clone(),
        name: name.to_string(),
        kind: t.kind.clone(),
        key: inputs.key(),
        resources: t.stage.resources(&t.params),
        worker: t.stage.worker(),
        highlights: t.stage.highlights(),
        inputs,
        params: t.params.clone(),
        needs,
        upstream: refs.iter().map(|(j, n)| (exp.variants[*j].name.clone(), n.clone())).collect(),
        ancestors,
        external,
        location: sources.key(&path_of(&["stages", name])).cloned(),
        param_locations: sources
            .keys_under(&path_of(&["stages", name]))
            .into_iter()
            .map(|(k, l)| (k, l.to_string()))
            .collect(),
        params_dir,
        blocked,
    })
}

pub(super) fn absolute(p: &Path) -> std::path::PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
