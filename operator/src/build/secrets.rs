//! The fleet's secrets: the key join tokens are signed with, and the admin API's bearer token.
//! They are created once, with random content, and never overwritten: a platform team may
//! replace them with its own (an Ed25519 key, say) and the operator keeps what it finds.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use ruche_crds::MediaFleet;

use super::pod::{ADMIN_FILE, KEY_FILE};
use super::{BuildError, labels};

/// Random text from the OS, `len` characters of an URL-safe alphabet.
pub use ruche_crds::random::text as random_text;

fn secret(
    fleet: &MediaFleet,
    name: String,
    key: &str,
    value: String,
) -> Result<Secret, BuildError> {
    let fleet_name = fleet.name_any();
    let owner = fleet.controller_owner_ref(&()).ok_or(BuildError::Missing {
        object: format!("MediaFleet {fleet_name}"),
        field: "metadata.uid",
    })?;
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: fleet.namespace(),
            labels: Some(labels::fleet(&fleet_name)),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(key.to_string(), value)])),
        type_: Some("Opaque".into()),
        ..Default::default()
    })
}

/// The join token key Secret, with a fresh 64-character HMAC secret.
pub fn join_key(fleet: &MediaFleet, secret_text: String) -> Result<Secret, BuildError> {
    secret(
        fleet,
        labels::join_key_secret(&fleet.name_any()),
        KEY_FILE,
        secret_text,
    )
}

/// The admin token Secret, with a fresh token.
pub fn admin_token(fleet: &MediaFleet, token: String) -> Result<Secret, BuildError> {
    secret(
        fleet,
        labels::admin_token_secret(&fleet.name_any()),
        ADMIN_FILE,
        token,
    )
}
