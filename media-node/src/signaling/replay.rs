//! The token ids (`jti`) this node admitted, remembered until their token expires, so that a
//! token carrying one admits once: a copy replayed after its participant left (or while they
//! are still in) is refused.
//!
//! A join claims its token's id before it asks the media loop for a seat, so two joins racing
//! with the same token cannot both pass; a join the room then refuses gives the id back, so the
//! participant can try again with the same token. The ledger lives in the node's memory: a token
//! is bound to its room, and a room to one node at a time.

use std::collections::{BTreeSet, HashMap};

use crate::token::TokenError;

/// How many unexpired token ids a node remembers at most. A join token is a few hundred
/// bytes, so an id costs about a hundred: this bounds the ledger near 20 MB. Past it, tokens
/// with an id are refused until some expire (tokens without one are not remembered).
pub const DEFAULT_CAPACITY: usize = 200_000;

/// The ids admitted and when each may be forgotten.
#[derive(Debug)]
pub struct ReplayLedger {
    until: HashMap<String, u64>,
    by_expiry: BTreeSet<(u64, String)>,
    capacity: usize,
}

impl ReplayLedger {
    /// An empty ledger holding at most `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            until: HashMap::new(),
            by_expiry: BTreeSet::new(),
            capacity,
        }
    }

    /// Claims `jti` until `until` (unix seconds: the token's expiry and the clock skew allowed),
    /// or refuses it if it was claimed already. Ids whose time has passed at `now` are forgotten
    /// first, in order of expiry, so the work is proportional to what expired.
    pub fn claim(&mut self, jti: &str, until: u64, now: u64) -> Result<(), TokenError> {
        self.forget_expired(now);
        if self.until.contains_key(jti) {
            return Err(TokenError::Replayed {
                jti: jti.to_owned(),
            });
        }
        if self.until.len() >= self.capacity {
            return Err(TokenError::ReplayLedgerFull {
                held: self.until.len(),
            });
        }
        self.until.insert(jti.to_owned(), until);
        self.by_expiry.insert((until, jti.to_owned()));
        Ok(())
    }

    /// Gives back a claim whose join was refused after the claim.
    pub fn release(&mut self, jti: &str) {
        if let Some(until) = self.until.remove(jti) {
            self.by_expiry.remove(&(until, jti.to_owned()));
        }
    }

    /// How many ids are held.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }

    fn forget_expired(&mut self, now: u64) {
        while let Some(first) = self.by_expiry.first() {
            if first.0 > now {
                break;
            }
            if let Some((_, jti)) = self.by_expiry.pop_first() {
                self.until.remove(&jti);
            }
        }
    }
}

impl Default for ReplayLedger {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn an_id_admits_once_until_it_expires() {
        let mut ledger = ReplayLedger::default();
        assert_eq!(ledger.claim("a", NOW + 60, NOW), Ok(()));
        assert_eq!(
            ledger.claim("a", NOW + 60, NOW + 30),
            Err(TokenError::Replayed { jti: "a".into() })
        );
        // Another id is independent.
        assert_eq!(ledger.claim("b", NOW + 90, NOW + 30), Ok(()));
        // Once its time has passed the id is forgotten: the token itself is refused as
        // expired by then, so nothing can replay it.
        assert_eq!(ledger.claim("a", NOW + 200, NOW + 60), Ok(()));
        assert_eq!(ledger.len(), 2);
    }

    #[test]
    fn a_released_claim_admits_again() {
        let mut ledger = ReplayLedger::default();
        ledger.claim("a", NOW + 60, NOW).unwrap();
        ledger.release("a");
        assert!(ledger.is_empty());
        assert_eq!(ledger.claim("a", NOW + 60, NOW), Ok(()));
        // Releasing an id never claimed changes nothing.
        ledger.release("zzz");
        assert_eq!(ledger.len(), 1);
    }

    #[test]
    fn a_full_ledger_refuses_until_ids_expire() {
        let mut ledger = ReplayLedger::new(2);
        ledger.claim("a", NOW + 10, NOW).unwrap();
        ledger.claim("b", NOW + 20, NOW).unwrap();
        assert_eq!(
            ledger.claim("c", NOW + 30, NOW),
            Err(TokenError::ReplayLedgerFull { held: 2 })
        );
        // A replay is still told apart from a full ledger.
        assert_eq!(
            ledger.claim("a", NOW + 10, NOW),
            Err(TokenError::Replayed { jti: "a".into() })
        );
        assert_eq!(ledger.claim("c", NOW + 30, NOW + 10), Ok(()));
        assert_eq!(ledger.len(), 2);
    }

    proptest! {
        /// Whatever the sequence of claims and releases, an id is refused exactly when an
        /// unexpired, unreleased claim of it exists, and the two indexes agree.
        #[test]
        fn the_ledger_matches_a_plain_model(
            steps in proptest::collection::vec((0u8..6, 0u64..50, 1u64..40, any::<bool>()), 1..200)
        ) {
            let mut ledger = ReplayLedger::new(usize::MAX);
            let mut model: HashMap<String, u64> = HashMap::new();
            let mut now = NOW;
            for (id, advance, ttl, release) in steps {
                now += advance % 7;
                let jti = format!("id-{id}");
                if release {
                    ledger.release(&jti);
                    model.remove(&jti);
                    continue;
                }
                model.retain(|_, until| *until > now);
                let expected_replay = model.contains_key(&jti);
                let got = ledger.claim(&jti, now + ttl, now);
                prop_assert_eq!(got.is_err(), expected_replay);
                if !expected_replay {
                    model.insert(jti, now + ttl);
                }
                prop_assert_eq!(ledger.len(), model.len());
                prop_assert_eq!(ledger.by_expiry.len(), ledger.until.len());
            }
        }
    }
}
