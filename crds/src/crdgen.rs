//! Rendering the CRDs as the YAML that is committed under `crds/yaml/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

use crate::{MediaFleet, MediaNode, Room};

/// Failure to render a CRD.
#[derive(Debug, thiserror::Error)]
pub enum CrdgenError {
    /// The CRD could not be serialised to YAML.
    #[error("cannot render CRD {name} as YAML: {source}")]
    Yaml {
        /// CRD name.
        name: String,
        /// Underlying error.
        source: serde_saphyr::SerializeError,
    },
    /// The CRD could not be converted to JSON for clean-up.
    #[error("cannot convert CRD {name} to JSON: {source}")]
    Json {
        /// CRD name.
        name: String,
        /// Underlying error.
        source: serde_json::Error,
    },
}

/// String formats the API server knows. Rust integer widths (`uint32`…) are not among them
/// and make the API server log warnings, so they are dropped; bounds carry the meaning.
pub const KNOWN_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "date-time",
    "int32",
    "int64",
    "float",
    "double",
];

/// The three CRDs as applied to a cluster (as JSON values, tidied), with the file name each is
/// committed under.
pub fn all() -> Result<Vec<(&'static str, Value)>, CrdgenError> {
    Ok(vec![
        ("mediafleet.yaml", clean(&MediaFleet::crd())?),
        ("medianode.yaml", clean(&MediaNode::crd())?),
        ("room.yaml", clean(&Room::crd())?),
    ])
}

/// Drops unknown formats and writes integral bounds as integers (`minimum: 0`, not `0.0`).
fn clean(crd: &CustomResourceDefinition) -> Result<Value, CrdgenError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let mut value =
        serde_json::to_value(crd).map_err(|source| CrdgenError::Json { name, source })?;
    tidy(&mut value);
    Ok(value)
}

fn tidy(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| !KNOWN_FORMATS.contains(&f))
            {
                map.remove("format");
            }
            for key in ["minimum", "maximum"] {
                if let Some(Value::Number(n)) = map.get(key)
                    && let Some(f) = n.as_f64()
                    && f.fract() == 0.0
                    && f.abs() < 9.0e15
                {
                    map.insert(key.into(), Value::from(f as i64));
                }
            }
            map.values_mut().for_each(tidy);
        }
        Value::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}

/// Renders one CRD as a YAML document with a header saying it is generated.
pub fn render(crd: &Value) -> Result<String, CrdgenError> {
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let body = serde_saphyr::to_string(crd).map_err(|source| CrdgenError::Yaml { name, source })?;
    Ok(format!(
        "# Generated from the ruche-crds types by `make crds`. Do not edit.\n---\n{body}"
    ))
}
