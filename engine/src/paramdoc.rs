//! Parameter documentation for `pipeline stages`, read from the params' JSON schema (doc
//! comments, types) and their `Default` (default values): the code is the documentation.

use serde::Serialize;
use serde_json::Value;

/// One parameter as `pipeline stages` documents it.
#[derive(Debug, Clone, Serialize)]
pub struct ParamDoc {
    pub name: String,
    pub ty: String,
    pub default: String,
    pub doc: String,
}

pub fn docs_from_schema(schema: &Value, defaults: &Value) -> Vec<ParamDoc> {
    let mut out = Vec::new();
    walk_object(schema, schema, defaults, "", &mut out);
    out
}

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    if let Some(r) = node.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next().unwrap_or_default();
        if let Some(def) = root.get("$defs").and_then(|d| d.get(name)) {
            return def;
        }
    }
    node
}

/// The properties of an object schema, with those of a `$ref` beside them (a tagged enum's
/// variant: its tag, then the variant's fields), in that order.
fn properties<'a>(root: &'a Value, node: &'a Value) -> Vec<(&'a String, &'a Value)> {
    let own = node.get("properties").and_then(|p| p.as_object()).into_iter().flatten();
    let target = resolve(root, node);
    let referred = (!std::ptr::eq(target, node))
        .then(|| target.get("properties").and_then(|p| p.as_object()))
        .flatten()
        .into_iter()
        .flatten();
    own.chain(referred).collect()
}

/// The alternatives of a `oneOf` (a flattened tagged enum, e.g. a detector family), each with
/// the value of its tag: the property whose schema is a `const`.
fn alternatives<'a>(root: &'a Value, node: &'a Value) -> Vec<(String, Vec<(&'a String, &'a Value)>)> {
    let Some(items) = node.get("oneOf").and_then(|v| v.as_array()) else { return Vec::new() };
    items
        .iter()
        .map(|item| {
            let props = properties(root, item);
            let tag = props
                .iter()
                .find_map(|(name, p)| p.get("const").and_then(|c| c.as_str()).map(|c| format!("{name} = \"{c}\"")));
            (tag.unwrap_or_default(), props)
        })
        .collect()
}

fn walk_object(root: &Value, node: &Value, defaults: &Value, prefix: &str, out: &mut Vec<ParamDoc>) {
    let node = resolve(root, node);
    let Some(props) = node.get("properties").and_then(|p| p.as_object()) else { return };
    walk_properties(root, props.iter().collect(), defaults, prefix, out);
    // A flattened tagged enum: the tag once (its values joined), then each field once, marked
    // with the alternatives it belongs to unless all have it.
    let alts = alternatives(root, node);
    let mut seen: Vec<&String> = Vec::new();
    for (_, fields) in &alts {
        for (name, prop) in fields {
            if seen.contains(name) {
                continue;
            }
            seen.push(name);
            let owners: Vec<&str> =
                alts.iter().filter(|(_, f)| f.iter().any(|(n, _)| n == name)).map(|(t, _)| t.as_str()).collect();
            let start = out.len();
            if let Some(values) = tag_values(&alts, name) {
                let default = show_default(&defaults.get(*name).cloned().unwrap_or(Value::Null));
                let doc = "Chooses among the alternatives below (a field marked \"only with …\" belongs to one).";
                out.push(ParamDoc { name: (*name).clone(), ty: values, default, doc: doc.into() });
                continue;
            }
            walk_properties(root, vec![(name, prop)], defaults, prefix, out);
            if owners.len() < alts.len() {
                for d in &mut out[start..] {
                    let only = format!("(only with {})", owners.join(" or "));
                    d.doc = if d.doc.is_empty() { only } else { format!("{} {only}", d.doc) };
                }
            }
        }
    }
}

/// `"a" | "b"` when `name` is the alternatives' tag.
fn tag_values(alts: &[(String, Vec<(&String, &Value)>)], name: &str) -> Option<String> {
    let values: Vec<String> = alts
        .iter()
        .filter_map(|(_, f)| f.iter().find(|(n, _)| *n == name))
        .map(|(_, p)| p.get("const").map(|c| c.to_string()))
        .collect::<Option<_>>()?;
    (values.len() == alts.len()).then(|| values.join(" | "))
}

fn walk_properties(
    root: &Value,
    props: Vec<(&String, &Value)>,
    defaults: &Value,
    prefix: &str,
    out: &mut Vec<ParamDoc>,
) {
    for (name, prop) in props {
        let full = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        // The type's `Default`, else the schema's own (a field of an enum variant that is not the
        // default one).
        let default = defaults.get(name).or_else(|| prop.get("default")).cloned().unwrap_or(Value::Null);
        let target = resolve(root, prop);
        let doc = prop
            .get("description")
            .or_else(|| target.get("description"))
            .and_then(|d| d.as_str())
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if target.get("properties").is_some() {
            out.push(ParamDoc { name: full.clone(), ty: "table".into(), default: String::new(), doc });
            walk_object(root, target, &default, &full, out);
            continue;
        }
        out.push(ParamDoc { name: full, ty: type_name(root, prop), default: show_default(&default), doc });
    }
}

fn show_default(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

fn type_name(root: &Value, node: &Value) -> String {
    let node = resolve(root, node);
    if let Some(values) = node.get("enum").and_then(|e| e.as_array()) {
        return values
            .iter()
            .map(|v| v.as_str().map(|s| format!("\"{s}\"")).unwrap_or(v.to_string()))
            .collect::<Vec<_>>()
            .join(" | ");
    }
    if let Some(c) = node.get("const") {
        return c.as_str().map(|s| format!("\"{s}\"")).unwrap_or(c.to_string());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(items) = node.get(key).and_then(|e| e.as_array()) {
            let nullable = items.iter().any(|i| i.get("type").and_then(|t| t.as_str()) == Some("null"));
            let parts: Vec<String> = items
                .iter()
                .filter(|i| i.get("type").and_then(|t| t.as_str()) != Some("null"))
                .map(|i| type_name(root, i))
                .collect();
            let joined = parts.join(" | ");
            return if nullable { format!("{joined} (optional)") } else { joined };
        }
    }
    match node.get("type") {
        Some(Value::String(t)) => match t.as_str() {
            "array" => match node.get("items") {
                Some(items) => format!("list of {}", type_name(root, items)),
                None => "list".into(),
            },
            "object" => "table".into(),
            "number" => "float".into(),
            other => other.to_string(),
        },
        Some(Value::Array(ts)) => {
            let nullable = ts.iter().any(|t| t == "null");
            let parts: Vec<String> = ts
                .iter()
                .filter_map(|t| t.as_str())
                .filter(|t| *t != "null")
                .map(|t| if t == "number" { "float".to_string() } else { t.to_string() })
                .collect();
            let joined = parts.join(" | ");
            if nullable { format!("{joined} (optional)") } else { joined }
        }
        _ => "value".into(),
    }
}

#[cfg(test)]
mod tests {
    use schemars::JsonSchema;
    use serde::Serialize;

    use super::*;

    #[derive(Serialize, JsonSchema, Default)]
    #[serde(default)]
    struct Shared {
        /// Channels.
        width: i64,
    }
    #[derive(Serialize, JsonSchema, Default)]
    #[serde(default)]
    struct Retina {
        #[serde(flatten)]
        shared: Shared,
        /// Anchor sizes.
        anchors: Vec<f64>,
    }
    #[derive(Serialize, JsonSchema)]
    #[serde(default)]
    struct Center {
        #[serde(flatten)]
        shared: Shared,
        /// Heatmap sigma.
        sigma: f64,
    }
    impl Default for Center {
        fn default() -> Self {
            Center { shared: Shared::default(), sigma: 0.5 }
        }
    }
    #[derive(Serialize, JsonSchema)]
    #[serde(tag = "detector", rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Family {
        Retina(Retina),
        Center(Center),
    }
    #[derive(Serialize, JsonSchema)]
    struct Params {
        /// Learning rate.
        lr: f64,
        #[serde(flatten)]
        model: Family,
    }

    #[test]
    fn a_flattened_tagged_enum_lists_its_tag_and_each_field_once_with_its_family() {
        let schema = schemars::schema_for!(Params);
        let defaults = serde_json::to_value(Params { lr: 0.1, model: Family::Retina(Retina::default()) }).unwrap();
        let docs = docs_from_schema(schema.as_value(), &defaults);
        let find = |n: &str| docs.iter().find(|d| d.name == n).unwrap_or_else(|| panic!("no {n}: {docs:?}"));
        assert_eq!(docs.iter().filter(|d| d.name == "width").count(), 1, "{docs:?}");
        assert_eq!(find("detector").ty, "\"retina\" | \"center\"");
        assert_eq!(find("detector").default, "\"retina\"");
        assert_eq!(find("width").doc, "Channels.");
        assert_eq!(find("anchors").doc, "Anchor sizes. (only with detector = \"retina\")");
        assert_eq!(
            (find("sigma").doc.as_str(), find("sigma").default.as_str()),
            ("Heatmap sigma. (only with detector = \"center\")", "0.5")
        );
        assert_eq!(find("lr").doc, "Learning rate.");
    }
}
