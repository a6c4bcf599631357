//! `ruche-operator token`: mint a join token with the fleet's key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use ruche_crds::token::{Claims, Grants, TokenKey};
use ruche_operator::build::{labels, pod::KEY_FILE};

/// What to mint, and with which key.
pub struct Request {
    pub room: String,
    pub identity: String,
    pub name: Option<String>,
    pub ttl_seconds: u64,
    pub grants: Grants,
    pub key_file: Option<PathBuf>,
    pub fleet: Option<String>,
    pub namespace: Option<String>,
}

/// Mints and prints the token; errors go to stderr with a non-zero exit.
pub fn mint(request: &Request) -> ExitCode {
    match key(request).and_then(|key| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            sub: request.identity.clone(),
            room: request.room.clone(),
            name: request.name.clone(),
            exp: now + request.ttl_seconds,
            nbf: None,
            iat: Some(now),
            grants: request.grants,
        };
        key.mint(&claims).map_err(|e| e.to_string())
    }) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn key(request: &Request) -> Result<TokenKey, String> {
    if let Some(path) = &request.key_file {
        return TokenKey::from_file(path)
            .map_err(|e| format!("--key-file {}: {e}", path.display()));
    }
    let Some(fleet) = &request.fleet else {
        return Err("give --key-file, or --fleet to read the key from the cluster".into());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client = Client::try_default()
            .await
            .map_err(|e| format!("cannot reach the cluster: {e}"))?;
        let namespace = request
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let name = labels::join_key_secret(fleet);
        let secret = Api::<Secret>::namespaced(client, &namespace)
            .get(&name)
            .await
            .map_err(|e| format!("Secret {namespace}/{name}: {e}"))?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(KEY_FILE))
            .map(|b| b.0.clone())
            .ok_or_else(|| format!("Secret {namespace}/{name} has no `{KEY_FILE}`"))?;
        TokenKey::from_bytes(&bytes).map_err(|e| format!("Secret {namespace}/{name}: {e}"))
    })
}
