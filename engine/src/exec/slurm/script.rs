//! The batch script and `sbatch` arguments of one stage.
//!
//! The script runs the same worker as a local run (`<exe> exec-stage --job FILE`) against the
//! shared cache: the worker takes the key's lock, checks whether the key is published already,
//! runs the stage into `tmp/` and publishes it with fsync + rename. Resource requests go on
//! sbatch's command line (no shell quoting of paths in `#SBATCH` lines); the script starts with a
//! comment that repeats them, so it can be read and resubmitted by hand.

use std::path::Path;

use super::config::SlurmConfig;
use super::record::JobPaths;
use crate::exec::Launch;

/// How long a job waits for its upstream outputs to become visible on its node. On NFS a
/// directory another node just renamed into place can stay invisible until the attribute
/// cache expires (`acdirmax`, 60 s by default); listing the parent revalidates it sooner.
const UPSTREAM_WAIT_SECONDS: u32 = 120;

/// `sbatch` arguments (the script path last) and the script text.
pub struct Submission {
    pub args: Vec<String>,
    pub script: String,
}

/// The Slurm job name of a stage: `<experiment>:<stage>`, with `@<variant>` in a sweep.
pub fn job_name(experiment: &str, variant: &str, stage: &str) -> String {
    if variant == crate::spec::DEFAULT_VARIANT {
        format!("{experiment}:{stage}")
    } else {
        format!("{experiment}:{stage}@{variant}")
    }
}

/// The `--gres` of a stage that wants `gpus` GPUs: the configured request as it is if it ends
/// in a count (`gpu:a100:1`), else with the count appended (`gpu:a100` → `gpu:a100:2`).
pub fn gres(configured: Option<&str>, gpus: usize) -> String {
    let base = configured.unwrap_or("gpu");
    let has_count =
        base.rsplit(':').next().is_some_and(|last| !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
            && base.contains(':');
    if has_count { base.to_string() } else { format!("{base}:{gpus}") }
}

pub fn submission(
    config: &SlurmConfig,
    launch: &Launch<'_>,
    paths: &JobPaths,
    name: &str,
    after: &[String],
    workdir: &Path,
) -> Submission {
    let kind = &launch.job.inputs.kind;
    let res = launch.resources;
    let mut args = vec![
        format!("--job-name={name}"),
        format!("--output={}", paths.log.display()),
        format!("--chdir={}", workdir.display()),
        "--nodes=1".to_string(),
        "--ntasks=1".to_string(),
        format!("--cpus-per-task={}", launch.threads.max(1)),
    ];
    match config.mem.for_kind(kind) {
        Some(mem) => args.push(format!("--mem={mem}")),
        // `--mem=0` means "all of the node's memory" to Slurm: a stage that declares none asks nothing.
        None if res.memory_mb > 0 => args.push(format!("--mem={}M", res.memory_mb)),
        None => {}
    }
    if res.gpus > 0 {
        args.push(format!("--gres={}", gres(config.gpu.as_deref(), res.gpus)));
    }
    if let Some(time) = config.time.for_kind(kind) {
        args.push(format!("--time={time}"));
    }
    for (option, value) in [("partition", &config.partition), ("account", &config.account), ("qos", &config.qos)] {
        if let Some(v) = value {
            args.push(format!("--{option}={v}"));
        }
    }
    if !after.is_empty() {
        args.push(format!("--dependency=afterok:{}", after.join(":")));
        // Without it a dependant of a failed job pends forever (unless the cluster sets
        // DependencyParameters=kill_invalid_depend).
        args.push("--kill-on-invalid-dep=yes".to_string());
    }
    // Last, so that a site-specific option can override one of the above.
    args.extend(config.extra_args.iter().cloned());

    let mut s = String::from("#!/bin/bash\n");
    s.push_str(&format!("# {name}: stage `{}` (kind {kind}), key {}\n", launch.job.stage, launch.job.key));
    s.push_str("# Written by `pipeline run --executor slurm`, submitted as:\n");
    s.push_str(&format!("#   sbatch {} {}\n", args.join(" "), paths.script.display()));
    s.push_str("# It is rewritten at every submission; edit [slurm] in the experiment instead.\n");
    for line in &config.setup {
        s.push_str(line);
        s.push('\n');
    }
    if !launch.job.upstream.is_empty() {
        s.push_str("# Upstream outputs may take a moment to appear on this node (NFS attribute caches).\n");
        s.push_str(&format!(
            "for record in {}; do\n",
            quote_all(launch.job.upstream.iter().map(|a| { a.dir.parent().unwrap_or(&a.dir).join("record.json") }))
        ));
        s.push_str(&format!(
            "  for _ in $(seq {UPSTREAM_WAIT_SECONDS}); do [ -e \"$record\" ] && break; ls \"$(dirname \"$(dirname \"$record\")\")\" >/dev/null 2>&1; sleep 1; done\n"
        ));
        s.push_str("done\n");
    }
    let threads = launch.threads.max(1);
    s.push_str(&format!("export RAYON_NUM_THREADS={threads} OMP_NUM_THREADS={threads} NO_COLOR=1\n"));
    s.push_str("# stdout carries progress events for `pipeline run`; stderr is the stage's log.\n");
    s.push_str(&format!(
        "exec {} exec-stage --job {} >{}\n",
        quote(&launch.exe.to_string_lossy()),
        quote(&launch.job_file.to_string_lossy()),
        quote(&paths.events.to_string_lossy())
    ));
    args.push(paths.script.display().to_string());
    Submission { args, script: s }
}

/// Single-quotes a word for bash.
pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn quote_all(paths: impl Iterator<Item = std::path::PathBuf>) -> String {
    paths.map(|p| quote(&p.to_string_lossy())).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gres_adds_the_count_unless_given() {
        assert_eq!(gres(None, 2), "gpu:2");
        assert_eq!(gres(Some("gpu"), 1), "gpu:1");
        assert_eq!(gres(Some("gpu:a100"), 2), "gpu:a100:2");
        assert_eq!(gres(Some("gpu:a100:1"), 2), "gpu:a100:1");
        assert_eq!(gres(Some("gpu:4"), 1), "gpu:4");
    }

    #[test]
    fn names_and_quotes() {
        assert_eq!(job_name("base", "default", "train"), "base:train");
        assert_eq!(job_name("base", "lr=3e-4", "train"), "base:train@lr=3e-4");
        assert_eq!(quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
