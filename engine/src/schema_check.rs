//! Unknown-key detection from a params type's JSON schema. serde's `deny_unknown_fields` cannot
//! be combined with `#[serde(flatten)]`, yet stage params flatten shared groups (a model config
//! into the train stage's table); the schema knows every key either way, so the engine checks
//! the raw table against it before serde types it.

use serde_json::Value;

use crate::error::ParamError;

/// The first key of `raw` that the schema does not know, as a located error with a suggestion.
pub fn unknown_key(raw: &toml::Table, schema: &Value) -> Option<ParamError> {
    let mut path = Vec::new();
    check_table(raw, schema, schema, &mut path)
}

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    if let Some(r) = node.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next().unwrap_or_default();
        if let Some(def) = root.get("$defs").and_then(|d| d.get(name)) {
            return resolve(root, def);
        }
    }
    node
}

/// The object schemas a node may stand for (looking through Option / anyOf / oneOf / allOf).
fn object_schemas<'a>(root: &'a Value, node: &'a Value, out: &mut Vec<&'a Value>) {
    let node = resolve(root, node);
    if node.get("properties").is_some() || node.get("additionalProperties").is_some() {
        out.push(node);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(items) = node.get(key).and_then(|v| v.as_array()) {
            for item in items {
                object_schemas(root, item, out);
            }
        }
    }
}

fn check_table(raw: &toml::Table, root: &Value, node: &Value, path: &mut Vec<String>) -> Option<ParamError> {
    let mut schemas = Vec::new();
    object_schemas(root, node, &mut schemas);
    if schemas.is_empty() {
        return None;
    }
    // Known keys: the union over the alternatives (and allOf parts).
    let mut known: Vec<&str> = Vec::new();
    let mut open_map: Option<&Value> = None;
    for s in &schemas {
        if let Some(props) = s.get("properties").and_then(|p| p.as_object()) {
            known.extend(props.keys().map(|k| k.as_str()));
        }
        match s.get("additionalProperties") {
            Some(Value::Bool(false)) | None => {}
            Some(Value::Bool(true)) => return None,
            Some(schema) => open_map = Some(schema),
        }
    }
    for (k, v) in raw {
        let sub = schemas.iter().find_map(|s| s.get("properties").and_then(|p| p.get(k)));
        let sub = match (sub, open_map) {
            (Some(sub), _) => sub,
            (None, Some(map_values)) => map_values,
            (None, None) => {
                path.push(k.clone());
                let help = match crate::spec::did_you_mean(k, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if known.is_empty() => "this table takes no parameters".into(),
                    None => {
                        let mut sorted = known.clone();
                        sorted.sort();
                        format!("known keys: {}", sorted.join(", "))
                    }
                };
                return Some(ParamError {
                    path: path.clone(),
                    message: format!("unknown key `{k}`"),
                    help: Some(help),
                });
            }
        };
        path.push(k.clone());
        let found = match v {
            toml::Value::Table(t) => check_table(t, root, sub, path),
            toml::Value::Array(items) => {
                let item_schema = resolve(root, sub).get("items");
                item_schema.and_then(|is| {
                    items.iter().enumerate().find_map(|(i, item)| {
                        let toml::Value::Table(t) = item else { return None };
                        path.push(i.to_string());
                        let r = check_table(t, root, is, path);
                        path.pop();
                        r
                    })
                })
            }
            _ => None,
        };
        if found.is_some() {
            return found;
        }
        path.pop();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Deserialize, JsonSchema, Default)]
    #[allow(dead_code)]
    struct Shared {
        backbone: String,
        anchors: Anchors,
    }
    #[derive(Deserialize, JsonSchema, Default)]
    #[allow(dead_code)]
    struct Anchors {
        sizes: Vec<f64>,
    }
    #[derive(Deserialize, JsonSchema, Default)]
    #[allow(dead_code)]
    struct Params {
        lr: f64,
        #[serde(flatten)]
        model: Shared,
        extra: Option<Anchors>,
        scanners: BTreeMap<String, Anchors>,
    }

    fn check(text: &str) -> Option<ParamError> {
        let schema = schemars::schema_for!(Params);
        unknown_key(&toml::from_str(text).unwrap(), schema.as_value())
    }

    #[test]
    fn flattened_keys_are_known_and_typos_are_found_at_any_depth() {
        assert!(check("lr = 1\nbackbone = \"r18\"\nanchors = { sizes = [1.0] }").is_none());
        let e = check("lr = 1\nbakbone = \"r18\"").unwrap();
        assert_eq!(e.path, ["bakbone"]);
        assert_eq!(e.help.as_deref(), Some("did you mean `backbone`?"));
        let e = check("anchors = { size = [1.0] }").unwrap();
        assert_eq!(e.path, ["anchors", "size"]);
        let e = check("extra = { sizez = [1.0] }").unwrap();
        assert_eq!(e.path, ["extra", "sizez"]);
        // Map values are checked against the value schema; map keys are free.
        assert!(check("scanners = { XR = { sizes = [1.0] } }").is_none());
        let e = check("scanners = { XR = { sise = [1.0] } }").unwrap();
        assert_eq!(e.path, ["scanners", "XR", "sise"]);
    }
}
