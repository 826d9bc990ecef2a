//! `[slurm]` in an experiment file: where stages are submitted and what they ask for
//! (`[run] executor = "slurm"` or `pipeline run EXP.toml --executor slurm` selects this back-end).
//!
//! ```toml
//! [slurm]
//! partition = "gpu"
//! account = "pathology"
//! qos = "normal"
//! time = "01:00:00"               # --time of every stage kind not listed in [slurm.time]
//! gpu = "gpu:a100:1"              # --gres of stages that want GPUs (default "gpu:<n>")
//! extra_args = ["--constraint=ib"]
//! setup = ["module load cuda/12.4", "export TORCH_HOME=$WORK/torch"]
//! poll_seconds = 5
//!
//! [slurm.time]                    # instead of `time = "…"`: per stage kind, and a default
//! default = "01:00:00"
//! train = "12:00:00"
//!
//! [slurm.mem]                     # overrides the memory a stage kind declares
//! train = "64G"
//! ```
//!
//! Every key is checked when the experiment is run: a misspelt one is an error that names its
//! file, line and column.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::spec::{Experiment, Location, SpecError, did_you_mean};

const KEYS: &[&str] = &["partition", "account", "qos", "time", "mem", "gpu", "extra_args", "setup", "poll_seconds"];

/// sbatch options the engine sets itself: the run relies on them, so `extra_args` may not.
const MANAGED_OPTIONS: &[&str] = &[
    "--parsable",
    "--job-name",
    "-J",
    "--output",
    "-o",
    "--error",
    "-e",
    "--dependency",
    "-d",
    "--kill-on-invalid-dep",
    "--wrap",
    "--array",
    "-a",
];

/// How often the run asks Slurm about its jobs unless `poll_seconds` says otherwise. Slurm
/// starts dependants by itself, so this only delays what the terminal shows, not the pipeline.
pub const DEFAULT_POLL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// `--time` by stage kind.
    pub time: PerKind,
    /// `--mem` by stage kind; a stage kind not listed asks for the memory it declares.
    pub mem: PerKind,
    /// The GRES request of stages that want GPUs, e.g. `gpu:a100:1`.
    pub gpu: Option<String>,
    pub extra_args: Vec<String>,
    /// Lines at the top of every job script (module loads, environment).
    pub setup: Vec<String>,
    pub poll: Duration,
    /// The experiment file, named in hints ("raise [slurm.time] train in …").
    pub file: PathBuf,
}

/// A value given for every stage kind (`default`) and for some kinds by name.
#[derive(Debug, Clone, Default)]
pub struct PerKind {
    pub default: Option<String>,
    pub kinds: BTreeMap<String, String>,
}

impl PerKind {
    pub fn for_kind(&self, kind: &str) -> Option<&str> {
        self.kinds.get(kind).or(self.default.as_ref()).map(|s| s.as_str())
    }
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            partition: None,
            account: None,
            qos: None,
            time: PerKind::default(),
            mem: PerKind::default(),
            gpu: None,
            extra_args: Vec::new(),
            setup: Vec::new(),
            poll: DEFAULT_POLL,
            file: PathBuf::new(),
        }
    }
}

impl SlurmConfig {
    /// Reads and checks `[slurm]` of `exp` (absent: Slurm's defaults). `kinds` are the stage
    /// kinds the binary knows, the only keys `[slurm.time]` and `[slurm.mem]` accept besides
    /// `default`.
    pub fn from_table<'a>(
        table: Option<&toml::Table>,
        exp: &Experiment,
        kinds: impl IntoIterator<Item = &'a str>,
    ) -> Result<SlurmConfig, SpecError> {
        let kinds: Vec<&str> = kinds.into_iter().collect();
        let mut config = SlurmConfig { file: exp.path.clone(), ..SlurmConfig::default() };
        let Some(table) = table else { return Ok(config) };
        let at = |path: &[&str]| -> Option<Location> {
            let path: Vec<String> = std::iter::once("slurm").chain(path.iter().copied()).map(String::from).collect();
            exp.sources().key(&path).cloned()
        };
        let value_at = |path: &[&str]| -> Option<Location> {
            let path: Vec<String> = std::iter::once("slurm").chain(path.iter().copied()).map(String::from).collect();
            exp.sources().value(&path).cloned()
        };
        let error = |loc: Option<Location>, message: String| SpecError::at(loc.as_ref(), &exp.path, message);

        for key in table.keys() {
            if !KEYS.contains(&key.as_str()) {
                let err = error(at(&[key]), format!("unknown key `{key}` in [slurm]"));
                return Err(match did_you_mean(key, KEYS.iter().copied()) {
                    Some(s) => err.with_help(format!("did you mean `{s}`?")),
                    None => err.with_help(format!("[slurm] takes {}", KEYS.join(", "))),
                });
            }
        }
        let string = |key: &str| -> Result<Option<String>, SpecError> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) if !s.trim().is_empty() && !s.contains(char::is_whitespace) => {
                    Ok(Some(s.clone()))
                }
                Some(_) => Err(error(value_at(&[key]), format!("`slurm.{key}` must be a non-empty word (a string)"))),
            }
        };
        let strings = |key: &str| -> Result<Vec<String>, SpecError> {
            match table.get(key) {
                None => Ok(Vec::new()),
                Some(toml::Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_str().map(String::from).ok_or_else(|| {
                            error(value_at(&[key, &i.to_string()]), format!("`slurm.{key}` must be a list of strings"))
                        })
                    })
                    .collect(),
                Some(_) => Err(error(value_at(&[key]), format!("`slurm.{key}` must be a list of strings"))),
            }
        };
        config.partition = string("partition")?;
        config.account = string("account")?;
        config.qos = string("qos")?;
        config.gpu = string("gpu")?;
        if let Some(gres) = &config.gpu
            && !gres.split(':').all(|part| !part.is_empty())
        {
            return Err(error(value_at(&["gpu"]), format!("`slurm.gpu = \"{gres}\"` is not a GRES request"))
                .with_help("write it as sbatch's --gres takes it: \"gpu\", \"gpu:2\" or \"gpu:a100:1\""));
        }
        config.setup = strings("setup")?;
        config.extra_args = strings("extra_args")?;
        for (i, arg) in config.extra_args.iter().enumerate() {
            let option = arg.split('=').next().unwrap_or(arg);
            if MANAGED_OPTIONS.contains(&option) {
                return Err(error(
                    value_at(&["extra_args", &i.to_string()]),
                    format!("`{option}` in slurm.extra_args is set by the engine for every job"),
                )
                .with_help("job names, logs and dependencies are how the run tracks its jobs; remove it"));
            }
        }
        config.time = per_kind(table, "time", &kinds, &at, &value_at, &error, valid_time, TIME_HELP)?;
        config.mem = per_kind(table, "mem", &kinds, &at, &value_at, &error, valid_mem, MEM_HELP)?;
        if let Some(v) = table.get("poll_seconds") {
            let seconds = v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
            match seconds {
                Some(s) if s > 0.0 && s <= 3600.0 => config.poll = Duration::from_secs_f64(s),
                _ => {
                    return Err(error(
                        value_at(&["poll_seconds"]),
                        "`slurm.poll_seconds` must be a number of seconds between 0 and 3600".into(),
                    ));
                }
            }
        }
        Ok(config)
    }
}

const TIME_HELP: &str = "Slurm time limits look like \"90\" (minutes), \"02:30:00\" or \"1-12:00:00\"";
const MEM_HELP: &str = "Slurm memory sizes look like \"4096\" (MiB), \"500M\", \"16G\"";

/// `key = "value"` (every kind) or `[slurm.key]` with `default` and stage kinds.
#[allow(clippy::too_many_arguments)]
fn per_kind(
    table: &toml::Table,
    key: &str,
    kinds: &[&str],
    at: &dyn Fn(&[&str]) -> Option<Location>,
    value_at: &dyn Fn(&[&str]) -> Option<Location>,
    error: &dyn Fn(Option<Location>, String) -> SpecError,
    valid: fn(&str) -> bool,
    help: &str,
) -> Result<PerKind, SpecError> {
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Some(s.trim().to_string()),
        toml::Value::Integer(i) if *i > 0 => Some(i.to_string()),
        _ => None,
    };
    let checked = |v: &toml::Value, path: &[&str]| -> Result<String, SpecError> {
        match scalar(v) {
            Some(s) if valid(&s) => Ok(s),
            _ => Err(error(value_at(path), format!("`slurm.{}` is not valid: {v}", path.join("."))).with_help(help)),
        }
    };
    let mut out = PerKind::default();
    match table.get(key) {
        None => {}
        Some(toml::Value::Table(by_kind)) => {
            for (kind, v) in by_kind {
                let value = checked(v, &[key, kind])?;
                if kind == "default" {
                    out.default = Some(value);
                } else if kinds.contains(&kind.as_str()) {
                    out.kinds.insert(kind.clone(), value);
                } else {
                    let err = error(at(&[key, kind]), format!("[slurm.{key}]: `{kind}` is not a stage kind"));
                    return Err(match did_you_mean(kind, kinds.iter().copied()) {
                        Some(s) => err.with_help(format!("did you mean `{s}`?")),
                        None => err.with_help(format!("use `default` or one of the kinds: {}", kinds.join(", "))),
                    });
                }
            }
        }
        Some(v) => out.default = Some(checked(v, &[key])?),
    }
    Ok(out)
}

/// Slurm's time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or unlimited.
pub fn valid_time(s: &str) -> bool {
    if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("infinite") {
        return true;
    }
    let numbers = |s: &str, max_parts: usize| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() <= max_parts && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    match s.split_once('-') {
        Some((days, rest)) => numbers(days, 1) && numbers(rest, 3),
        None => numbers(s, 3),
    }
}

/// A size with an optional K/M/G/T suffix (no suffix: MiB).
pub fn valid_mem(s: &str) -> bool {
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    !digits.is_empty() && s.len() - digits.len() <= 1 && digits.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<SlurmConfig, SpecError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("exp.toml");
        std::fs::write(&p, format!("[stages.train]\n{text}")).unwrap();
        let exp = Experiment::load(&p).unwrap();
        SlurmConfig::from_table(exp.tables.get("slurm").and_then(|t| t.as_table()), &exp, ["train", "nms"])
    }

    #[test]
    fn reads_every_key() {
        let c = load(
            "[slurm]\npartition = \"gpu\"\naccount = \"a\"\nqos = \"q\"\ngpu = \"gpu:a100:1\"\n\
             extra_args = [\"--constraint=ib\"]\nsetup = [\"module load cuda\"]\npoll_seconds = 0.5\n\
             [slurm.time]\ndefault = \"01:00:00\"\ntrain = \"1-12:00:00\"\n[slurm.mem]\ntrain = \"64G\"\n",
        )
        .unwrap();
        assert_eq!(c.partition.as_deref(), Some("gpu"));
        assert_eq!(c.time.for_kind("train"), Some("1-12:00:00"));
        assert_eq!(c.time.for_kind("nms"), Some("01:00:00"));
        assert_eq!(c.mem.for_kind("train"), Some("64G"));
        assert_eq!(c.mem.for_kind("nms"), None);
        assert_eq!(c.poll, Duration::from_millis(500));
        assert_eq!(c.setup, ["module load cuda"]);
        let c = load("[slurm]\ntime = 90\n").unwrap();
        assert_eq!(c.time.for_kind("train"), Some("90"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_located() {
        let e = load("[slurm]\npartiton = \"gpu\"\n").unwrap_err();
        assert_eq!(e.location.as_ref().map(|l| l.line), Some(3), "{e}");
        assert_eq!(e.help.as_deref(), Some("did you mean `partition`?"));
        let e = load("[slurm.time]\ntrian = \"1:00:00\"\n").unwrap_err();
        assert_eq!(e.location.as_ref().map(|l| l.line), Some(3), "{e}");
        assert_eq!(e.help.as_deref(), Some("did you mean `train`?"));
        let e = load("[slurm]\ntime = \"2 hours\"\n").unwrap_err();
        assert_eq!(e.location.as_ref().map(|l| (l.line, l.column)), Some((3, 8)), "{e}");
        let e = load("[slurm]\nextra_args = [\"--exclusive\", \"--output=x\"]\n").unwrap_err();
        assert!(e.message.contains("--output"), "{e}");
        let e = load("[slurm]\npoll_seconds = 0\n").unwrap_err();
        assert!(e.message.contains("poll_seconds"), "{e}");
    }

    #[test]
    fn time_and_memory_formats() {
        for t in ["90", "30:00", "02:30:00", "1-12", "1-12:30", "1-12:30:00", "UNLIMITED"] {
            assert!(valid_time(t), "{t}");
        }
        for t in ["", "2h", "1:2:3:4", "-1", "1-", "a:00"] {
            assert!(!valid_time(t), "{t}");
        }
        for m in ["4096", "500M", "16G", "1t"] {
            assert!(valid_mem(m), "{m}");
        }
        for m in ["", "G", "16GB", "1.5G"] {
            assert!(!valid_mem(m), "{m}");
        }
    }
}
