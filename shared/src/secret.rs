//! Event secrets: generated random, stored as SHA-256, compared in constant time.
//!
//! A secret is 32 random bytes shown once as 64 hex characters. Only its hash is stored;
//! a presented secret is hashed and compared with [`subtle`], so neither timing nor the
//! store reveals it. SHA-256 without a salt is enough for 256-bit random secrets.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh random secret (64 hex characters).
pub fn generate() -> String {
    hex::encode(random_bytes::<32>())
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// SHA-256 of any bytes (request bodies under an idempotency key).
pub fn hash_bytes(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Whether two digests are equal, in constant time.
pub fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// A hex SHA-256 digest (how the Lambda is given the admin token's hash) as bytes.
pub fn parse_hash(hex_digest: &str) -> Option<[u8; 32]> {
    hex::decode(hex_digest.trim()).ok()?.try_into().ok()
}

/// Whether `presented` is the secret whose hash is `stored`, in constant time.
pub fn verify(presented: &str, stored: &[u8; 32]) -> bool {
    hash(presented).ct_eq(stored).into()
}

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_verifies_against_its_hash_only() {
        let secret = generate();
        assert_eq!(secret.len(), 64);
        let stored = hash(&secret);
        assert!(verify(&secret, &stored));
        assert!(!verify(&generate(), &stored));
        assert!(!verify("", &stored));
    }
}
