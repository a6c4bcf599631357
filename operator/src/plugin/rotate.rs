//! `kubectl ruche rotate-key`: the patches that rotate a fleet's join token key in its Secret.
//!
//! A rotation has two steps, so that no token a meeting app minted is refused on the way:
//! 1. **start**: a new key becomes `token-key` and the old one moves to `previous-token-key`.
//!    Media nodes read both again within about a minute and admit tokens of either; apps
//!    mint with the new one as soon as they read it.
//! 2. **finish**, once every token minted with the old key has expired: `previous-token-key` is
//!    removed and the old key admits nothing any more.
//!
//! Each patch first tests the Secret still holds what was read, so two rotations at once
//! cannot lose a key: the second is refused by the API server.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use ruche_crds::token::{KeyError, TokenKey};
use serde_json::{Value, json};

use crate::build::pod::{KEY_FILE, PREVIOUS_KEY_FILE};

/// A rotation `kubectl ruche` refuses before it reaches the cluster.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The Secret has no key to rotate.
    #[error("Secret {secret} has no `{KEY_FILE}`: is it a fleet's join key Secret?")]
    NoKey {
        /// The Secret.
        secret: String,
    },
    /// A rotation is already in progress.
    #[error(
        "Secret {secret} is rotating already (it has `{PREVIOUS_KEY_FILE}`): finish that rotation first with --finish, once the tokens signed with its previous key have expired"
    )]
    InProgress {
        /// The Secret.
        secret: String,
    },
    /// `--finish` with no rotation in progress.
    #[error("Secret {secret} is not rotating (it has no `{PREVIOUS_KEY_FILE}`): nothing to finish")]
    NotRotating {
        /// The Secret.
        secret: String,
    },
    /// The new key is the current one.
    #[error("the new key is the key in use: a rotation needs another key")]
    SameKey,
    /// A key does not load.
    #[error("{what}: {source}")]
    BadKey {
        /// Which key.
        what: &'static str,
        /// Why it does not load.
        source: KeyError,
    },
}

fn data(secret: &Secret) -> BTreeMap<String, ByteString> {
    secret.data.clone().unwrap_or_default()
}

fn encoded(bytes: &ByteString) -> Value {
    // `ByteString` serializes as the base64 the API server expects in `data`.
    serde_json::to_value(bytes).unwrap_or(Value::Null)
}

/// The JSON patch that starts a rotation of `secret` to `new_key`.
pub fn start(secret: &Secret, new_key: &[u8]) -> Result<Value, RotateError> {
    let name = secret.name_any();
    let data = data(secret);
    let current = data
        .get(KEY_FILE)
        .ok_or_else(|| RotateError::NoKey {
            secret: name.clone(),
        })?
        .clone();
    if data.contains_key(PREVIOUS_KEY_FILE) {
        return Err(RotateError::InProgress { secret: name });
    }
    TokenKey::from_bytes(&current.0).map_err(|source| RotateError::BadKey {
        what: "the key in use",
        source,
    })?;
    TokenKey::from_bytes(new_key).map_err(|source| RotateError::BadKey {
        what: "the new key",
        source,
    })?;
    if current.0.trim_ascii() == new_key.trim_ascii() {
        return Err(RotateError::SameKey);
    }
    Ok(json!([
        { "op": "test", "path": format!("/data/{KEY_FILE}"), "value": encoded(&current) },
        { "op": "add", "path": format!("/data/{PREVIOUS_KEY_FILE}"), "value": encoded(&current) },
        { "op": "replace", "path": format!("/data/{KEY_FILE}"), "value": encoded(&ByteString(new_key.to_vec())) },
    ]))
}

/// The JSON patch that finishes the rotation of `secret`: the previous key goes.
pub fn finish(secret: &Secret) -> Result<Value, RotateError> {
    let name = secret.name_any();
    let previous = data(secret)
        .get(PREVIOUS_KEY_FILE)
        .cloned()
        .ok_or(RotateError::NotRotating { secret: name })?;
    Ok(json!([
        { "op": "test", "path": format!("/data/{PREVIOUS_KEY_FILE}"), "value": encoded(&previous) },
        { "op": "remove", "path": format!("/data/{PREVIOUS_KEY_FILE}") },
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &[u8] = b"old-secret-old-secret-old-secret-0";
    const NEW: &[u8] = b"new-secret-new-secret-new-secret-1";

    fn secret(entries: &[(&str, &[u8])]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("visio-join-key".into());
        s.data = Some(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                .collect(),
        );
        s
    }

    /// Applies a JSON patch to the Secret as the API server would.
    fn applied(s: &Secret, patch: Value) -> Secret {
        let mut doc = serde_json::to_value(s).unwrap();
        let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
        json_patch::patch(&mut doc, &patch).unwrap();
        serde_json::from_value(doc).unwrap()
    }

    fn entry<'a>(s: &'a Secret, key: &str) -> Option<&'a [u8]> {
        s.data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.as_slice())
    }

    #[test]
    fn a_rotation_moves_the_key_to_previous_then_drops_it() {
        let before = secret(&[(KEY_FILE, OLD)]);
        let rotating = applied(&before, start(&before, NEW).unwrap());
        assert_eq!(entry(&rotating, KEY_FILE), Some(NEW));
        assert_eq!(entry(&rotating, PREVIOUS_KEY_FILE), Some(OLD));
        let done = applied(&rotating, finish(&rotating).unwrap());
        assert_eq!(entry(&done, KEY_FILE), Some(NEW));
        assert_eq!(entry(&done, PREVIOUS_KEY_FILE), None);
    }

    #[test]
    fn a_patch_fails_if_the_secret_changed_since_it_was_read() {
        let read = secret(&[(KEY_FILE, OLD)]);
        let patch = start(&read, NEW).unwrap();
        let meanwhile = secret(&[(KEY_FILE, b"other-secret-other-secret-other-2")]);
        let mut doc = serde_json::to_value(&meanwhile).unwrap();
        let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
        assert!(json_patch::patch(&mut doc, &patch).is_err());
    }

    #[test]
    fn refusals_say_what_to_do() {
        let rotating = secret(&[(KEY_FILE, NEW), (PREVIOUS_KEY_FILE, OLD)]);
        assert!(
            start(&rotating, b"third-secret-third-secret-third-3")
                .unwrap_err()
                .to_string()
                .contains("finish that rotation first with --finish")
        );
        let idle = secret(&[(KEY_FILE, OLD)]);
        assert!(matches!(
            finish(&idle),
            Err(RotateError::NotRotating { .. })
        ));
        assert!(matches!(start(&idle, OLD), Err(RotateError::SameKey)));
        assert!(matches!(
            start(&idle, b"short"),
            Err(RotateError::BadKey {
                what: "the new key",
                ..
            })
        ));
        assert!(matches!(
            start(&secret(&[]), NEW),
            Err(RotateError::NoKey { .. })
        ));
    }
}
