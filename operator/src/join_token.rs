//! Join tokens minted with a fleet's key, as a meeting app would: for `ruche-operator token`
//! and `kubectl ruche token`.

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use ruche_crds::token::{Claims, Grants, TokenKey, fresh_jti};

use crate::build::{labels, pod::KEY_FILE};

/// Reads the join token key of `fleet` from its Secret in `namespace`.
pub async fn fleet_key(client: Client, namespace: &str, fleet: &str) -> Result<TokenKey, String> {
    let name = labels::join_key_secret(fleet);
    let secret = Api::<Secret>::namespaced(client, namespace)
        .get(&name)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => format!(
                "Secret {namespace}/{name} not found: is there a MediaFleet {fleet} in namespace {namespace}?"
            ),
            e => format!("Secret {namespace}/{name}: {e}"),
        })?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEY_FILE))
        .map(|b| b.0.clone())
        .ok_or_else(|| format!("Secret {namespace}/{name} has no `{KEY_FILE}`"))?;
    TokenKey::from_bytes(&bytes).map_err(|e| format!("Secret {namespace}/{name}: {e}"))
}

/// The command-line arguments of a token, shared by `ruche-operator token` and
/// `kubectl ruche token`.
#[derive(clap::Args, Clone, Debug)]
pub struct TokenArgs {
    /// Room the token admits to.
    pub room: String,
    /// Participant identity (the token's `sub`).
    pub identity: String,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Validity in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl_seconds: u64,
    /// Refuse publishing (a listener).
    #[arg(long)]
    pub no_publish: bool,
}

impl TokenArgs {
    /// What the token admits.
    pub fn admission(&self) -> Admission {
        Admission {
            // A media node knows a room by its name.
            room: self.room.clone(),
            identity: self.identity.clone(),
            name: self.name.clone(),
            ttl_seconds: self.ttl_seconds,
            grants: Grants {
                publish: !self.no_publish,
                subscribe: true,
            },
        }
    }
}

/// What a token admits.
#[derive(Clone, Debug)]
pub struct Admission {
    /// The room.
    pub room: String,
    /// The participant's identity (`sub`).
    pub identity: String,
    /// Their display name.
    pub name: Option<String>,
    /// Validity, in seconds from now.
    pub ttl_seconds: u64,
    /// What they may do.
    pub grants: Grants,
}

/// Mints a token for `admission` with `key`, valid from now.
pub fn mint(key: &TokenKey, admission: &Admission) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = Claims {
        sub: admission.identity.clone(),
        room: admission.room.clone(),
        name: admission.name.clone(),
        exp: now + admission.ttl_seconds,
        nbf: None,
        iat: Some(now),
        // Admits once: a copy replayed later (after its participant left, say) is refused.
        jti: Some(fresh_jti().map_err(|e| e.to_string())?),
        grants: admission.grants,
    };
    key.mint(&claims).map_err(|e| e.to_string())
}
