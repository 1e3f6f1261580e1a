//! docs/output-schema.json: valid JSON Schema (draft 2020-12), in step with the code and its
//! page, and strict enough to reject broken lines. Every line the other tests see is checked
//! against it in `common::json_lines`.
mod common;

use common::*;
use serde_json::{json, Value};

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_schema_is_valid_draft_2020_12() {
    let schema = output_schema_json();
    if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
        panic!("docs/output-schema.json is not a valid draft 2020-12 schema: {e}");
    }
    assert_eq!(schema["properties"]["schema_version"]["const"], dfscan::report::SCHEMA_VERSION);
}

#[test]
fn the_page_documents_every_field() {
    let schema = output_schema_json();
    let page = std::fs::read_to_string(repo().join("docs/output-schema.md")).unwrap();
    let mut fields: Vec<String> = schema["properties"].as_object().unwrap().keys().cloned().collect();
    for def in schema["$defs"].as_object().unwrap().values() {
        fields.extend(def["properties"].as_object().unwrap().keys().cloned());
    }
    for field in fields {
        assert!(page.contains(&format!("`{field}`")), "docs/output-schema.md does not mention `{field}`");
    }
    // Its example lines are valid lines.
    let example = page.split("```json\n").nth(1).and_then(|rest| rest.split("```").next()).expect("an example block");
    assert_eq!(parse_lines(example).len(), 2);
}

/// A real line, then broken copies of it: each must be rejected.
#[test]
fn the_schema_rejects_broken_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let model = untrained_weights(tmp.path());
    let missing = tmp.path().join("missing.mp4");
    let out = dfscan(&["scan", "-q", "--frames", "2", "--per-frame", "--model", s(&model), s(&samples().join("astronaut_pan.mp4")), s(&samples().join("no_face.mp4")), s(&missing)]);
    let lines = json_lines(&out);
    let (ok, no_face, err) = (line_for(&lines, "astronaut_pan.mp4").clone(), line_for(&lines, "no_face.mp4").clone(), line_for(&lines, "missing.mp4").clone());
    assert!(output_schema().is_valid(&ok) && output_schema().is_valid(&no_face) && output_schema().is_valid(&err));
    let broken: Vec<(&str, Value)> = vec![
        ("missing score", without(&ok, "score")),
        ("unknown field", with(&ok, "surprise", json!(1))),
        ("ok without a score", with(&ok, "score", Value::Null)),
        ("ok with an error", with(&ok, "error", json!("but also this"))),
        ("score above 1", with(&ok, "score", json!(1.5))),
        ("verdict not fake/real", with(&ok, "verdict", json!("maybe"))),
        ("future version", with(&ok, "schema_version", json!(6))),
        ("no face with a score", with(&no_face, "score", json!(0.5))),
        ("no face with faces", with(&no_face, "faces", json!(3))),
        ("a scored verdict without a score", with(&no_face, "verdict", json!("real"))),
        ("uncertain without a reason", with(&ok, "verdict", json!("uncertain"))),
        ("a reason for a sure verdict", with(&ok, "verdict_reason", json!("why"))),
        ("risk above 1", with(&ok, "ood_risk", json!(1.5))),
        ("no models", with(&ok, "models", json!([]))),
        ("a model of no known kind", {
            let mut v = ok.clone();
            v["models"][0]["kind"] = json!("oracle");
            v
        }),
        ("short model hash", with(&ok, "model", json!({"name": "m", "weights": "w", "blake3": "abc"}))),
        ("box of three", {
            let mut v = ok.clone();
            v["frames"][0]["faces"][0]["box"] = json!([1, 2, 3]);
            v
        }),
        ("an attribution on a real verdict", {
            let real = with(&with(&ok, "verdict", json!("real")), "attribution_model", ok["model"].clone());
            with(&real, "attribution", json!({"family": "lip_sync", "family_p": 0.9, "method": "Wav2Lip", "method_p": 0.8}))
        }),
        ("an attribution without its model", with(&with(&ok, "verdict", json!("fake")), "attribution", Value::Null)),
        ("a family of no known kind", {
            let fake = with(&with(&ok, "verdict", json!("fake")), "attribution_model", ok["model"].clone());
            with(&fake, "attribution", json!({"family": "photoshop", "family_p": 0.9, "method": "unknown", "method_p": 0.1}))
        }),
        ("error without a reason", without(&err, "error")),
        ("error with a score", with(&err, "score", json!(0.5))),
    ];
    for (what, line) in broken {
        assert!(!output_schema().is_valid(&line), "the schema accepts a line with {what}: {line}");
    }
}

fn with(line: &Value, key: &str, value: Value) -> Value {
    let mut line = line.clone();
    line[key] = value;
    line
}

fn without(line: &Value, key: &str) -> Value {
    let mut line = line.clone();
    line.as_object_mut().unwrap().remove(key);
    line
}
