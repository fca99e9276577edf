//! The VS Code extension's settings mirror the server's config
//! (`wick::config::KEYS`): same names under `wick.`, same JSON types, same
//! descriptions, defaults that the server accepts and that are its own
//! defaults, and no extra settings besides the client-only ones the
//! extension keeps to itself.

use serde_json::{json, Map, Value};
use wick::config::{Config, KEYS};

/// Settings only the extension reads; also listed in editors/vscode/src/logic.ts.
const CLIENT_ONLY: &[&str] = &["serverPath", "enable", "trace.server"];

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn properties() -> Map<String, Value> {
    let path = root().join("editors/vscode/package.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let pkg: Value = serde_json::from_str(&text).expect("package.json is JSON");
    pkg["contributes"]["configuration"]["properties"].as_object().expect("contributes.configuration.properties").clone()
}

fn types(prop: &Value) -> Vec<String> {
    match &prop["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
        other => panic!("type must be a string or an array, got {other}"),
    }
}

#[test]
fn every_server_key_is_a_setting_with_its_type_and_description() {
    let props = properties();
    for (name, ty, description) in KEYS {
        let key = format!("wick.{name}");
        let prop = props.get(&key).unwrap_or_else(|| panic!("package.json lacks {key}"));
        let ts = types(prop);
        assert_eq!(ts.first().map(String::as_str), Some(*ty), "{key}: type {ts:?}, server says {ty}");
        assert!(ts.iter().skip(1).all(|t| t == "null"), "{key}: only null may be added to the type, got {ts:?}");
        assert_eq!(prop["description"].as_str(), Some(*description), "{key}: description differs from config::KEYS");
        assert!(prop.get("default").is_some(), "{key} has no default");
    }
}

#[test]
fn no_settings_besides_the_server_keys_and_the_client_only_ones() {
    for key in properties().keys() {
        let name = key.strip_prefix("wick.").unwrap_or_else(|| panic!("{key} is not under wick."));
        assert!(
            KEYS.iter().any(|(k, _, _)| *k == name) || CLIENT_ONLY.contains(&name),
            "{key} is neither a server setting (config::KEYS) nor a documented client-only one"
        );
    }
}

#[test]
fn the_defaults_are_the_servers_defaults() {
    let props = properties();
    let mut defaults = Map::new();
    for (name, _, _) in KEYS {
        defaults.insert(name.to_string(), props[&format!("wick.{name}")]["default"].clone());
    }
    // Flat (initializationOptions) and nested under "wick" (didChangeConfiguration).
    for settings in [Value::Object(defaults.clone()), json!({ "wick": defaults })] {
        let mut config = Config::default();
        let problems = config.update(&settings);
        assert!(problems.is_empty(), "the server rejects the extension's defaults: {}", problems.message());
        assert_eq!(config, Config::default());
    }
}

#[test]
fn the_extension_keeps_the_same_client_only_list() {
    let path = root().join("editors/vscode/src/logic.ts");
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let line = src.lines().find(|l| l.starts_with("export const CLIENT_ONLY")).expect("CLIENT_ONLY in logic.ts");
    let list = &line[line.find('[').unwrap() + 1..line.rfind(']').unwrap()];
    let names: Vec<&str> = list.split(',').map(|s| s.trim().trim_matches('\'')).filter(|s| !s.is_empty()).collect();
    assert_eq!(names, CLIENT_ONLY);
}
