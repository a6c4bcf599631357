//! Join tokens: the signed JWT a meeting app mints for a participant's
//! browser, so the media node can admit a join without calling back to the
//! app. The node checks the signature, the validity window and the room.

use std::fmt;
use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

mod ring;

pub use ring::KeyRing;

/// Clock skew tolerated between the minting app and this node, in seconds,
/// on both `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 5;

/// Minimum HMAC secret length: shorter secrets are guessable offline from a
/// single captured token.
pub const MIN_SECRET_LEN: usize = 32;

/// Longest `jti` accepted: a random id needs a few dozen characters, and the node remembers
/// every one it admitted until its token expires.
pub const MAX_JTI_LEN: usize = 128;

/// Longest token accepted; real join tokens are a few hundred bytes, so
/// anything far larger is refused before any decoding work.
pub const MAX_TOKEN_LEN: usize = 8192;

const PRIVATE_PEM_HEADER: &str = "-----BEGIN PRIVATE KEY-----";
const PUBLIC_PEM_HEADER: &str = "-----BEGIN PUBLIC KEY-----";
const ANY_PEM_HEADER: &str = "-----BEGIN ";

/// What a participant may do in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// May send audio and video.
    #[serde(default = "yes")]
    pub publish: bool,
    /// May receive the other participants' media.
    #[serde(default = "yes")]
    pub subscribe: bool,
}

impl Default for Grants {
    fn default() -> Self {
        Self {
            publish: true,
            subscribe: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// The claims of a join token. Registered JWT names (`sub`, `exp`, `nbf`,
/// `iat`) keep their standard meaning so ordinary JWT libraries can mint them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Participant identity, unique within the room.
    pub sub: String,
    /// Room the participant may join.
    pub room: String,
    /// Display name shown to the other participants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Not valid before, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, unix seconds (informational only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Unique token id. A node admits a token carrying one once: a second join with the same
    /// `jti` is refused until the token expires (see [`MAX_JTI_LEN`] for its bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Permissions; a token without grants may publish and subscribe.
    #[serde(default)]
    pub grants: Grants,
}

impl Claims {
    /// Claims for `sub` in `room` expiring at `exp`, with default grants and
    /// no optional claims.
    pub fn new(sub: impl Into<String>, room: impl Into<String>, exp: u64) -> Self {
        Self {
            sub: sub.into(),
            room: room.into(),
            name: None,
            exp,
            nbf: None,
            iat: None,
            jti: None,
            grants: Grants::default(),
        }
    }
}

/// A fresh random token id for the `jti` claim: 22 characters of the base64url alphabet, 132
/// bits from the OS.
pub fn fresh_jti() -> Result<String, TokenError> {
    // 22 characters of 6 bits: 132 random bits.
    crate::random::text(22)
        .map_err(|e| TokenError::SigningFailed(format!("no randomness for a token id: {e}")))
}

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read token key file {path}: {source}")]
    Read {
        /// The file that was read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The HMAC secret is too short to resist offline guessing.
    #[error("HMAC token secret is {len} bytes; at least {MIN_SECRET_LEN} are required")]
    SecretTooShort {
        /// Length of the secret given.
        len: usize,
    },
    /// A PEM file of a kind this node does not use; refused rather than
    /// treated as an HMAC secret, which would let anyone holding a public key
    /// forge tokens.
    #[error(
        "unsupported PEM key {label:?}: expected an Ed25519 PKCS#8 \"PRIVATE KEY\" or \"PUBLIC KEY\""
    )]
    UnsupportedPem {
        /// The PEM label found, e.g. `RSA PRIVATE KEY`.
        label: String,
    },
    /// The private key PEM is not a usable Ed25519 PKCS#8 key.
    #[error(
        "invalid Ed25519 private key: {0} (expected PKCS#8 as written by `openssl genpkey -algorithm ed25519`)"
    )]
    InvalidPrivateKey(String),
    /// The public key PEM is not a usable Ed25519 key.
    #[error("invalid Ed25519 public key: {0} (expected `openssl pkey -pubout` output)")]
    InvalidPublicKey(String),
}

/// Why a token was refused or could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was presented.
    #[error("no join token was presented")]
    Missing,
    /// The token is not a well-formed join token; the message says which part.
    #[error("malformed join token: {0}")]
    Malformed(String),
    /// The signature does not match: forged, tampered or signed with another key.
    #[error("join token signature is not valid for this node's key")]
    BadSignature,
    /// The token was signed with an algorithm this key does not accept.
    #[error("join token uses algorithm {got:?}, but this node only accepts {expected}")]
    WrongAlgorithm {
        /// The key's algorithm.
        expected: &'static str,
        /// The `alg` in the token header.
        got: String,
    },
    /// The token's `exp` has passed (beyond the leeway).
    #[error("join token expired at {expired_at} (now {now})")]
    Expired {
        /// The token's `exp`.
        expired_at: u64,
        /// The time of the check.
        now: u64,
    },
    /// The token's `nbf` is still in the future (beyond the leeway).
    #[error("join token is not valid before {not_before} (now {now})")]
    NotYetValid {
        /// The token's `nbf`.
        not_before: u64,
        /// The time of the check.
        now: u64,
    },
    /// The token is for another room.
    #[error("join token is for room {token_room:?}, not {requested:?}")]
    WrongRoom {
        /// The room named in the token.
        token_room: String,
        /// The room the participant asked to join.
        requested: String,
    },
    /// The token's `sub` is empty, so the participant cannot be told apart.
    #[error("join token has an empty participant identity (`sub`)")]
    EmptyIdentity,
    /// The token's `jti` was already admitted on this node: a replay.
    #[error("join token {jti:?} was already used to join; a token with a `jti` admits once")]
    Replayed {
        /// The token's `jti`.
        jti: String,
    },
    /// The node remembers so many unexpired `jti`s that it cannot take another: refused
    /// rather than admitted unremembered, which would allow its replay.
    #[error("this node remembers {held} unexpired token ids, its limit: try again later")]
    ReplayLedgerFull {
        /// How many are held.
        held: usize,
    },
    /// The key is a public key, which can verify but not sign.
    #[error("cannot mint join tokens with a public-key-only token key")]
    CannotMint,
    /// The signing library failed; the key was checked when loaded, so this
    /// should not happen.
    #[error("signing the join token failed: {0}")]
    SigningFailed(String),
}

impl TokenError {
    /// Short stable code for metrics labels and signaling error codes.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed(_) => "malformed",
            Self::BadSignature => "bad_signature",
            Self::WrongAlgorithm { .. } => "wrong_algorithm",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::WrongRoom { .. } => "wrong_room",
            Self::EmptyIdentity => "empty_identity",
            Self::Replayed { .. } => "replayed",
            Self::ReplayLedgerFull { .. } => "replay_ledger_full",
            Self::CannotMint => "cannot_mint",
            Self::SigningFailed(_) => "signing_failed",
        }
    }
}

/// A key that verifies (and, unless public-only, mints) join tokens.
///
/// Exactly one algorithm is accepted per key (HS256 for a secret, EdDSA for
/// Ed25519), so a token cannot pick a weaker algorithm than the node's.
#[derive(Clone)]
pub struct TokenKey {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenKey {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("algorithm", &self.algorithm_name())
            .field("can_mint", &self.can_mint())
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// Loads a key file: an Ed25519 PKCS#8 private key PEM (mint and verify),
    /// an Ed25519 public key PEM (verify only), or otherwise raw bytes used as
    /// an HS256 secret, with trailing newlines removed.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// Same as [`TokenKey::from_file`] for content already in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let start = bytes.trim_ascii_start();
        if start.starts_with(PRIVATE_PEM_HEADER.as_bytes()) {
            Self::ed25519_private_pem(bytes)
        } else if start.starts_with(PUBLIC_PEM_HEADER.as_bytes()) {
            Self::ed25519_public_pem(bytes)
        } else if let Some(rest) = start.strip_prefix(ANY_PEM_HEADER.as_bytes()) {
            let label = rest.split(|b| *b == b'-').next().unwrap_or_default();
            Err(KeyError::UnsupportedPem {
                label: String::from_utf8_lossy(label).into_owned(),
            })
        } else {
            let mut secret = bytes;
            while let [rest @ .., b'\n' | b'\r'] = secret {
                secret = rest;
            }
            Self::hmac(secret)
        }
    }

    /// An HS256 key from a shared secret of at least [`MIN_SECRET_LEN`] bytes.
    pub fn hmac(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::SecretTooShort { len: secret.len() });
        }
        Ok(Self::with(
            Algorithm::HS256,
            Some(EncodingKey::from_secret(secret)),
            DecodingKey::from_secret(secret),
        ))
    }

    /// An Ed25519 key from a PKCS#8 v1 private key PEM (as `openssl genpkey
    /// -algorithm ed25519` writes it); the public half is derived so the same
    /// file also verifies. PKCS#8 v2 files (with the public key embedded) are
    /// refused because jsonwebtoken cannot derive from them.
    pub fn ed25519_private_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let invalid = |e: jsonwebtoken::errors::Error| KeyError::InvalidPrivateKey(e.to_string());
        let encoding = EncodingKey::from_ed_pem(pem).map_err(invalid)?;
        // jsonwebtoken derives the public key when building a JWK; that is
        // the only public way to get it without another dependency.
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA).map_err(invalid)?;
        let decoding = DecodingKey::from_jwk(&jwk).map_err(invalid)?;
        // Prove the pair works now rather than on the first join.
        let probe = b"ruche key check";
        let signature =
            jsonwebtoken::crypto::sign(probe, &encoding, Algorithm::EdDSA).map_err(invalid)?;
        match jsonwebtoken::crypto::verify(&signature, probe, &decoding, Algorithm::EdDSA) {
            Ok(true) => Ok(Self::with(Algorithm::EdDSA, Some(encoding), decoding)),
            Ok(false) => Err(KeyError::InvalidPrivateKey(
                "derived public key does not verify its own signature".to_owned(),
            )),
            Err(e) => Err(invalid(e)),
        }
    }

    /// A verify-only Ed25519 key from a public key PEM.
    pub fn ed25519_public_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let invalid = |e: jsonwebtoken::errors::Error| KeyError::InvalidPublicKey(e.to_string());
        let decoding = DecodingKey::from_ed_pem(pem).map_err(invalid)?;
        // jsonwebtoken slices the first 32 bytes when verifying, so a shorter
        // key must be refused here or it would panic on the first join.
        let len = decoding.try_get_as_bytes().map_err(invalid)?.len();
        if len != 32 {
            return Err(KeyError::InvalidPublicKey(format!(
                "key is {len} bytes, Ed25519 public keys are 32"
            )));
        }
        // Building a verifier checks the point is on the curve; the empty
        // signature then simply fails to verify.
        jsonwebtoken::crypto::verify("", b"", &decoding, Algorithm::EdDSA).map_err(invalid)?;
        Ok(Self::with(Algorithm::EdDSA, None, decoding))
    }

    fn with(algorithm: Algorithm, encoding: Option<EncodingKey>, decoding: DecodingKey) -> Self {
        let mut validation = Validation::new(algorithm);
        // Time checks are done by `verify` against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        Self {
            algorithm,
            encoding,
            decoding,
            validation,
        }
    }

    /// The JWT `alg` this key signs with and accepts: `HS256` or `EdDSA`.
    pub fn algorithm_name(&self) -> &'static str {
        alg_name(self.algorithm)
    }

    /// Whether this key can mint tokens (false for a public-key-only key).
    pub fn can_mint(&self) -> bool {
        self.encoding.is_some()
    }

    /// Signs `claims` into a compact JWT.
    pub fn mint(&self, claims: &Claims) -> Result<String, TokenError> {
        let encoding = self.encoding.as_ref().ok_or(TokenError::CannotMint)?;
        // Refuse to produce a token that `verify` would refuse anyway.
        if claims.sub.trim().is_empty() {
            return Err(TokenError::EmptyIdentity);
        }
        jsonwebtoken::encode(&Header::new(self.algorithm), claims, encoding)
            .map_err(|e| TokenError::SigningFailed(e.to_string()))
    }

    /// Checks a token's signature, algorithm and validity window at
    /// `now_unix` (with [`LEEWAY_SECS`] of skew either way) and returns its
    /// claims.
    ///
    /// Time is checked only once the signature holds, so a forger learns
    /// nothing from the error. A token carrying an `aud` claim is refused:
    /// it was meant for some other service.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        if token.trim().is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed(format!(
                "token is {} bytes, more than the {MAX_TOKEN_LEN} allowed",
                token.len()
            )));
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header, _, _] = parts.as_slice() else {
            return Err(TokenError::Malformed(format!(
                "expected 3 dot-separated parts (header.payload.signature), found {}",
                parts.len()
            )));
        };
        self.check_header(header)?;

        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| self.decode_error(&e))?
            .claims;

        if now_unix >= claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired {
                expired_at: claims.exp,
                now: now_unix,
            });
        }
        if let Some(not_before) = claims.nbf
            && now_unix.saturating_add(LEEWAY_SECS) < not_before
        {
            return Err(TokenError::NotYetValid {
                not_before,
                now: now_unix,
            });
        }
        if claims.sub.trim().is_empty() {
            return Err(TokenError::EmptyIdentity);
        }
        if claims.room.is_empty() {
            return Err(TokenError::Malformed("`room` claim is empty".to_owned()));
        }
        if let Some(jti) = &claims.jti
            && (jti.is_empty() || jti.len() > MAX_JTI_LEN)
        {
            return Err(TokenError::Malformed(format!(
                "`jti` claim is {} bytes: expected 1 to {MAX_JTI_LEN}",
                jti.len()
            )));
        }
        Ok(claims)
    }

    /// [`TokenKey::verify`], and also refuses a token for a room other than
    /// `room`.
    pub fn verify_for_room(
        &self,
        token: &str,
        room: &str,
        now_unix: u64,
    ) -> Result<Claims, TokenError> {
        in_room(self.verify(token, now_unix)?, room)
    }

    /// Reads the header ourselves so that `alg: none` or an unknown
    /// algorithm is reported by name, and a header problem is not mistaken
    /// for a claims problem later.
    fn check_header(&self, encoded: &str) -> Result<(), TokenError> {
        #[derive(Deserialize)]
        struct AlgOnly {
            alg: String,
        }
        let bytes = decode_base64url(encoded)
            .ok_or_else(|| TokenError::Malformed("header is not valid base64url".to_owned()))?;
        let header: AlgOnly = serde_json::from_slice(&bytes)
            .map_err(|e| TokenError::Malformed(format!("header: {e}")))?;
        if header.alg != self.algorithm_name() {
            return Err(TokenError::WrongAlgorithm {
                expected: self.algorithm_name(),
                got: header.alg,
            });
        }
        serde_json::from_slice::<Header>(&bytes)
            .map_err(|e| TokenError::Malformed(format!("header: {e}")))?;
        Ok(())
    }

    fn decode_error(&self, err: &jsonwebtoken::errors::Error) -> TokenError {
        use jsonwebtoken::errors::ErrorKind;
        let malformed = |what: String| TokenError::Malformed(what);
        match err.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm {
                expected: self.algorithm_name(),
                got: "unknown".to_owned(),
            },
            ErrorKind::Base64(e) => malformed(format!("payload or signature: {e}")),
            // The header was parsed already, so JSON errors are the claims'
            // and serde names the missing or mistyped claim.
            ErrorKind::Json(e) => malformed(format!("claims: {e}")),
            ErrorKind::Utf8(_) => malformed("claims are not UTF-8".to_owned()),
            ErrorKind::InvalidAudience => {
                malformed("token has an `aud` claim; join tokens must not name an audience".into())
            }
            ErrorKind::InvalidToken => malformed("expected header.payload.signature".to_owned()),
            _ => malformed(err.to_string()),
        }
    }
}

/// `claims` if they are for `room`.
fn in_room(claims: Claims, room: &str) -> Result<Claims, TokenError> {
    if claims.room != room {
        return Err(TokenError::WrongRoom {
            token_room: claims.room,
            requested: room.to_owned(),
        });
    }
    Ok(claims)
}

fn alg_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::EdDSA => "EdDSA",
        // Only HS256 and EdDSA keys are ever constructed.
        _ => "unsupported",
    }
}

/// Unpadded base64url, as JWT uses; `None` on any other character or an
/// impossible length. jsonwebtoken does not expose its decoder and base64 is
/// not a direct dependency.
fn decode_base64url(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for byte in input.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // One character past a multiple of four carries only 6 bits: no byte.
    if bits >= 6 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";
    const NOW: u64 = 1_700_000_000;

    // Throwaway keys generated with `openssl genpkey -algorithm ed25519`
    // and `openssl pkey -pubout` for these tests only.
    const ED_A_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIES/KU0D/M/ObxO2ExgAhW8flvk1n33Rs5l2bX4ZwAO1
-----END PRIVATE KEY-----
";
    const ED_A_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAiSFAesjD7q5SzPc1yBsEzDZB+CpZ8UCoZoUplQJR80w=
-----END PUBLIC KEY-----
";
    const ED_B_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIGK08JpQ+wXaNkWIys+zgZrNaCLl1AfUlRi5pgbtZFCX
-----END PRIVATE KEY-----
";
    const ED_B_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEADVtZT5DElvs7LULQFvacP6VM67g8MwoZcqI8z54OuJU=
-----END PUBLIC KEY-----
";
    const EC_P256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE233iux7/Nkn6pHScznF+RdrFurnU
qerw/XSgrtWUX05iyEEZlk8k7W254QbBYzX1BxEgnMmf45zYLKnuqXw7dQ==
-----END PUBLIC KEY-----
";

    fn hmac_key() -> TokenKey {
        TokenKey::hmac(SECRET).unwrap()
    }

    fn ed_key() -> TokenKey {
        TokenKey::ed25519_private_pem(ED_A_PRIVATE.as_bytes()).unwrap()
    }

    fn claims() -> Claims {
        Claims {
            sub: "alice".to_owned(),
            room: "weekly-sync".to_owned(),
            name: Some("Alice".to_owned()),
            exp: NOW + 600,
            nbf: Some(NOW - 10),
            iat: Some(NOW - 10),
            jti: Some("t-0001".to_owned()),
            grants: Grants {
                publish: false,
                subscribe: true,
            },
        }
    }

    fn b64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    /// A token with arbitrary header and payload JSON and a junk signature.
    fn hand_made(header: &str, payload: &str, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            b64(header.as_bytes()),
            b64(payload.as_bytes())
        )
    }

    fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("ruche-token-test-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn hs256_round_trip() {
        let key = hmac_key();
        assert_eq!(key.algorithm_name(), "HS256");
        let token = key.mint(&claims()).unwrap();
        assert_eq!(key.verify(&token, NOW).unwrap(), claims());
    }

    #[test]
    fn eddsa_round_trip_and_public_key_verifies() {
        let key = ed_key();
        assert_eq!(key.algorithm_name(), "EdDSA");
        assert!(key.can_mint());
        let token = key.mint(&claims()).unwrap();
        assert_eq!(key.verify(&token, NOW).unwrap(), claims());

        let public = TokenKey::ed25519_public_pem(ED_A_PUBLIC.as_bytes()).unwrap();
        assert!(!public.can_mint());
        assert_eq!(public.verify(&token, NOW).unwrap(), claims());
    }

    #[test]
    fn public_key_cannot_mint() {
        let public = TokenKey::ed25519_public_pem(ED_A_PUBLIC.as_bytes()).unwrap();
        assert_eq!(public.mint(&claims()), Err(TokenError::CannotMint));
        assert_eq!(TokenError::CannotMint.reason(), "cannot_mint");
    }

    #[test]
    fn eddsa_token_from_another_key_is_refused() {
        let other = TokenKey::ed25519_private_pem(ED_B_PRIVATE.as_bytes()).unwrap();
        let token = other.mint(&claims()).unwrap();
        assert_eq!(ed_key().verify(&token, NOW), Err(TokenError::BadSignature));
        let public_a = TokenKey::ed25519_public_pem(ED_A_PUBLIC.as_bytes()).unwrap();
        assert_eq!(public_a.verify(&token, NOW), Err(TokenError::BadSignature));
        let public_b = TokenKey::ed25519_public_pem(ED_B_PUBLIC.as_bytes()).unwrap();
        assert!(public_b.verify(&token, NOW).is_ok());
    }

    #[test]
    fn fresh_token_ids_are_distinct_and_url_safe() {
        let a = fresh_jti().unwrap();
        let b = fresh_jti().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "{a}"
        );
    }

    #[test]
    fn a_jti_is_carried_and_bounded() {
        let key = hmac_key();
        let token = key.mint(&claims()).unwrap();
        assert_eq!(
            key.verify(&token, NOW).unwrap().jti.as_deref(),
            Some("t-0001")
        );
        for jti in [String::new(), "x".repeat(MAX_JTI_LEN + 1)] {
            let mut c = claims();
            c.jti = Some(jti.clone());
            let err = key.verify(&key.mint(&c).unwrap(), NOW).unwrap_err();
            assert_eq!(
                err,
                TokenError::Malformed(format!(
                    "`jti` claim is {} bytes: expected 1 to {MAX_JTI_LEN}",
                    jti.len()
                ))
            );
        }
        let mut c = claims();
        c.jti = Some("x".repeat(MAX_JTI_LEN));
        assert!(key.verify(&key.mint(&c).unwrap(), NOW).is_ok());
    }

    #[test]
    fn expired_token_is_refused_after_leeway() {
        let key = hmac_key();
        let mut c = claims();
        c.exp = NOW;
        let token = key.mint(&c).unwrap();
        // Within the leeway the token still works.
        assert!(key.verify(&token, NOW).is_ok());
        assert!(key.verify(&token, NOW + LEEWAY_SECS - 1).is_ok());
        let err = key.verify(&token, NOW + LEEWAY_SECS).unwrap_err();
        assert_eq!(
            err,
            TokenError::Expired {
                expired_at: NOW,
                now: NOW + LEEWAY_SECS
            }
        );
        assert_eq!(err.reason(), "expired");
        assert!(err.to_string().contains("expired at 1700000000"));
    }

    #[test]
    fn not_yet_valid_token_is_refused_before_leeway() {
        let key = hmac_key();
        let mut c = claims();
        c.nbf = Some(NOW + 100);
        let token = key.mint(&c).unwrap();
        assert!(key.verify(&token, NOW + 100).is_ok());
        assert!(key.verify(&token, NOW + 100 - LEEWAY_SECS).is_ok());
        let err = key.verify(&token, NOW + 99 - LEEWAY_SECS).unwrap_err();
        assert_eq!(
            err,
            TokenError::NotYetValid {
                not_before: NOW + 100,
                now: NOW + 99 - LEEWAY_SECS
            }
        );
        assert_eq!(err.reason(), "not_yet_valid");
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let key = hmac_key();
        let mut c = claims();
        c.exp = u64::MAX;
        c.nbf = None;
        let token = key.mint(&c).unwrap();
        assert!(key.verify(&token, NOW).is_ok());
        assert!(matches!(
            key.verify(&token, u64::MAX),
            Err(TokenError::Expired { .. })
        ));

        c.nbf = Some(u64::MAX);
        let token = key.mint(&c).unwrap();
        assert!(matches!(
            key.verify(&token, 0),
            Err(TokenError::NotYetValid { .. })
        ));
    }

    #[test]
    fn token_signed_with_another_secret_is_refused() {
        let forger = TokenKey::hmac(b"another-secret-that-is-long-enough!!").unwrap();
        let token = forger.mint(&claims()).unwrap();
        let err = hmac_key().verify(&token, NOW).unwrap_err();
        assert_eq!(err, TokenError::BadSignature);
        assert_eq!(err.reason(), "bad_signature");
    }

    #[test]
    fn tampered_payload_is_refused() {
        let key = hmac_key();
        let token = key.mint(&claims()).unwrap();
        let signature = token.rsplit('.').next().unwrap();
        let mut other_room = claims();
        other_room.room = "board-meeting".to_owned();
        let forged_payload = serde_json::to_string(&other_room).unwrap();
        let forged = hand_made(r#"{"alg":"HS256","typ":"JWT"}"#, &forged_payload, signature);
        assert_eq!(key.verify(&forged, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn wrong_room_is_refused() {
        let key = hmac_key();
        let token = key.mint(&claims()).unwrap();
        assert!(key.verify_for_room(&token, "weekly-sync", NOW).is_ok());
        let err = key
            .verify_for_room(&token, "board-meeting", NOW)
            .unwrap_err();
        assert_eq!(
            err,
            TokenError::WrongRoom {
                token_room: "weekly-sync".to_owned(),
                requested: "board-meeting".to_owned()
            }
        );
        assert_eq!(err.reason(), "wrong_room");
    }

    #[test]
    fn wrong_room_is_not_reported_for_an_invalid_token() {
        let key = hmac_key();
        let mut c = claims();
        c.exp = NOW - 100;
        let token = key.mint(&c).unwrap();
        assert!(matches!(
            key.verify_for_room(&token, "board-meeting", NOW),
            Err(TokenError::Expired { .. })
        ));
    }

    #[test]
    fn hs256_token_is_refused_by_eddsa_key_and_vice_versa() {
        let hs_token = hmac_key().mint(&claims()).unwrap();
        let err = ed_key().verify(&hs_token, NOW).unwrap_err();
        assert_eq!(
            err,
            TokenError::WrongAlgorithm {
                expected: "EdDSA",
                got: "HS256".to_owned()
            }
        );
        assert_eq!(err.reason(), "wrong_algorithm");

        let ed_token = ed_key().mint(&claims()).unwrap();
        assert!(matches!(
            hmac_key().verify(&ed_token, NOW),
            Err(TokenError::WrongAlgorithm {
                expected: "HS256",
                ..
            })
        ));
    }

    #[test]
    fn hs256_token_signed_with_public_key_bytes_is_refused() {
        // The classic confusion attack: HMAC keyed with the public key PEM.
        let public = TokenKey::ed25519_public_pem(ED_A_PUBLIC.as_bytes()).unwrap();
        let attacker = TokenKey::hmac(ED_A_PUBLIC.as_bytes()).unwrap();
        let token = attacker.mint(&claims()).unwrap();
        assert!(matches!(
            public.verify(&token, NOW),
            Err(TokenError::WrongAlgorithm { .. })
        ));
    }

    #[test]
    fn alg_none_is_refused() {
        let payload = serde_json::to_string(&claims()).unwrap();
        for signature in ["", "AAAA"] {
            let token = hand_made(r#"{"alg":"none","typ":"JWT"}"#, &payload, signature);
            for key in [hmac_key(), ed_key()] {
                let err = key.verify(&token, NOW).unwrap_err();
                assert!(
                    matches!(&err, TokenError::WrongAlgorithm { got, .. } if got == "none"),
                    "{err:?}"
                );
            }
        }
    }

    #[test]
    fn other_hmac_algorithms_are_refused() {
        let payload = serde_json::to_string(&claims()).unwrap();
        let token = hand_made(r#"{"alg":"HS512"}"#, &payload, "AAAA");
        assert!(matches!(
            hmac_key().verify(&token, NOW),
            Err(TokenError::WrongAlgorithm { got, .. }) if got == "HS512"
        ));
    }

    #[test]
    fn grants_default_to_publish_and_subscribe() {
        let json = format!(r#"{{"sub":"bob","room":"r","exp":{}}}"#, NOW + 60);
        let parsed: Claims = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed.grants, Grants::default());
        assert!(parsed.grants.publish && parsed.grants.subscribe);
        assert_eq!(parsed.name, None);

        let partial: Claims =
            serde_json::from_str(r#"{"sub":"bob","room":"r","exp":1,"grants":{"publish":false}}"#)
                .unwrap();
        assert!(!partial.grants.publish);
        assert!(partial.grants.subscribe);

        // And through a real token minted by another JWT producer's shape.
        let key = hmac_key();
        let token = key.mint(&Claims::new("bob", "r", NOW + 60)).unwrap();
        let verified = key.verify(&token, NOW).unwrap();
        assert_eq!(verified.grants, Grants::default());
    }

    #[test]
    fn optional_claims_are_omitted_when_absent() {
        let json = serde_json::to_value(Claims::new("bob", "r", 5)).unwrap();
        let object = json.as_object().unwrap();
        assert!(!object.contains_key("name"));
        assert!(!object.contains_key("nbf"));
        assert!(!object.contains_key("iat"));
        assert_eq!(object["exp"], 5);
    }

    #[test]
    fn missing_claim_is_named() {
        let key = hmac_key();
        // Sign a payload without `room` using the real HMAC via jsonwebtoken.
        let payload = serde_json::json!({"sub": "alice", "exp": NOW + 60});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &payload,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let err = key.verify(&token, NOW).unwrap_err();
        assert!(
            matches!(&err, TokenError::Malformed(m) if m.contains("room")),
            "{err}"
        );
        assert_eq!(err.reason(), "malformed");
    }

    #[test]
    fn empty_identity_is_refused() {
        let key = hmac_key();
        let payload = serde_json::json!({"sub": " ", "room": "r", "exp": NOW + 60});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &payload,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let err = key.verify(&token, NOW).unwrap_err();
        assert_eq!(err, TokenError::EmptyIdentity);
        assert_eq!(err.reason(), "empty_identity");
        assert_eq!(
            key.mint(&Claims::new("", "r", NOW)),
            Err(TokenError::EmptyIdentity)
        );
    }

    #[test]
    fn audience_claim_is_refused() {
        let key = hmac_key();
        let payload =
            serde_json::json!({"sub": "a", "room": "r", "exp": NOW + 60, "aud": "elsewhere"});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &payload,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(matches!(
            key.verify(&token, NOW),
            Err(TokenError::Malformed(m)) if m.contains("aud")
        ));
    }

    #[test]
    fn missing_and_malformed_tokens() {
        let key = hmac_key();
        assert_eq!(key.verify("", NOW), Err(TokenError::Missing));
        assert_eq!(key.verify("  ", NOW), Err(TokenError::Missing));
        assert_eq!(TokenError::Missing.reason(), "missing");
        for bad in [
            "abc",
            "a.b",
            "a.b.c.d",
            "!!.b.c",
            "e30.e30.",
            &"a".repeat(10_000),
        ] {
            assert!(
                matches!(key.verify(bad, NOW), Err(TokenError::Malformed(_))),
                "{bad:.40}"
            );
        }
        // Valid header, payload that is not JSON.
        let token = format!("{}.{}.AAAA", b64(br#"{"alg":"HS256"}"#), b64(b"nope"));
        assert!(matches!(
            key.verify(&token, NOW),
            Err(TokenError::Malformed(_) | TokenError::BadSignature)
        ));
    }

    #[test]
    fn short_secret_is_refused() {
        let err = TokenKey::hmac(b"short").unwrap_err();
        assert!(matches!(err, KeyError::SecretTooShort { len: 5 }));
        assert!(err.to_string().contains("5 bytes"));
        assert!(TokenKey::hmac(&[7u8; MIN_SECRET_LEN]).is_ok());
        assert!(matches!(
            TokenKey::hmac(&[7u8; MIN_SECRET_LEN - 1]),
            Err(KeyError::SecretTooShort { len: 31 })
        ));
    }

    #[test]
    fn from_file_reads_each_kind() {
        let secret_path = temp_file("secret", &[SECRET, b"\n"].concat());
        let from_secret = TokenKey::from_file(&secret_path).unwrap();
        assert_eq!(from_secret.algorithm_name(), "HS256");
        // The trailing newline is not part of the secret.
        let token = hmac_key().mint(&claims()).unwrap();
        assert!(from_secret.verify(&token, NOW).is_ok());

        let private_path = temp_file("private.pem", ED_A_PRIVATE.as_bytes());
        let from_private = TokenKey::from_file(&private_path).unwrap();
        assert_eq!(from_private.algorithm_name(), "EdDSA");
        assert!(from_private.can_mint());

        let public_path = temp_file("public.pem", ED_A_PUBLIC.as_bytes());
        let from_public = TokenKey::from_file(&public_path).unwrap();
        assert!(!from_public.can_mint());
        let token = from_private.mint(&claims()).unwrap();
        assert_eq!(from_public.verify(&token, NOW).unwrap(), claims());

        let short_path = temp_file("short", b"tiny\r\n");
        assert!(matches!(
            TokenKey::from_file(&short_path),
            Err(KeyError::SecretTooShort { len: 4 })
        ));

        for path in [secret_path, private_path, public_path, short_path] {
            std::fs::remove_file(path).unwrap();
        }
    }

    #[test]
    fn from_file_reports_missing_file() {
        let path = std::env::temp_dir().join("ruche-token-test-does-not-exist");
        let err = TokenKey::from_file(&path).unwrap_err();
        assert!(matches!(err, KeyError::Read { .. }));
        assert!(err.to_string().contains("ruche-token-test-does-not-exist"));
    }

    #[test]
    fn other_pem_keys_are_refused_not_used_as_secrets() {
        let rsa = b"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n";
        assert!(matches!(
            TokenKey::from_bytes(rsa),
            Err(KeyError::UnsupportedPem { label }) if label == "RSA PRIVATE KEY"
        ));
        assert!(matches!(
            TokenKey::from_bytes(EC_P256_PUBLIC.as_bytes()),
            Err(KeyError::InvalidPublicKey(_))
        ));
        let garbage = b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            TokenKey::from_bytes(garbage),
            Err(KeyError::InvalidPrivateKey(_))
        ));
        let garbage = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            TokenKey::from_bytes(garbage),
            Err(KeyError::InvalidPublicKey(_))
        ));
    }

    #[test]
    fn ed25519_public_keys_of_wrong_length_or_off_curve_are_refused() {
        // Ed25519 SPKI with a 16-byte key: would make jsonwebtoken panic at
        // verification if accepted.
        let short = "-----BEGIN PUBLIC KEY-----\nMBowBQYDK2VwAxEAAQEBAQEBAQEBAQEBAQEBAQ==\n-----END PUBLIC KEY-----\n";
        let err = TokenKey::from_bytes(short.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, KeyError::InvalidPublicKey(m) if m.contains("16 bytes")),
            "{err}"
        );
        // 32 bytes that are not a curve point (y = 2 has no x on Ed25519).
        let off_curve = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            TokenKey::from_bytes(off_curve.as_bytes()),
            Err(KeyError::InvalidPublicKey(_))
        ));
    }

    #[test]
    fn debug_does_not_print_key_material() {
        let printed = format!("{:?}", hmac_key());
        assert!(printed.contains("HS256"));
        assert!(!printed.contains("0123456789abcdef"));
    }

    #[test]
    fn base64url_decoder() {
        assert_eq!(decode_base64url(""), Some(vec![]));
        assert_eq!(decode_base64url("Zg"), Some(b"f".to_vec()));
        assert_eq!(decode_base64url("Zm8"), Some(b"fo".to_vec()));
        assert_eq!(decode_base64url("Zm9v"), Some(b"foo".to_vec()));
        assert_eq!(decode_base64url("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_base64url("Z"), None);
        assert_eq!(decode_base64url("Zg=="), None);
        assert_eq!(decode_base64url("Z+8"), None);
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(decode_base64url(&b64(&data)), Some(data));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_verify(token in ".{0,300}") {
            prop_assert!(hmac_key().verify(&token, NOW).is_err());
            prop_assert!(ed_key().verify(&token, NOW).is_err());
        }

        #[test]
        fn arbitrary_jwt_shapes_never_verify(
            token in "[A-Za-z0-9_=+/-]{0,60}(\\.[A-Za-z0-9_=+/-]{0,60}){0,4}",
        ) {
            prop_assert!(hmac_key().verify(&token, NOW).is_err());
            prop_assert!(ed_key().verify(&token, NOW).is_err());
        }

        #[test]
        fn arbitrary_json_parts_never_verify(
            header in prop_oneof![
                Just(r#"{"alg":"HS256"}"#.to_owned()),
                Just(r#"{"alg":"EdDSA"}"#.to_owned()),
                ".{0,40}",
            ],
            payload in ".{0,80}",
            signature in "[A-Za-z0-9_-]{0,90}",
        ) {
            let token = hand_made(&header, &payload, &signature);
            prop_assert!(hmac_key().verify(&token, NOW).is_err());
            prop_assert!(ed_key().verify(&token, NOW).is_err());
        }

        #[test]
        fn any_single_character_change_is_refused(
            index in any::<prop::sample::Index>(),
            replacement in "[A-Za-z0-9_.-]",
        ) {
            let key = hmac_key();
            let token = key.mint(&claims()).unwrap();
            let at = index.index(token.len());
            let original = &token[at..=at];
            prop_assume!(original != replacement);
            let mutated = format!("{}{replacement}{}", &token[..at], &token[at + 1..]);
            prop_assert!(key.verify(&mutated, NOW).is_err());
        }
    }
}
