//! Join tokens as a client presents them, checked by a node whose keys are rotating: an HMAC
//! secret signs, an Ed25519 key still admits. The corpus holds real tokens of both keys, so
//! the fuzzer starts from what passes the signature and mutates past it.

use std::sync::OnceLock;

use ruche_media_node::signaling::replay::ReplayLedger;
use ruche_media_node::token::{KeyRing, LEEWAY_SECS, TokenError, TokenKey};

/// The fixed clock of the target, in unix seconds.
pub const NOW: u64 = 1_800_000_000;
/// The room the node is asked to admit to.
pub const ROOM: &str = "weekly-sync";
/// The HMAC secret of the corpus's HS256 tokens.
pub const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret-0123";
/// The Ed25519 key of the corpus's EdDSA tokens (generated with `openssl genpkey -algorithm
/// ed25519` for this target only).
pub const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIGK08JpQ+wXaNkWIys+zgZrNaCLl1AfUlRi5pgbtZFCX
-----END PRIVATE KEY-----
";

/// The node's keys: the secret signs, the Ed25519 key is the previous one.
pub fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let current = TokenKey::hmac(SECRET);
        let previous = TokenKey::ed25519_private_pem(ED25519_PRIVATE.as_bytes());
        match (current, previous) {
            (Ok(current), Ok(previous)) => KeyRing::new(current, Some(previous)),
            (Err(e), _) | (_, Err(e)) => panic!("the target's keys load: {e}"),
        }
    })
}

/// Checks `data` as a token for [`ROOM`] at [`NOW`]. What is admitted must be for the room,
/// within its validity window, and, if it carries an id, admitted once only.
pub fn run(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    match ring().verify_for_room(token, ROOM, NOW) {
        Ok(claims) => {
            assert_eq!(claims.room, ROOM);
            assert!(
                NOW < claims.exp.saturating_add(LEEWAY_SECS),
                "expired: {claims:?}"
            );
            assert!(
                claims
                    .nbf
                    .is_none_or(|nbf| NOW.saturating_add(LEEWAY_SECS) >= nbf),
                "not yet valid: {claims:?}"
            );
            assert!(!claims.sub.trim().is_empty());
            if let Some(jti) = &claims.jti {
                let mut ledger = ReplayLedger::default();
                let until = claims.exp.saturating_add(LEEWAY_SECS);
                assert_eq!(ledger.claim(jti, until, NOW), Ok(()));
                assert_eq!(
                    ledger.claim(jti, until, NOW),
                    Err(TokenError::Replayed { jti: jti.clone() })
                );
            }
        }
        Err(e) => assert!(!e.reason().is_empty()),
    }
}
