//! Typing a TOML table into a params struct with errors a user can act on: unknown keys (found
//! from the struct's JSON schema, so flattened groups are known too), wrong types, missing keys
//! and bad enum values, each located by its path inside the table, with a "did you mean".
//! Stage tables and `[run]` are typed this way.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::error::ParamError;

/// Types `raw` as `T`.
pub fn from_table<T: DeserializeOwned + JsonSchema>(raw: &toml::Table) -> Result<T, ParamError> {
    let schema = schemars::schema_for!(T);
    if let Some(e) = crate::schema_check::unknown_key(raw, schema.as_value()) {
        return Err(e);
    }
    serde_path_to_error::deserialize(toml::Value::Table(raw.clone())).map_err(|e| {
        let mut path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        let inner = e.into_inner();
        let message = inner.message().trim().to_string();
        param_error_from_serde(&mut path, &message)
    })
}

/// Turns serde's messages into located, helpful ones.
fn param_error_from_serde(path: &mut Vec<String>, message: &str) -> ParamError {
    // serde: "unknown field `lrr`, expected one of `lr`, `epochs`" (or "expected `lr`").
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default().to_string();
        let expected: Vec<&str> =
            rest.split('`').skip(1).enumerate().filter(|(i, _)| i % 2 == 1).map(|(_, s)| s).collect();
        if path.last() != Some(&field) {
            path.push(field.clone());
        }
        let help = match crate::spec::did_you_mean(&field, expected.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None if expected.is_empty() => "this table takes no parameters".to_string(),
            None => format!("known keys: {}", expected.join(", ")),
        };
        return ParamError { path: path.clone(), message: format!("unknown key `{field}`"), help: Some(help) };
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default();
        return ParamError { path: path.clone(), message: format!("missing required key `{field}`"), help: None };
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let given = rest.split('`').next().unwrap_or_default().to_string();
        let expected: Vec<&str> =
            rest.split('`').skip(1).enumerate().filter(|(i, _)| i % 2 == 1).map(|(_, s)| s).collect();
        let help = match crate::spec::did_you_mean(&given, expected.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("one of: {}", expected.join(", ")),
        };
        return ParamError { path: path.clone(), message: format!("`{given}` is not a valid value"), help: Some(help) };
    }
    ParamError { path: path.clone(), message: message.to_string(), help: None }
}
