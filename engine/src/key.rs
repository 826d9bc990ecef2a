//! Stage keys: the identity of a stage's output.
//!
//! A key is a blake3 hash in derive-key mode (context [`KEY_CONTEXT`], versioned) over a
//! canonical JSON encoding of [`KeyInputs`]. Two runs with the same key produce interchangeable
//! outputs, so the second is served from the cache.
//!
//! | enters the key                                  | does not                                         |
//! |-------------------------------------------------|--------------------------------------------------|
//! | stage kind                                      | stage name (`[stages.NAME]`), variant name, experiment name — unless the kind shows them (below) |
//! | implementation version (`StageDef::VERSION`)    | cache directory, experiment path                 |
//! | resolved params, defaults filled in, typed      | TOML comments, key order, whitespace, `1e-4` vs `0.0001` |
//! |                                                 | params a stage marks as not shaping its output (`NON_KEY_PARAMS`: device, loader threads) |
//! | keys of the direct upstream stages (by kind)    | thread counts, `--jobs`, GPU ids, executor       |
//! | content digests of external inputs, by logical name | absolute paths, mtimes, inode numbers         |
//! | the key-encoding version ([`KEY_CONTEXT`])      | run ids, timestamps, host names                  |
//! | for kinds whose output shows names (`StageDef::NAMES_IN_OUTPUT`, e.g. a report's titles and legends): the experiment, variant and stage names and the names of the direct upstream stages ([`OutputNames`]) | |
//!
//! Names stay out of every other key, so renaming a stage or a variant reruns nothing but the
//! stages that print names; those rerun, so a renamed stage is never shown under its old name.
//!
//! Upstream keys (not output digests) enter the key, so an upstream stage whose implementation
//! version changes reruns its descendants too, and every key is known before anything runs
//! (`pipeline status` needs no execution).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Versioned blake3 derive-key context; changing it invalidates every cache entry.
pub const KEY_CONTEXT: &str = "midog-pipeline engine 2026-11-27 stage key v1";

/// 64 lowercase hex digits. Deserialising checks the form, so a truncated or edited record
/// cannot produce a key that later code would slice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StageKey(String);

impl TryFrom<String> for StageKey {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        StageKey::parse(&s)
            .ok_or_else(|| format!("`{}` is not a stage key (64 lowercase hex digits)", s.escape_debug()))
    }
}

impl From<StageKey> for String {
    fn from(k: StageKey) -> String {
        k.0
    }
}

impl StageKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for humans.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }

    /// Parses a full 64-digit hex key (for example from a job file or a directory name).
    pub fn parse(s: &str) -> Option<StageKey> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
            .then(|| StageKey(s.to_string()))
    }
}

impl fmt::Display for StageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A direct upstream stage as it enters a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRef {
    /// The upstream's stage name; recorded for explanations, not hashed.
    pub name: String,
    pub kind: String,
    pub key: StageKey,
}

/// An external file as it enters a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalDigest {
    pub name: String,
    /// blake3 of the file's content, hex.
    pub digest: String,
}

/// The names a stage's output shows, in the key of kinds that declare it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputNames {
    pub experiment: String,
    pub variant: String,
    pub stage: String,
}

/// Everything a key is computed from, kept in clear text in the stage's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyInputs {
    pub kind: String,
    pub version: u32,
    pub params: Value,
    pub upstream: Vec<UpstreamRef>,
    pub external: Vec<ExternalDigest>,
    /// Set for kinds whose output shows names; then they and the upstream names are hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<OutputNames>,
}

impl KeyInputs {
    pub fn key(&self) -> StageKey {
        let mut upstream: Vec<Value> = self
            .upstream
            .iter()
            .map(|u| match &self.names {
                None => serde_json::json!({"kind": u.kind, "key": u.key.as_str()}),
                Some(_) => serde_json::json!({"kind": u.kind, "key": u.key.as_str(), "name": u.name}),
            })
            .collect();
        upstream.sort_by_key(canonical);
        let mut external: Vec<(&str, &str)> =
            self.external.iter().map(|e| (e.name.as_str(), e.digest.as_str())).collect();
        external.sort();
        let mut doc = serde_json::json!({
            "kind": self.kind,
            "version": self.version,
            "params": self.params,
            "upstream": upstream,
            "external": external.iter().map(|(n, d)| serde_json::json!([n, d])).collect::<Vec<_>>(),
        });
        if let Some(n) = &self.names {
            doc["names"] = serde_json::json!({"experiment": n.experiment, "variant": n.variant, "stage": n.stage});
        }
        let mut hasher = blake3::Hasher::new_derive_key(KEY_CONTEXT);
        hasher.update(canonical(&doc).as_bytes());
        StageKey(hasher.finalize().to_hex().to_string())
    }
}

/// Canonical JSON: object keys sorted, no whitespace, integers as integers, floats in their
/// shortest round-trip form (so `1e-4` and `0.0001`, parsed to the same f64, encode alike).
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                out.push_str(&format!("{f:?}"));
            }
        }
        Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs(params: Value) -> KeyInputs {
        KeyInputs { kind: "train".into(), version: 1, params, upstream: vec![], external: vec![], names: None }
    }

    #[test]
    fn key_order_and_float_spelling_do_not_matter() {
        let a = inputs(json!({"lr": 1e-4, "epochs": 3}));
        let b = inputs(json!({"epochs": 3, "lr": 0.0001}));
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().as_str().len(), 64);
    }

    #[test]
    fn every_hashed_field_changes_the_key() {
        let base = inputs(json!({"lr": 1e-4}));
        let mut v = base.clone();
        v.version = 2;
        assert_ne!(base.key(), v.key());
        let mut k = base.clone();
        k.kind = "nms".into();
        assert_ne!(base.key(), k.key());
        assert_ne!(base.key(), inputs(json!({"lr": 2e-4})).key());
        let mut e = base.clone();
        e.external.push(ExternalDigest { name: "a.tiff".into(), digest: "00".into() });
        assert_ne!(base.key(), e.key());
    }

    #[test]
    fn upstream_names_are_not_hashed_but_keys_are() {
        let up =
            |name: &str, key: &str| UpstreamRef { name: name.into(), kind: "split".into(), key: StageKey(key.into()) };
        let mut a = inputs(json!({}));
        a.upstream.push(up("split", "aa"));
        let mut b = inputs(json!({}));
        b.upstream.push(up("my_split", "aa"));
        assert_eq!(a.key(), b.key());
        b.upstream[0].key = StageKey("bb".into());
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn names_enter_only_the_keys_of_kinds_that_show_them() {
        let up = |name: &str| UpstreamRef { name: name.into(), kind: "score".into(), key: StageKey("a".repeat(64)) };
        let names = |stage: &str, variant: &str| {
            Some(OutputNames { experiment: "e".into(), variant: variant.into(), stage: stage.into() })
        };
        let mut a = inputs(json!({}));
        a.upstream.push(up("score"));
        let plain = a.key();
        a.names = names("report", "default");
        let named = a.key();
        assert_ne!(plain, named);
        let mut renamed_upstream = a.clone();
        renamed_upstream.upstream[0].name = "score_net".into();
        assert_ne!(renamed_upstream.key(), named);
        assert_ne!(KeyInputs { names: names("summary", "default"), ..a.clone() }.key(), named);
        assert_ne!(KeyInputs { names: names("report", "lr=1"), ..a.clone() }.key(), named);
        assert_eq!(a.clone().key(), named);
    }

    #[test]
    fn keys_are_checked_when_read() {
        let ok: StageKey = serde_json::from_value(json!("0".repeat(64))).unwrap();
        assert_eq!(ok.short(), "000000000000");
        for bad in [json!("abc"), json!("é".repeat(32)), json!("A".repeat(64))] {
            assert!(serde_json::from_value::<StageKey>(bad).is_err());
        }
    }

    #[test]
    fn canonical_form_is_stable() {
        assert_eq!(canonical(&json!({"b": [1, 2.5, "x"], "a": null})), r#"{"a":null,"b":[1,2.5,"x"]}"#);
        assert_eq!(canonical(&json!(1e-4)), canonical(&json!(0.0001)));
    }
}
