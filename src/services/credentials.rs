//! Secrets: API keys (`pnu_` + 30 base62 random characters ≈ 178 bits + 6-character checksum),
//! session ids, password hashing on a bounded blocking pool. Secrets are stored only as SHA-256
//! (keys, sessions) or Argon2id (passwords).

use crate::domain::{ApiKeyId, UserId};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};
use tokio::sync::Semaphore;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SECRET_LEN: usize = 30;
const CHECK_LEN: usize = 6;

pub const USER_KEY_PREFIX: &str = "pnu_";
pub const BOT_KEY_PREFIX: &str = "pnb_";

/// Random base62 text from the OS-seeded CSPRNG.
pub fn random_base62(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| BASE62[rng.gen_range(0..62)] as char)
        .collect()
}

fn checksum(secret: &str) -> String {
    let d = Sha256::digest(secret.as_bytes());
    let mut n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as u64;
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|b| *b as char).collect()
}

/// SHA-256 of a secret.
pub fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Lower-case hex of a digest.
pub fn hex(d: &[u8; 32]) -> String {
    hex_bytes(d)
}

/// Lower-case hex of any bytes.
pub fn hex_bytes(d: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(d.len() * 2);
    for b in d {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// Parses lower- or upper-case hex; `None` for anything else.
pub fn unhex_bytes(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
        .collect()
}

fn sealing_cipher(
    seed: &ed25519_dalek::SigningKey,
    purpose: &str,
) -> chacha20poly1305::ChaCha20Poly1305 {
    use chacha20poly1305::KeyInit;
    // The key is derived from the installation's signing seed (data directory or config) and the
    // purpose, so every process sharing a database shares it without another secret to
    // distribute, and a value sealed for one purpose cannot be opened as another.
    let mut h = Sha256::new();
    h.update(purpose.as_bytes());
    h.update(seed.to_bytes());
    chacha20poly1305::ChaCha20Poly1305::new(&h.finalize())
}

/// Encrypts a secret that must be read back (an upstream's auth string, an email body with a
/// link in it) for storage: ChaCha20-Poly1305 with a random nonce, as hex of nonce ‖ ciphertext.
pub fn seal(seed: &ed25519_dalek::SigningKey, purpose: &str, plain: &[u8]) -> String {
    use chacha20poly1305::aead::{Aead, AeadCore};
    let nonce = chacha20poly1305::ChaCha20Poly1305::generate_nonce(&mut rand::rngs::OsRng);
    // Encryption with a fresh nonce fails only for inputs over 256 GiB.
    let ct = sealing_cipher(seed, purpose)
        .encrypt(&nonce, plain)
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend(ct);
    hex_bytes(&out)
}

/// Opens what [`seal`] made for the same purpose; `None` when it does not decrypt (another
/// installation's key, another purpose, tampering).
pub fn unseal(seed: &ed25519_dalek::SigningKey, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
    use chacha20poly1305::aead::Aead;
    let bytes = unhex_bytes(sealed).filter(|b| b.len() > 12)?;
    let (nonce, ct) = bytes.split_at(12);
    sealing_cipher(seed, purpose)
        .decrypt(chacha20poly1305::Nonce::from_slice(nonce), ct)
        .ok()
}

/// Hex SHA-256 of a secret: how keys, sessions and tokens are stored and looked up.
pub fn sha256_hex(s: &str) -> String {
    hex(&sha256(s))
}

/// A new key: (the secret shown once, its hash, its masked form).
pub fn generate_api_key(prefix: &str) -> (String, String, String) {
    let secret = random_base62(SECRET_LEN);
    let key = format!("{prefix}{secret}{}", checksum(&secret));
    let hash = sha256_hex(&key);
    let masked = mask(&key, prefix);
    (key, hash, masked)
}

fn mask(key: &str, prefix: &str) -> String {
    let body = &key[prefix.len()..];
    format!("{prefix}{}********{}", &body[..4], &body[body.len() - 4..])
}

/// True when `key` has a known prefix, the right length and alphabet, and a matching checksum —
/// checked before any lookup, so a mistyped key never reaches the database.
pub fn well_formed_key(key: &str) -> bool {
    let Some(body) = key
        .strip_prefix(USER_KEY_PREFIX)
        .or_else(|| key.strip_prefix("pnb_"))
    else {
        return false;
    };
    if body.len() != SECRET_LEN + CHECK_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (secret, check) = body.split_at(SECRET_LEN);
    subtle::ConstantTimeEq::ct_eq(checksum(secret).as_bytes(), check.as_bytes()).into()
}

/// A verified key as cached.
#[derive(Debug, Clone)]
pub struct CachedKey {
    pub key_id: ApiKeyId,
    pub user_id: UserId,
    /// Unix microseconds; `i64::MAX` = never.
    pub expires_at_us: i64,
    pub site_admin: bool,
    /// The owner's email (or the service account's name), for audit records.
    pub name: Arc<str>,
    /// The account of a service account's key.
    pub bot_account: Option<crate::domain::AccountId>,
    /// When this entry was read from the database (Unix µs); entries older than
    /// [`KEY_CACHE_TTL_US`] are verified again, bounding how long a key revoked by another process
    /// without a notification (SQLite, lost connection) keeps working.
    pub cached_at_us: i64,
}

pub const KEY_CACHE_TTL_US: i64 = 60_000_000;

/// Verified keys by hash, so a warm key costs no database call. Entries are removed when the
/// key is deleted; the cache is bounded (cleared when full — misses just go to the database).
#[derive(Default)]
pub struct KeyCache {
    map: RwLock<FxHashMap<[u8; 32], CachedKey>>,
    used: std::sync::Mutex<rustc_hash::FxHashSet<ApiKeyId>>,
}

const KEY_CACHE_MAX: usize = 100_000;

impl KeyCache {
    pub fn get(&self, hash: &[u8; 32]) -> Option<CachedKey> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
    }
    pub fn insert(&self, hash: [u8; 32], k: CachedKey) {
        let mut m = self.map.write().unwrap_or_else(|p| p.into_inner());
        if m.len() >= KEY_CACHE_MAX {
            m.clear();
        }
        m.insert(hash, k);
    }
    pub fn remove_key(&self, key_id: ApiKeyId) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, v| v.key_id != key_id);
    }
    /// Forgets every verified key (benchmarks measure the cold path with it).
    pub fn clear(&self) {
        self.map.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Notes that a key was used; written in batches by a background job.
    pub fn mark_used(&self, key_id: ApiKeyId) {
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key_id);
    }
    /// Takes the keys used since the last call.
    pub fn take_used(&self) -> Vec<ApiKeyId> {
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect()
    }
    pub fn remove_user(&self, user_id: UserId) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, v| v.user_id != user_id);
    }
}

/// Argon2id (m = 19456 KiB, t = 2, p = 1) on the blocking pool, at most `permits` at a time so
/// a burst of logins cannot starve the server.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
}

fn argon2() -> Argon2<'static> {
    // The parameters are constants within argon2's documented bounds, so `new` cannot fail.
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A fixed hash verified when the user does not exist, so unknown-user and wrong-password
/// answers take the same time.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl PasswordHasher {
    pub fn new(permits: usize) -> PasswordHasher {
        PasswordHasher {
            permits: Arc::new(Semaphore::new(permits)),
        }
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
        })
        .await?
    }

    /// Verifies `password` against `hash` (or against a dummy hash when `hash` is `None`, which
    /// always fails but costs the same).
    pub async fn verify(&self, password: String, hash: Option<String>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || {
            let real = hash.is_some();
            let stored = hash.unwrap_or_else(|| {
                DUMMY_HASH
                    .get_or_init(|| {
                        let salt = SaltString::generate(&mut rand::rngs::OsRng);
                        argon2()
                            .hash_password(b"dummy password", &salt)
                            .map(|h| h.to_string())
                            .unwrap_or_default()
                    })
                    .clone()
            });
            let ok = PasswordHash::new(&stored)
                .map(|parsed| {
                    argon2()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false);
            Ok(ok && real)
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_40_chars() {
        for _ in 0..50 {
            let (key, hash, masked) = generate_api_key(USER_KEY_PREFIX);
            assert_eq!(key.len(), 40);
            assert!(well_formed_key(&key), "{key}");
            assert_eq!(hash, sha256_hex(&key));
            assert!(!masked.contains(&key[8..30]));
        }
    }

    #[test]
    fn a_single_typo_is_caught_by_the_checksum() {
        let (key, _, _) = generate_api_key(USER_KEY_PREFIX);
        let mut chars: Vec<char> = key.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert!(!well_formed_key(&typo));
        assert!(!well_formed_key("pnu_short"));
        assert!(!well_formed_key(&key.replace("pnu_", "xyz_")));
    }

    #[tokio::test]
    async fn password_hash_round_trip() {
        let h = PasswordHasher::new(1);
        let hash = h.hash("correct horse".into()).await.expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(h
            .verify("correct horse".into(), Some(hash.clone()))
            .await
            .expect("verify"));
        assert!(!h
            .verify("wrong horse".into(), Some(hash))
            .await
            .expect("verify"));
        assert!(!h
            .verify("dummy password".into(), None)
            .await
            .expect("verify"));
    }
}
