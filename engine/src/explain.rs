//! Why a stage will run: a field-level diff of its key inputs now against the last recorded
//! run of the same named stage.

use std::fmt;

use serde_json::Value;

use crate::key::{KeyInputs, StageKey};
use crate::record::LastRun;

#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// Never ran under this name.
    New,
    /// Same key as last time, but the output is gone (e.g. `pipeline gc`).
    OutputMissing,
    Forced,
    KindChanged {
        old: String,
        new: String,
    },
    VersionChanged {
        old: u32,
        new: u32,
    },
    ParamChanged {
        path: String,
        old: Option<Value>,
        new: Option<Value>,
    },
    UpstreamChanged {
        name: String,
        old: Option<StageKey>,
        new: StageKey,
    },
    UpstreamRemoved {
        name: String,
    },
    InputChanged {
        name: String,
    },
    InputAdded {
        name: String,
    },
    InputRemoved {
        name: String,
    },
    /// A name the stage's output shows changed (stage, variant or experiment name; only for
    /// kinds whose output shows names).
    NameChanged {
        what: &'static str,
        old: Option<String>,
        new: Option<String>,
    },
    /// The last run's record cannot be read (truncated, edited, from another version).
    RecordUnreadable {
        message: String,
    },
    /// The key differs for a reason no field explains (e.g. the key encoding changed).
    KeyChanged,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "(unset)".into());
        match self {
            Reason::New => write!(f, "new: never ran"),
            Reason::OutputMissing => write!(f, "output missing from the cache"),
            Reason::Forced => write!(f, "forced (--force)"),
            Reason::KindChanged { old, new } => write!(f, "kind changed {old} → {new}"),
            Reason::VersionChanged { old, new } => write!(f, "implementation version changed {old} → {new}"),
            Reason::ParamChanged { path, old, new } => {
                write!(f, "param `{path}` changed {} → {}", show(old), show(new))
            }
            Reason::UpstreamChanged { name, .. } => write!(f, "upstream `{name}` changed"),
            Reason::UpstreamRemoved { name } => write!(f, "upstream `{name}` removed"),
            Reason::InputChanged { name } => write!(f, "input file `{name}` changed"),
            Reason::InputAdded { name } => write!(f, "input file `{name}` added"),
            Reason::InputRemoved { name } => write!(f, "input file `{name}` removed"),
            Reason::NameChanged { what, old, new } => {
                let show = |v: &Option<String>| v.as_ref().map(|v| format!("`{v}`")).unwrap_or_else(|| "(none)".into());
                write!(f, "{what} name changed {} → {} (it is shown in the output)", show(old), show(new))
            }
            Reason::RecordUnreadable { message } => write!(f, "the last run's record is unreadable ({message})"),
            Reason::KeyChanged => write!(f, "key changed (engine key encoding)"),
        }
    }
}

/// The reasons `current` must run, given the last run of the same stage name and whether its
/// current key is already in the store. Empty means cached.
pub fn reasons(current: &KeyInputs, last: Option<&LastRun>, cached: bool) -> Vec<Reason> {
    if cached {
        return Vec::new();
    }
    let Some(last) = last else { return vec![Reason::New] };
    let mut out = diff(&last.inputs, current);
    if out.is_empty() {
        out.push(if last.key == current.key() { Reason::OutputMissing } else { Reason::KeyChanged });
    }
    out
}

/// Field-level differences between two sets of key inputs.
pub fn diff(old: &KeyInputs, new: &KeyInputs) -> Vec<Reason> {
    let mut out = Vec::new();
    if old.kind != new.kind {
        out.push(Reason::KindChanged { old: old.kind.clone(), new: new.kind.clone() });
    }
    if old.version != new.version {
        out.push(Reason::VersionChanged { old: old.version, new: new.version });
    }
    diff_values("", Some(&old.params), Some(&new.params), &mut out);
    if old.names != new.names {
        let field = |n: &Option<crate::key::OutputNames>, f: fn(&crate::key::OutputNames) -> &String| {
            n.as_ref().map(|n| f(n).clone())
        };
        for (what, get) in [
            ("experiment", (|n| &n.experiment) as fn(&crate::key::OutputNames) -> &String),
            ("variant", |n| &n.variant),
            ("stage", |n| &n.stage),
        ] {
            let (o, n) = (field(&old.names, get), field(&new.names, get));
            if o != n {
                out.push(Reason::NameChanged { what, old: o, new: n });
            }
        }
    }
    for u in &new.upstream {
        match old.upstream.iter().find(|o| o.name == u.name) {
            Some(o) if o.key == u.key => {}
            Some(o) => {
                out.push(Reason::UpstreamChanged { name: u.name.clone(), old: Some(o.key.clone()), new: u.key.clone() })
            }
            None => out.push(Reason::UpstreamChanged { name: u.name.clone(), old: None, new: u.key.clone() }),
        }
    }
    for o in &old.upstream {
        if !new.upstream.iter().any(|u| u.name == o.name) {
            out.push(Reason::UpstreamRemoved { name: o.name.clone() });
        }
    }
    for e in &new.external {
        match old.external.iter().find(|o| o.name == e.name) {
            Some(o) if o.digest == e.digest => {}
            Some(_) => out.push(Reason::InputChanged { name: e.name.clone() }),
            None => out.push(Reason::InputAdded { name: e.name.clone() }),
        }
    }
    for o in &old.external {
        if !new.external.iter().any(|e| e.name == o.name) {
            out.push(Reason::InputRemoved { name: o.name.clone() });
        }
    }
    out
}

fn diff_values(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Reason>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                diff_values(&p, a.get(k), b.get(k), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(Reason::ParamChanged { path: path.to_string(), old: a.cloned(), new: b.cloned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{ExternalDigest, UpstreamRef};
    use serde_json::json;

    fn inputs(params: Value, up: &str, file: &str) -> KeyInputs {
        KeyInputs {
            kind: "train".into(),
            version: 1,
            params,
            upstream: vec![UpstreamRef {
                name: "sample".into(),
                kind: "sample".into(),
                key: StageKey::parse(&up.repeat(64)).unwrap(),
            }],
            external: vec![ExternalDigest { name: "a.tiff".into(), digest: file.into() }],
            names: None,
        }
    }

    #[test]
    fn reports_each_changed_field() {
        let old = inputs(json!({"lr": 1e-4, "anchors": {"sizes": [32]}}), "a", "d1");
        let new = inputs(json!({"lr": 3e-4, "anchors": {"sizes": [16]}}), "b", "d2");
        let r = diff(&old, &new);
        let shown: Vec<String> = r.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            shown,
            [
                "param `anchors.sizes` changed [32] → [16]",
                "param `lr` changed 0.0001 → 0.0003",
                "upstream `sample` changed",
                "input file `a.tiff` changed"
            ]
        );
    }

    #[test]
    fn renamed_stages_of_kinds_that_show_names_say_so() {
        let names = |stage: &str| {
            Some(crate::key::OutputNames { experiment: "e".into(), variant: "default".into(), stage: stage.into() })
        };
        let old = KeyInputs { names: names("report"), ..inputs(json!({}), "a", "d") };
        let new = KeyInputs { names: names("summary"), ..old.clone() };
        let shown: Vec<String> = diff(&old, &new).iter().map(|r| r.to_string()).collect();
        assert_eq!(shown, ["stage name changed `report` → `summary` (it is shown in the output)"]);
    }

    #[test]
    fn cached_and_new_and_missing_output() {
        let a = inputs(json!({}), "a", "d");
        assert!(reasons(&a, None, true).is_empty());
        assert_eq!(reasons(&a, None, false), [Reason::New]);
        let last = LastRun { key: a.key(), inputs: a.clone(), external_paths: Default::default(), recorded_unix: 0 };
        assert_eq!(reasons(&a, Some(&last), false), [Reason::OutputMissing]);
    }
}
