//! `ruche-operator token`: mint a join token with the fleet's key.

use std::path::PathBuf;
use std::process::ExitCode;

use kube::Client;
use ruche_crds::token::TokenKey;
use ruche_operator::join_token::{self, Admission};

/// What to mint, and with which key.
pub struct Request {
    pub admission: Admission,
    pub key_file: Option<PathBuf>,
    pub fleet: Option<String>,
    pub namespace: Option<String>,
}

/// Mints and prints the token; errors go to stderr with a non-zero exit.
pub fn mint(request: &Request) -> ExitCode {
    match key(request).and_then(|key| join_token::mint(&key, &request.admission)) {
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
        join_token::fleet_key(client, &namespace, fleet).await
    })
}
