//! The chart's values schema (`deploy/helm/wharf/values.schema.json`): its `$defs.repository` is generated
//! from the format registry, so the chart accepts exactly the formats and keys `wharf config check` does. The
//! rest of the file is written by hand. A test checks that the checked-in file is this generator's output;
//! `WHARF_UPDATE_SCHEMA=1 cargo test -p wharf-server values_schema` rewrites it.

use serde_json::{json, Map, Value};
use wharf_cache::FormatDescriptor;
use wharf_config::{KeyKind, KeySpec, Upstreams};

/// The line that opens the generated definition in the schema file, and the indentation of its lines.
const OPENING: &str = "    \"repository\": {";
const INDENT: &str = "    ";

/// The schema of every repository key, shared by the formats that read it.
fn key_schemas() -> Map<String, Value> {
    let hosts = |description: &str| {
        json!({
            "description": description,
            "type": "array",
            "items": { "type": "string", "minLength": 1 }
        })
    };
    let Value::Object(map) = json!({
        "upstream": { "$ref": "#/$defs/url" },
        "upstreams": {
            "description": "registry alias -> URL",
            "type": "object",
            "minProperties": 1,
            "additionalProperties": { "$ref": "#/$defs/url" }
        },
        "metadata_ttl": { "$ref": "#/$defs/duration" },
        "negative_ttl": { "$ref": "#/$defs/duration" },
        "credentials_file": { "type": "string", "minLength": 1 },
        "file_hosts": hosts("hosts (host[:port]) besides the upstream's that links and redirects may lead to"),
        "checksum_databases": hosts("checksum databases proxied under sumdb/<name>/"),
        "min_age": { "$ref": "#/$defs/duration" },
        "min_age_exempt": {
            "description": "names the release cooldown (min_age) does not apply to",
            "type": "array",
            "items": { "type": "string", "minLength": 1 }
        },
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

/// The schema of a format's own key, from its declared kind.
fn own_key_schema(key: &KeySpec) -> Value {
    let mut schema = match key.kind {
        KeyKind::Bool => json!({ "type": "boolean" }),
        KeyKind::Integer => json!({ "type": "integer", "minimum": 0 }),
        KeyKind::String => json!({ "type": "string" }),
        KeyKind::OneOf(choices) => json!({ "enum": choices }),
        KeyKind::Strings => {
            json!({ "type": "array", "items": { "type": "string", "minLength": 1 } })
        }
        KeyKind::Duration => json!({ "$ref": "#/$defs/duration" }),
        KeyKind::Size => json!({ "$ref": "#/$defs/size" }),
        KeyKind::Url => json!({ "$ref": "#/$defs/url" }),
        KeyKind::Path => json!({ "type": "string", "minLength": 1 }),
        KeyKind::StringMap => {
            json!({ "type": "object", "additionalProperties": { "type": "string" } })
        }
        KeyKind::Section(keys) => json!({
            "type": ["object", "null"],
            "additionalProperties": false,
            "properties": keys
                .iter()
                .map(|k| (k.name.to_owned(), own_key_schema(k)))
                .collect::<Map<String, Value>>(),
        }),
    };
    if let (Value::Object(map), false) = (&mut schema, key.doc.is_empty()) {
        if !map.contains_key("$ref") {
            map.insert("description".into(), Value::String(key.doc.to_owned()));
        }
    }
    schema
}

/// `$defs.repository` for `formats`: the served formats, every key some format reads, and per format which
/// upstream key it requires and which keys it refuses.
pub fn repository_schema(formats: &[&FormatDescriptor]) -> Value {
    let keys = key_schemas();
    let mut properties = Map::new();
    properties.insert(
        "format".into(),
        json!({
            "description": "the repository format",
            "enum": formats.iter().map(|d| d.name()).collect::<Vec<_>>(),
        }),
    );
    for (key, schema) in &keys {
        if formats.iter().any(|d| d.config.accepts(key)) {
            properties.insert(key.clone(), schema.clone());
        }
    }
    // Own keys: the first format's schema at the top (each format's rule below holds its own).
    for key in formats.iter().flat_map(|d| d.config.own_keys) {
        properties
            .entry(key.name.to_owned())
            .or_insert_with(|| own_key_schema(key));
    }
    let rules: Vec<Value> = formats
        .iter()
        .map(|d| {
            let required: &[&str] = match d.config.upstreams {
                Upstreams::One { .. } => &["upstream"],
                Upstreams::Aliased { .. } => &["upstreams"],
                Upstreams::None => &[],
            };
            let mut then_properties: Map<String, Value> = properties
                .keys()
                .filter(|key| !d.config.accepts(key))
                .map(|key| (key.clone(), Value::Bool(false)))
                .collect();
            // Two formats may declare an own key of the same name with different kinds.
            for key in d.config.own_keys {
                if properties.get(key.name) != Some(&own_key_schema(key)) {
                    then_properties.insert(key.name.to_owned(), own_key_schema(key));
                }
            }
            json!({
                "if": {
                    "properties": { "format": { "const": d.name() } },
                    "required": ["format"]
                },
                "then": { "required": required, "properties": then_properties }
            })
        })
        .collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["format"],
        "properties": properties,
        "allOf": rules,
    })
}

/// `current` (the schema file's text) with its `$defs.repository` replaced by the one generated for
/// `formats`, or why the file does not have the expected layout.
pub fn values_schema(current: &str, formats: &[&FormatDescriptor]) -> Result<String, String> {
    let start = current
        .find(&format!("\n{OPENING}\n"))
        .map(|i| i + 1)
        .ok_or_else(|| format!("no line `{OPENING}` in the schema"))?;
    let end_rel = current[start..]
        .find(&format!("\n{INDENT}}}"))
        .ok_or("the repository definition does not end")?;
    let end = start + end_rel + 1 + INDENT.len() + 1;
    let generated =
        serde_json::to_string_pretty(&repository_schema(formats)).map_err(|e| e.to_string())?;
    let mut text = String::with_capacity(current.len());
    text.push_str(&current[..start]);
    text.push_str(INDENT);
    text.push_str("\"repository\": ");
    for (i, line) in generated.lines().enumerate() {
        if i > 0 {
            text.push('\n');
            text.push_str(INDENT);
        }
        text.push_str(line);
    }
    text.push_str(&current[end..]);
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/helm/wharf/values.schema.json"
    );

    #[test]
    fn values_schema_matches_the_format_registry() {
        let current = std::fs::read_to_string(PATH).expect("read the chart's values schema");
        let generated = values_schema(&current, crate::FORMATS).expect("generate");
        serde_json::from_str::<Value>(&generated).expect("the generated schema is JSON");
        if std::env::var_os("WHARF_UPDATE_SCHEMA").is_some() {
            std::fs::write(PATH, &generated).expect("write the schema");
            return;
        }
        assert!(
            generated == current,
            "deploy/helm/wharf/values.schema.json is not what the format registry gives: run \
             `WHARF_UPDATE_SCHEMA=1 cargo test -p wharf-server values_schema` and commit the file"
        );
    }

    #[test]
    fn every_key_a_format_reads_has_a_schema() {
        let keys = key_schemas();
        let all = wharf_config::COMMON_KEYS
            .iter()
            .chain(wharf_config::OPTIONAL_KEYS)
            .chain(&["upstream", "upstreams"]);
        for key in all.filter(|k| **k != "format") {
            assert!(keys.contains_key(*key), "no schema for `{key}`");
        }
    }

    #[test]
    fn a_format_refuses_keys_it_does_not_read() {
        let schema = repository_schema(crate::FORMATS);
        let rules = schema["allOf"].as_array().unwrap();
        let rule = |format: &str| {
            rules
                .iter()
                .find(|r| r["if"]["properties"]["format"]["const"] == format)
                .unwrap()
        };
        let go = rule("go");
        assert_eq!(go["then"]["required"], json!(["upstream"]));
        assert_eq!(go["then"]["properties"]["file_hosts"], json!(false));
        assert_eq!(go["then"]["properties"]["upstreams"], json!(false));
        assert_eq!(rule("npm")["then"]["properties"]["file_hosts"], json!(null));
        let formats = schema["properties"]["format"]["enum"].as_array().unwrap();
        assert!(formats.contains(&json!("generic")), "{formats:?}");
        let generic = rule("generic")["then"]["properties"].clone();
        assert_eq!(generic["immutable"], json!(null));
        assert_eq!(generic["checksum_databases"], json!(false));
        assert_eq!(go["then"]["properties"]["immutable"], json!(false));
    }
}
