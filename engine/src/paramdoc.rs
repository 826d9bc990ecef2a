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

fn walk_object(root: &Value, node: &Value, defaults: &Value, prefix: &str, out: &mut Vec<ParamDoc>) {
    let node = resolve(root, node);
    let Some(props) = node.get("properties").and_then(|p| p.as_object()) else { return };
    for (name, prop) in props {
        let full = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        let default = defaults.get(name).cloned().unwrap_or(Value::Null);
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
