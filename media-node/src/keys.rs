//! The node's join token keys: read from their files, shared by signaling (which verifies) and
//! the admin API (which mints migration tokens), and read again while the node runs, so that a
//! key rotation reaches live nodes without restarting them (and cutting their meetings).
//!
//! A rotation writes the new key in the key file and moves the old one to the previous-key
//! file; both admit until the previous-key file is emptied or removed. Under the operator both
//! are entries of the fleet's join key Secret, which the kubelet refreshes in the pod within
//! about a minute. A change that does not load (a truncated file, a key of an unknown kind)
//! is logged and counted, and the keys in use are kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::metrics::Metrics;
use crate::token::{KeyError, KeyRing, TokenKey};

/// How often the key files are read again. The kubelet's own refresh of a Secret volume takes
/// up to about a minute, so a rotation is dominated by it.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// Why the key files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// A key file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// The flag that names the file: `--token-key-file` or `--previous-token-key-file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file holds no usable key.
    #[error("{what} {path}: {source}")]
    Key {
        /// The flag that names the file: `--token-key-file` or `--previous-token-key-file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why the key was refused.
        source: KeyError,
    },
}

/// Where the keys are.
#[derive(Clone, Debug)]
pub struct KeyFiles {
    /// The key new tokens are verified (and minted) with.
    pub current: PathBuf,
    /// The key of a rotation in progress. The file may be absent or empty: no rotation.
    pub previous: Option<PathBuf>,
}

/// The contents of the key files at one reading, compared with the next to tell a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyContents {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl KeyFiles {
    /// Reads the files. An absent or blank previous-key file reads as no previous key.
    pub fn read(&self) -> Result<KeyContents, KeyFileError> {
        let current = std::fs::read(&self.current).map_err(|source| KeyFileError::Read {
            what: "--token-key-file",
            path: self.current.clone(),
            source,
        })?;
        let previous = match &self.previous {
            None => None,
            Some(path) => match std::fs::read(path) {
                Ok(bytes) if bytes.trim_ascii().is_empty() => None,
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(KeyFileError::Read {
                        what: "--previous-token-key-file",
                        path: path.clone(),
                        source,
                    });
                }
            },
        };
        Ok(KeyContents { current, previous })
    }

    /// Reads the files and loads the keys.
    pub fn load(&self) -> Result<(KeyContents, KeyRing), KeyFileError> {
        let contents = self.read()?;
        let ring = self.ring(&contents)?;
        Ok((contents, ring))
    }

    fn ring(&self, contents: &KeyContents) -> Result<KeyRing, KeyFileError> {
        let key = |what, path: &Path, bytes: &[u8]| {
            TokenKey::from_bytes(bytes).map_err(|source| KeyFileError::Key {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let current = key("--token-key-file", &self.current, &contents.current)?;
        let previous = match (&self.previous, &contents.previous) {
            (Some(path), Some(bytes)) => Some(key("--previous-token-key-file", path, bytes)?),
            _ => None,
        };
        Ok(KeyRing::new(current, previous))
    }

    /// Reads the files `every` ([`RELOAD_INTERVAL`] in the node) and swaps the keys in `keys`
    /// when the files changed and load; runs until the task is dropped.
    pub async fn watch(
        self,
        mut last: KeyContents,
        keys: Arc<SharedKeys>,
        metrics: Arc<Metrics>,
        every: Duration,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let read = self.read();
            if read.as_ref().is_ok_and(|contents| *contents == last) {
                continue;
            }
            match read.and_then(|contents| self.ring(&contents).map(|ring| (contents, ring))) {
                Ok((contents, ring)) => {
                    tracing::info!(
                        algorithm = ring.current().algorithm_name(),
                        rotating = ring.rotating(),
                        "join token keys changed: reloaded"
                    );
                    keys.set(ring);
                    metrics.key_reloaded("loaded");
                    last = contents;
                }
                Err(e) => {
                    tracing::error!(
                        "join token keys changed but cannot be used, keeping the keys in use: {e}"
                    );
                    metrics.key_reloaded("failed");
                    // Log a broken file once, not every interval: the next change is news.
                    if let Ok(contents) = self.read() {
                        last = contents;
                    }
                }
            }
        }
    }
}

/// The keys in use, swapped whole by a reload.
#[derive(Debug)]
pub struct SharedKeys {
    ring: RwLock<Arc<KeyRing>>,
}

impl SharedKeys {
    /// Keys starting as `ring`.
    pub fn new(ring: KeyRing) -> Self {
        Self {
            ring: RwLock::new(Arc::new(ring)),
        }
    }

    /// The keys now.
    pub fn get(&self) -> Arc<KeyRing> {
        // A panic while holding the lock could only have happened in `set`, which replaces
        // the value in one move: whatever is there is a whole ring.
        self.ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the keys.
    pub fn set(&self, ring: KeyRing) {
        *self.ring.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(ring);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{Claims, TokenError};

    const A: &[u8] = b"secret-a-secret-a-secret-a-secret-a";
    const B: &[u8] = b"secret-b-secret-b-secret-b-secret-b";
    const NOW: u64 = 1_700_000_000;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ruche-keys-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn files(dir: &Path) -> KeyFiles {
        KeyFiles {
            current: dir.join("token-key"),
            previous: Some(dir.join("previous-token-key")),
        }
    }

    fn token(secret: &[u8]) -> String {
        TokenKey::hmac(secret)
            .unwrap()
            .mint(&Claims::new("alice", "r1", NOW + 60))
            .unwrap()
    }

    #[test]
    fn a_missing_or_blank_previous_key_means_no_rotation() {
        let dir = dir("no-rotation");
        std::fs::write(dir.join("token-key"), A).unwrap();
        let (_, ring) = files(&dir).load().unwrap();
        assert!(!ring.rotating());
        std::fs::write(dir.join("previous-token-key"), b"\n").unwrap();
        let (_, ring) = files(&dir).load().unwrap();
        assert!(!ring.rotating());
        std::fs::write(dir.join("previous-token-key"), B).unwrap();
        let (_, ring) = files(&dir).load().unwrap();
        assert!(ring.rotating());
        assert!(ring.verify(&token(A), NOW).is_ok());
        assert!(ring.verify(&token(B), NOW).is_ok());
    }

    #[test]
    fn a_bad_file_is_named() {
        let dir = dir("bad");
        let err = files(&dir).load().unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read --token-key-file ") && err.contains("token-key"),
            "{err}"
        );
        std::fs::write(dir.join("token-key"), A).unwrap();
        std::fs::write(dir.join("previous-token-key"), b"short").unwrap();
        let err = files(&dir).load().unwrap_err().to_string();
        assert!(
            err.starts_with("--previous-token-key-file ") && err.contains("at least 32"),
            "{err}"
        );
    }

    /// Polls `check` until it holds, for up to five seconds.
    async fn soon(check: impl Fn() -> bool) -> bool {
        for _ in 0..250 {
            if check() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        check()
    }

    #[tokio::test]
    async fn a_rotation_reaches_the_running_node_and_a_broken_file_keeps_the_keys() {
        let dir = dir("watch");
        std::fs::write(dir.join("token-key"), A).unwrap();
        let files = files(&dir);
        let (contents, ring) = files.load().unwrap();
        let keys = Arc::new(SharedKeys::new(ring));
        let metrics = Arc::new(Metrics::new());
        let task = tokio::spawn(files.clone().watch(
            contents,
            keys.clone(),
            metrics.clone(),
            Duration::from_millis(10),
        ));

        // Rotate: B is the new key, A the previous one.
        std::fs::write(dir.join("token-key"), B).unwrap();
        std::fs::write(dir.join("previous-token-key"), A).unwrap();
        assert!(soon(|| keys.get().rotating()).await);
        let ring = keys.get();
        assert!(ring.rotating());
        assert!(ring.verify(&token(A), NOW).is_ok());
        assert!(ring.current().verify(&token(B), NOW).is_ok());

        // End the rotation: A no longer admits.
        std::fs::remove_file(dir.join("previous-token-key")).unwrap();
        assert!(soon(|| !keys.get().rotating()).await);
        assert_eq!(
            keys.get().verify(&token(A), NOW),
            Err(TokenError::BadSignature)
        );

        // A broken key file is refused; B still admits.
        std::fs::write(dir.join("token-key"), b"too short").unwrap();
        assert!(
            soon(|| metrics
                .encode()
                .contains("ruche_media_token_key_reloads_total{reason=\"failed\"} 1"))
            .await
        );
        assert!(keys.get().verify(&token(B), NOW).is_ok());
        let text = metrics.encode();
        assert!(
            text.contains("ruche_media_token_key_reloads_total{reason=\"loaded\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ruche_media_token_key_reloads_total{reason=\"failed\"} 1"),
            "{text}"
        );
        task.abort();
    }
}
