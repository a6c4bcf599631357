//! Random text from the operating system, for what must not be guessed: the fleets' keys and
//! admin tokens, join tokens' ids, replicas' identities.

/// URL-safe, and 64 letters long: each byte's low six bits pick one without bias.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `len` characters of an URL-safe alphabet, 6 random bits each.
pub fn text(len: usize) -> Result<String, getrandom::Error> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 63)]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_has_the_length_asked_and_differs_each_time() {
        let (a, b) = (text(64).unwrap(), text(64).unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
        assert_eq!(text(0).unwrap(), "");
    }
}
