//! The CRDs as a real API server sees them: committed YAML in sync with the types, schemas
//! structural, and every CEL rule evaluated against good and bad objects.

// Test helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kube::core::cel::Validator;
use ruche_crds::crdgen;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn crds() -> Vec<(&'static str, Value)> {
    match crdgen::all() {
        Ok(c) => c,
        Err(e) => panic!("cannot build CRDs: {e}"),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn schema_of<'a>(crds: &'a [(&'static str, Value)], kind: &str) -> &'a Value {
    crds.iter()
        .find(|(_, c)| c.pointer("/spec/names/kind").and_then(Value::as_str) == Some(kind))
        .and_then(|(_, c)| c.pointer("/spec/versions/0/schema/openAPIV3Schema"))
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"))
}

fn kind_of(doc: &Value) -> &str {
    doc.get("kind").and_then(Value::as_str).unwrap_or_default()
}

#[test]
fn committed_yaml_matches_the_types() {
    for (file, crd) in crds() {
        let path = root().join("yaml").join(file);
        let rendered = crdgen::render(&crd).unwrap_or_else(|e| panic!("{e}"));
        let committed = read(&path);
        assert!(
            rendered == committed,
            "{} drifted from the Rust types: run `make crds` and commit the result",
            path.display()
        );
    }
}

#[test]
fn the_helm_charts_crds_are_the_committed_ones() {
    let chart = root().join("../charts/ruche/files/crds");
    for (file, _) in crds() {
        assert!(
            read(&chart.join(file)) == read(&root().join("yaml").join(file)),
            "charts/ruche/files/crds/{file} differs from crds/yaml/{file}: run `make crds` and commit the result"
        );
    }
}

#[test]
fn committed_yaml_parses_back_to_the_same_crd() {
    for (file, crd) in crds() {
        let docs = yaml_docs(&root().join("yaml").join(file));
        assert_eq!(docs.len(), 1, "{file}: one document expected");
        assert_eq!(docs[0], crd, "{file}: YAML round trip changed the CRD");
    }
}

/// What the API server calls a structural schema, plus the rules it enforces on list maps,
/// defaults and formats. Returns every violation with its path.
fn structural_violations(schema: &Value, path: &str, in_junctor: bool, out: &mut Vec<String>) {
    let Some(obj) = schema.as_object() else {
        out.push(format!("{path}: schema is not an object"));
        return;
    };
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    for forbidden in [
        "$ref",
        "definitions",
        "$schema",
        "patternProperties",
        "dependencies",
        "const",
        "oneOf",
        "allOf",
        "not",
    ] {
        if obj.contains_key(forbidden) {
            out.push(format!(
                "{path}: `{forbidden}` is not allowed in a structural schema"
            ));
        }
    }
    if obj.get("uniqueItems") == Some(&Value::Bool(true)) {
        out.push(format!("{path}: uniqueItems: true is forbidden"));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        out.push(format!(
            "{path}: properties and additionalProperties are mutually exclusive"
        ));
    }
    if obj.get("additionalProperties") == Some(&Value::Bool(false)) {
        out.push(format!("{path}: additionalProperties: false is forbidden"));
    }
    if in_junctor {
        for k in [
            "description",
            "type",
            "default",
            "additionalProperties",
            "nullable",
        ] {
            if obj.contains_key(k) && !int_or_string {
                out.push(format!("{path}: `{k}` inside anyOf"));
            }
        }
    } else {
        let ty = obj.get("type").and_then(Value::as_str);
        match ty {
            Some("object" | "array" | "string" | "integer" | "number" | "boolean") => {}
            Some(other) => out.push(format!("{path}: unknown type `{other}`")),
            None if int_or_string || preserve => {}
            None => out.push(format!("{path}: no type")),
        }
        if ty == Some("array") && !obj.contains_key("items") {
            out.push(format!("{path}: array without items"));
        }
        if int_or_string && ty.is_some() {
            out.push(format!("{path}: int-or-string must not set a type"));
        }
    }
    if let Some(Value::String(f)) = obj.get("format")
        && !crdgen::KNOWN_FORMATS.contains(&f.as_str())
    {
        out.push(format!("{path}: format `{f}` is unknown to the API server"));
    }
    list_map_violations(obj, path, out);
    if let Some(rules) = obj
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for rule in rules {
            let has_message = rule
                .get("message")
                .and_then(Value::as_str)
                .is_some_and(|m| !m.is_empty());
            if !has_message {
                out.push(format!(
                    "{path}: CEL rule {rule} has no message telling the user what to fix"
                ));
            }
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            structural_violations(sub, &format!("{path}.{name}"), in_junctor, out);
        }
    }
    if let Some(items) = obj.get("items") {
        structural_violations(items, &format!("{path}[]"), in_junctor, out);
    }
    if let Some(Value::Object(_)) = obj.get("additionalProperties") {
        structural_violations(
            &obj["additionalProperties"],
            &format!("{path}{{}}"),
            in_junctor,
            out,
        );
    }
    if let Some(any) = obj.get("anyOf").and_then(Value::as_array) {
        if !int_or_string {
            out.push(format!("{path}: anyOf is only allowed for int-or-string"));
        }
        for (i, sub) in any.iter().enumerate() {
            structural_violations(sub, &format!("{path}.anyOf[{i}]"), true, out);
        }
    }
}

/// A `x-kubernetes-list-type: map` needs scalar keys that are required or defaulted.
fn list_map_violations(obj: &serde_json::Map<String, Value>, path: &str, out: &mut Vec<String>) {
    if let Some(list_type) = obj.get("x-kubernetes-list-type").and_then(Value::as_str) {
        if !["atomic", "set", "map"].contains(&list_type) {
            out.push(format!("{path}: bad list type {list_type}"));
        }
        if list_type == "map" {
            let items = obj.get("items");
            let keys = obj
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array);
            let required: BTreeSet<&str> = items
                .and_then(|i| i.get("required"))
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match keys {
                None => out.push(format!("{path}: list map without keys")),
                Some(keys) => {
                    for key in keys.iter().filter_map(Value::as_str) {
                        let prop = items.and_then(|i| i.pointer(&format!("/properties/{key}")));
                        let scalar = prop
                            .and_then(|p| p.get("type"))
                            .and_then(Value::as_str)
                            .is_some_and(|t| {
                                ["string", "integer", "boolean", "number"].contains(&t)
                            });
                        let defaulted = prop.is_some_and(|p| p.get("default").is_some());
                        if !scalar {
                            out.push(format!(
                                "{path}: list map key `{key}` is not a scalar property"
                            ));
                        }
                        if !required.contains(key) && !defaulted {
                            out.push(format!(
                                "{path}: list map key `{key}` must be required or defaulted"
                            ));
                        }
                        if prop.is_some_and(|p| p.get("nullable") == Some(&Value::Bool(true))) {
                            out.push(format!("{path}: list map key `{key}` must not be nullable"));
                        }
                    }
                }
            }
        }
    } else if obj.contains_key("x-kubernetes-list-map-keys") {
        out.push(format!("{path}: list map keys without list type map"));
    }
}

#[test]
fn schemas_are_structural() {
    for (file, crd) in crds() {
        let schema = schema_of(
            &[(file, crd.clone())],
            crd["spec"]["names"]["kind"].as_str().unwrap_or_default(),
        )
        .clone();
        let mut violations = Vec::new();
        structural_violations(&schema, "", false, &mut violations);
        assert_eq!(schema["type"], "object", "{file}: root must be an object");
        // `metadata` may only constrain name and generateName; ours leaves it to the server.
        if let Some(meta) = schema.pointer("/properties/metadata") {
            let extra: Vec<_> = meta
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.as_str())
                .filter(|k| *k != "type")
                .collect();
            assert!(extra.is_empty(), "{file}: metadata schema sets {extra:?}");
        }
        assert!(
            violations.is_empty(),
            "{file} is not structural:\n{}",
            violations.join("\n")
        );
    }
}

#[test]
fn every_kind_has_status_printer_columns_and_short_names() {
    for (file, crd) in crds() {
        let version = &crd["spec"]["versions"][0];
        assert_eq!(crd["spec"]["scope"], "Namespaced", "{file}");
        assert!(
            version["subresources"]["status"].is_object(),
            "{file}: status subresource"
        );
        let columns = version["additionalPrinterColumns"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(columns >= 4, "{file}: printer columns");
        assert!(
            crd["spec"]["names"]["shortNames"]
                .as_array()
                .is_some_and(|s| !s.is_empty()),
            "{file}: short names"
        );
        let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert!(
            status["observedGeneration"].is_object(),
            "{file}: status.observedGeneration"
        );
        assert_eq!(
            status["conditions"]["x-kubernetes-list-type"], "map",
            "{file}: conditions keyed by type"
        );
        assert_eq!(
            status["conditions"]["x-kubernetes-list-map-keys"][0], "type",
            "{file}"
        );
    }
    let fleet = crds()
        .into_iter()
        .find(|(f, _)| *f == "mediafleet.yaml")
        .map(|(_, c)| c)
        .unwrap_or_default();
    let scale = &fleet["spec"]["versions"][0]["subresources"]["scale"];
    assert_eq!(scale["specReplicasPath"], ".spec.replicas");
    assert_eq!(scale["statusReplicasPath"], ".status.replicas");
}

fn all_rules(schema: &Value, out: &mut BTreeSet<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(rules) = map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
            {
                out.extend(
                    rules
                        .iter()
                        .filter_map(|r| r.get("rule").and_then(Value::as_str))
                        .map(String::from),
                );
            }
            map.values().for_each(|v| all_rules(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| all_rules(v, out)),
        _ => {}
    }
}

#[test]
fn samples_pass_every_rule_and_deserialize() {
    let crds = crds();
    let dir = root().join("../manifests/samples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        for doc in yaml_docs(&path) {
            let kind = kind_of(&doc).to_string();
            let result = Validator::new().validate(schema_of(&crds, &kind), &doc, None);
            assert!(
                result.is_ok(),
                "{}: {kind} refused: {result:?}",
                path.display()
            );
            let typed = match kind.as_str() {
                "MediaFleet" => serde_json::from_value::<ruche_crds::MediaFleet>(doc.clone()).err(),
                "MediaNode" => serde_json::from_value::<ruche_crds::MediaNode>(doc.clone()).err(),
                "Room" => serde_json::from_value::<ruche_crds::Room>(doc.clone()).err(),
                other => panic!("{}: unexpected kind {other}", path.display()),
            };
            assert!(
                typed.is_none(),
                "{}: {kind} does not deserialize: {typed:?}",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(seen >= 4, "expected samples of every kind, saw {seen}");
}

#[test]
fn bad_objects_are_refused_with_their_message_and_every_rule_is_exercised() {
    let crds = crds();
    let mut declared = BTreeSet::new();
    for (_, crd) in &crds {
        all_rules(crd, &mut declared);
    }
    let mut fired = BTreeSet::new();
    let dir = root().join("tests/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for path in files {
        let text = read(&path);
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: no `# expect:` line", path.display()));
        let docs = yaml_docs(&path);
        let (old, new) = if text.contains("\n# update:") {
            (docs.first(), &docs[1])
        } else {
            (None, &docs[0])
        };
        let schema = schema_of(&crds, kind_of(new));
        let errors = match Validator::new().validate(schema, new, old) {
            Ok(()) => panic!(
                "{}: accepted, expected refusal with `{expect}`",
                path.display()
            ),
            Err(e) => e.into_vec(),
        };
        assert!(
            errors.iter().any(|e| e.message.contains(expect)),
            "{}: expected `{expect}`, got {:?}",
            path.display(),
            errors.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
        // Each sample breaks one rule: any other error means a rule fires by accident.
        assert!(
            errors.iter().all(|e| e.message.contains(expect)),
            "{}: unexpected extra errors {errors:?}",
            path.display()
        );
        fired.extend(errors.into_iter().map(|e| e.rule));
    }
    let unexercised: Vec<_> = declared.difference(&fired).collect();
    assert!(
        unexercised.is_empty(),
        "CEL rules with no failing sample in tests/invalid: {unexercised:#?}"
    );
}

#[test]
fn the_structural_check_catches_what_an_api_server_refuses() {
    let bad = serde_json::json!({
        "type": "object",
        "properties": {
            "untyped": { "description": "no type" },
            "list": { "type": "array" },
            "both": { "type": "object", "properties": {}, "additionalProperties": { "type": "string" } },
            "reference": { "$ref": "#/definitions/x" },
            "keyed": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": { "type": "object", "properties": { "name": { "type": "string" } } }
            },
            "odd": { "type": "integer", "format": "uint32" },
            "silent": { "type": "string", "x-kubernetes-validations": [{ "rule": "self != ''" }] }
        }
    });
    let mut out = Vec::new();
    structural_violations(&bad, "", false, &mut out);
    for expected in [
        ".untyped: no type",
        ".list: array without items",
        ".both: properties and additionalProperties are mutually exclusive",
        ".reference: `$ref` is not allowed",
        ".keyed: list map key `name` must be required or defaulted",
        ".odd: format `uint32` is unknown",
        ".silent: CEL rule",
    ] {
        assert!(
            out.iter().any(|v| v.starts_with(expected)),
            "missed `{expected}` in {out:#?}"
        );
    }
}

/// Where a CEL rule's cost could grow without bound, as the API server estimates it: a rule
/// is checked once per element of every list or map above it, and a string it reads is
/// costed at its `maxLength` (or the whole request size without one). An unbounded list above
/// a rule, or an unbounded string under it, makes the server refuse the CRD ("estimated rule
/// cost exceeds budget").
fn unbounded_rule_costs(schema: &Value, path: &str, repeats: u64, out: &mut Vec<String>) {
    let Some(map) = schema.as_object() else {
        return;
    };
    let has_rules = map
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    // An int-or-string is costed as a string of its maxLength, or of the whole request.
    let bounded_string = |s: &Value| {
        (s.get("type").and_then(Value::as_str) != Some("string")
            && s.get("x-kubernetes-int-or-string") != Some(&Value::Bool(true)))
            || s.get("maxLength").is_some()
            || s.get("enum").is_some()
    };
    if has_rules {
        if repeats == u64::MAX {
            out.push(format!(
                "{path}: a rule under a list or map with no maxItems/maxProperties"
            ));
        } else if repeats > 16 {
            out.push(format!("{path}: a rule checked up to {repeats} times"));
        }
        if !bounded_string(schema) {
            out.push(format!("{path}: a rule on a string with no maxLength"));
        }
        for (name, property) in map
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if !bounded_string(property) {
                out.push(format!(
                    "{path}.{name}: a string with no maxLength read by its parent's rule"
                ));
            }
        }
    }
    for (name, property) in map
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        unbounded_rule_costs(property, &format!("{path}.{name}"), repeats, out);
    }
    let bound = |key: &str| {
        map.get(key)
            .and_then(Value::as_u64)
            .map_or(u64::MAX, |n| repeats.saturating_mul(n))
    };
    if let Some(items) = map.get("items") {
        unbounded_rule_costs(items, &format!("{path}[]"), bound("maxItems"), out);
    }
    if let Some(values) = map.get("additionalProperties").filter(|v| v.is_object()) {
        unbounded_rule_costs(values, &format!("{path}{{}}"), bound("maxProperties"), out);
    }
}

#[test]
fn every_rule_has_a_bounded_cost() {
    for (file, crd) in crds() {
        let schema = crd
            .pointer("/spec/versions/0/schema/openAPIV3Schema")
            .unwrap_or_else(|| panic!("{file}: no schema"));
        let mut problems = Vec::new();
        unbounded_rule_costs(schema, "", 1, &mut problems);
        assert!(problems.is_empty(), "{file}:\n{}", problems.join("\n"));
    }
}

#[test]
fn the_cost_check_catches_an_unbounded_list_above_a_rule() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": { "windows": {
            "type": "array",
            "items": {
                "type": "object",
                "x-kubernetes-validations": [{ "rule": "self.start != self.end" }],
                "properties": {
                    "start": { "type": "string" },
                    "end": { "type": "string", "maxLength": 5 },
                    "buffer": {
                        "x-kubernetes-int-or-string": true,
                        "x-kubernetes-validations": [{ "rule": "string(self).matches('^[0-9]+%?$')" }],
                    },
                },
            },
        }},
    });
    let mut problems = Vec::new();
    unbounded_rule_costs(&schema, "", 1, &mut problems);
    assert_eq!(
        problems,
        [
            ".windows[]: a rule under a list or map with no maxItems/maxProperties",
            ".windows[].buffer: a string with no maxLength read by its parent's rule",
            ".windows[].start: a string with no maxLength read by its parent's rule",
            ".windows[].buffer: a rule under a list or map with no maxItems/maxProperties",
            ".windows[].buffer: a rule on a string with no maxLength",
        ]
    );
}
