//! The keys a node accepts join tokens from: the current one, and during a rotation the
//! previous one, so tokens minted just before the switch still admit until they expire.
//!
//! Each key keeps its own algorithm: a ring of an HMAC secret and an Ed25519 key accepts an
//! HS256 token only if the secret signed it and an EdDSA token only if the Ed25519 key did.

use super::{Claims, TokenError, TokenKey, in_room};

/// The current key and, while a rotation lasts, the previous one.
#[derive(Clone, Debug)]
pub struct KeyRing {
    current: TokenKey,
    previous: Option<TokenKey>,
}

impl KeyRing {
    /// A ring of `current`, and `previous` while tokens it signed are still in use.
    pub fn new(current: TokenKey, previous: Option<TokenKey>) -> Self {
        Self { current, previous }
    }

    /// The key new tokens are minted with.
    pub fn current(&self) -> &TokenKey {
        &self.current
    }

    /// Whether a previous key is still accepted.
    pub fn rotating(&self) -> bool {
        self.previous.is_some()
    }

    /// Signs `claims` with the current key.
    pub fn mint(&self, claims: &Claims) -> Result<String, TokenError> {
        self.current.mint(claims)
    }

    /// [`TokenKey::verify`] with the current key, then the previous one if the current did not
    /// sign the token. When neither did, the refusal is the one of the key whose algorithm the
    /// token names: a bad signature rather than a wrong algorithm.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        let first = match self.current.verify(token, now_unix) {
            Err(e @ (TokenError::BadSignature | TokenError::WrongAlgorithm { .. })) => e,
            other => return other,
        };
        let Some(previous) = &self.previous else {
            return Err(first);
        };
        match previous.verify(token, now_unix) {
            Err(TokenError::WrongAlgorithm { .. }) => Err(first),
            other => other,
        }
    }

    /// [`KeyRing::verify`], and also refuses a token for a room other than `room`.
    pub fn verify_for_room(
        &self,
        token: &str,
        room: &str,
        now_unix: u64,
    ) -> Result<Claims, TokenError> {
        in_room(self.verify(token, now_unix)?, room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;
    const OLD: &[u8] = b"old-secret-old-secret-old-secret-0";
    const NEW: &[u8] = b"new-secret-new-secret-new-secret-1";
    // A throwaway key generated with `openssl genpkey -algorithm ed25519` for this test only.
    const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIES/KU0D/M/ObxO2ExgAhW8flvk1n33Rs5l2bX4ZwAO1
-----END PRIVATE KEY-----
";

    fn hmac(secret: &[u8]) -> TokenKey {
        TokenKey::hmac(secret).unwrap()
    }

    fn ed() -> TokenKey {
        TokenKey::ed25519_private_pem(ED_PRIVATE.as_bytes()).unwrap()
    }

    fn claims() -> Claims {
        Claims::new("alice", "weekly-sync", NOW + 600)
    }

    #[test]
    fn during_a_rotation_tokens_of_both_keys_admit() {
        let ring = KeyRing::new(hmac(NEW), Some(hmac(OLD)));
        assert!(ring.rotating());
        let from_old = hmac(OLD).mint(&claims()).unwrap();
        let from_new = ring.mint(&claims()).unwrap();
        assert_eq!(ring.verify(&from_old, NOW), Ok(claims()));
        assert_eq!(ring.verify(&from_new, NOW), Ok(claims()));
        assert_eq!(
            ring.verify_for_room(&from_old, "weekly-sync", NOW),
            Ok(claims())
        );
        // New tokens are minted with the new key only.
        assert_eq!(hmac(NEW).verify(&from_new, NOW), Ok(claims()));
    }

    #[test]
    fn once_the_previous_key_is_dropped_its_tokens_are_refused() {
        let from_old = hmac(OLD).mint(&claims()).unwrap();
        let ring = KeyRing::new(hmac(NEW), None);
        assert!(!ring.rotating());
        assert_eq!(ring.verify(&from_old, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_token_of_a_third_key_is_a_bad_signature() {
        let ring = KeyRing::new(hmac(NEW), Some(hmac(OLD)));
        let forged = hmac(b"attacker-secret-attacker-secret-2")
            .mint(&claims())
            .unwrap();
        assert_eq!(ring.verify(&forged, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn each_key_keeps_its_algorithm_across_a_rotation_to_another_kind() {
        // Rotating from an HMAC secret to an Ed25519 key: both algorithms admit, each only
        // from its own key.
        let ring = KeyRing::new(ed(), Some(hmac(OLD)));
        assert_eq!(
            ring.verify(&hmac(OLD).mint(&claims()).unwrap(), NOW),
            Ok(claims())
        );
        assert_eq!(
            ring.verify(&ed().mint(&claims()).unwrap(), NOW),
            Ok(claims())
        );
        // An HS256 token signed with the Ed25519 key's public half as an HMAC secret (the
        // classic confusion) is checked by the HMAC key only, and fails there.
        let confused = hmac(b"MCowBQYDK2VwAyEAiSFAesjD7q5SzPc1yBsEzDZB+CpZ8UCoZoUplQJR80w=")
            .mint(&claims())
            .unwrap();
        assert_eq!(ring.verify(&confused, NOW), Err(TokenError::BadSignature));
        // An algorithm neither key uses is reported against the current key.
        let ring = KeyRing::new(hmac(NEW), Some(hmac(OLD)));
        assert_eq!(
            ring.verify(&ed().mint(&claims()).unwrap(), NOW),
            Err(TokenError::WrongAlgorithm {
                expected: "HS256",
                got: "EdDSA".to_owned()
            })
        );
    }

    #[test]
    fn time_and_room_are_checked_whichever_key_signed() {
        let ring = KeyRing::new(hmac(NEW), Some(hmac(OLD)));
        let mut c = claims();
        c.exp = NOW - 60;
        let expired = hmac(OLD).mint(&c).unwrap();
        assert!(matches!(
            ring.verify(&expired, NOW),
            Err(TokenError::Expired { .. })
        ));
        let other_room = hmac(OLD).mint(&claims()).unwrap();
        assert!(matches!(
            ring.verify_for_room(&other_room, "board", NOW),
            Err(TokenError::WrongRoom { .. })
        ));
    }
}
