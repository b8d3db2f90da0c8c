//! Audit events and their hash chain: what an event records, its canonical serialization, how
//! each event's hash covers its predecessor's, checkpoint messages, and chain verification.
//! Pure: no I/O; signing and verifying signatures take the key as an argument.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The chain of events that belong to no account (user sign-ups, logins, personal keys).
pub const SYSTEM_CHAIN: Uuid = Uuid::nil();

/// The hash a chain starts from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditActor {
    /// `user`, `service_account` or `system`.
    pub kind: String,
    pub id: Option<Uuid>,
    pub name: String,
}

/// One audit event as stored: every field is covered by `hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The chain (account id, or [`SYSTEM_CHAIN`]).
    pub account: Uuid,
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    pub id: Uuid,
    /// Unix microseconds.
    pub occurred: i64,
    /// `prefect-cloud.{resource-type}.{action}`.
    pub event: String,
    pub workspace: Option<Uuid>,
    pub actor: AuditActor,
    /// `prefect-cloud.{resource-type}.{uuid}`.
    pub resource_id: String,
    pub resource_name: Option<String>,
    /// Related resources as `{"prefect.resource.id": …, "prefect.resource.role": …}` objects.
    pub related: Value,
    /// What changed (before/after of the changed fields). Never secrets.
    pub payload: Value,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The fields an event's hash covers, in a fixed order. `serde_json` maps are sorted by key, so
/// the serialization of `related` and `payload` is canonical too.
#[derive(Serialize)]
struct Canonical<'a> {
    v: u8,
    account: &'a Uuid,
    seq: i64,
    id: &'a Uuid,
    occurred: i64,
    event: &'a str,
    workspace: &'a Option<Uuid>,
    actor: &'a AuditActor,
    resource_id: &'a str,
    resource_name: &'a Option<String>,
    related: &'a Value,
    payload: &'a Value,
    ip: &'a Option<String>,
    user_agent: &'a Option<String>,
    prev_hash: &'a str,
}

fn hex(d: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(d.len() * 2);
    for b in d {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

impl AuditRecord {
    /// The SHA-256 (hex) of the canonical serialization, which includes `prev_hash`.
    pub fn compute_hash(&self) -> String {
        let c = Canonical {
            v: 1,
            account: &self.account,
            seq: self.seq,
            id: &self.id,
            occurred: self.occurred,
            event: &self.event,
            workspace: &self.workspace,
            actor: &self.actor,
            resource_id: &self.resource_id,
            resource_name: &self.resource_name,
            related: &self.related,
            payload: &self.payload,
            ip: &self.ip,
            user_agent: &self.user_agent,
            prev_hash: &self.prev_hash,
        };
        // Serializing plain data to a Vec cannot fail.
        let bytes = serde_json::to_vec(&c).unwrap_or_default();
        hex(&Sha256::digest(bytes))
    }
}

/// A signed statement that the chain of `account` had `hash` at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checkpoint {
    pub account: Uuid,
    pub seq: i64,
    pub hash: String,
    /// Unix microseconds.
    pub signed_at: i64,
    /// Hex of the 32-byte Ed25519 public key that signed it.
    pub key_id: String,
    /// Hex of the 64-byte Ed25519 signature over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    pub fn message(account: &Uuid, seq: i64, hash: &str, signed_at: i64) -> Vec<u8> {
        format!("atrium-audit-checkpoint:v1:{account}:{seq}:{hash}:{signed_at}").into_bytes()
    }
}

/// Signs checkpoints.
pub fn sign_checkpoint(
    key: &ed25519_dalek::SigningKey,
    account: Uuid,
    seq: i64,
    hash: String,
    signed_at: i64,
) -> Checkpoint {
    use ed25519_dalek::Signer;
    let sig = key.sign(&Checkpoint::message(&account, seq, &hash, signed_at));
    Checkpoint {
        account,
        seq,
        hash,
        signed_at,
        key_id: hex(key.verifying_key().as_bytes()),
        signature: hex(&sig.to_bytes()),
    }
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let txt = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(txt, 16).ok()?;
    }
    Some(out)
}

/// Parses a hex public key.
pub fn parse_public_key(hex_key: &str) -> Option<ed25519_dalek::VerifyingKey> {
    ed25519_dalek::VerifyingKey::from_bytes(&unhex::<32>(hex_key.trim())?).ok()
}

/// Hex of a public key.
pub fn public_key_hex(key: &ed25519_dalek::VerifyingKey) -> String {
    hex(key.as_bytes())
}

impl Checkpoint {
    /// True when the signature is valid for `key`.
    pub fn verify(&self, key: &ed25519_dalek::VerifyingKey) -> bool {
        let Some(sig) = unhex::<64>(&self.signature) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&sig);
        key.verify_strict(
            &Checkpoint::message(&self.account, self.seq, &self.hash, self.signed_at),
            &sig,
        )
        .is_ok()
    }
}

/// What is wrong with a chain: the first broken place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError {
    /// The event's stored hash is not the hash of its contents.
    Tampered { seq: i64, id: Uuid },
    /// The event does not follow its predecessor (a deleted, inserted or reordered event).
    Broken { seq: i64, id: Uuid, detail: String },
    /// The chain does not start at 1 and no checkpoint vouches for where it starts.
    UnvouchedStart { first_seq: i64 },
    /// A checkpoint's signature is invalid.
    BadCheckpoint { seq: i64 },
    /// A checkpoint names an event the chain does not have, or with another hash (truncated or
    /// rewritten history).
    CheckpointMismatch { seq: i64, detail: String },
}

impl std::fmt::Display for ChainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainError::Tampered { seq, id } => {
                write!(f, "event #{seq} ({id}) was modified: its hash does not match its contents")
            }
            ChainError::Broken { seq, id, detail } => write!(f, "event #{seq} ({id}): {detail}"),
            ChainError::UnvouchedStart { first_seq } => write!(
                f,
                "the chain starts at #{first_seq} but no signed checkpoint vouches for the events before it"
            ),
            ChainError::BadCheckpoint { seq } => {
                write!(f, "the checkpoint at #{seq} has an invalid signature")
            }
            ChainError::CheckpointMismatch { seq, detail } => {
                write!(f, "the checkpoint at #{seq} does not match the chain: {detail}")
            }
        }
    }
}

/// Verifies a chain fed one event at a time, in `seq` order (so a chain of any length verifies in
/// constant memory), against its checkpoints.
pub struct ChainVerifier {
    checkpoints: std::collections::BTreeMap<i64, Checkpoint>,
    key: ed25519_dalek::VerifyingKey,
    signatures_checked: bool,
    prev: Option<(i64, String)>,
    seen: usize,
}

impl ChainVerifier {
    pub fn new(checkpoints: Vec<Checkpoint>, key: &ed25519_dalek::VerifyingKey) -> ChainVerifier {
        ChainVerifier {
            checkpoints: checkpoints.into_iter().map(|c| (c.seq, c)).collect(),
            key: *key,
            signatures_checked: false,
            prev: None,
            seen: 0,
        }
    }

    /// Events verified so far.
    pub fn seen(&self) -> usize {
        self.seen
    }

    fn check_signatures(&mut self) -> Result<(), ChainError> {
        if !self.signatures_checked {
            for cp in self.checkpoints.values() {
                if !cp.verify(&self.key) {
                    return Err(ChainError::BadCheckpoint { seq: cp.seq });
                }
            }
            self.signatures_checked = true;
        }
        Ok(())
    }

    /// Checks the next event.
    pub fn feed(&mut self, e: &AuditRecord) -> Result<(), ChainError> {
        self.check_signatures()?;
        if e.compute_hash() != e.hash {
            return Err(ChainError::Tampered {
                seq: e.seq,
                id: e.id,
            });
        }
        match &self.prev {
            None if e.seq == 1 => {
                if e.prev_hash != GENESIS_HASH {
                    return Err(ChainError::Broken {
                        seq: e.seq,
                        id: e.id,
                        detail: "the first event does not start from the genesis hash".into(),
                    });
                }
            }
            None => {
                let vouched = self
                    .checkpoints
                    .get(&(e.seq - 1))
                    .is_some_and(|cp| cp.hash == e.prev_hash);
                if !vouched {
                    return Err(ChainError::UnvouchedStart { first_seq: e.seq });
                }
            }
            Some((seq, hash)) => {
                if e.seq != seq + 1 {
                    return Err(ChainError::Broken {
                        seq: e.seq,
                        id: e.id,
                        detail: format!("follows #{seq} (events are missing or reordered)"),
                    });
                }
                if &e.prev_hash != hash {
                    return Err(ChainError::Broken {
                        seq: e.seq,
                        id: e.id,
                        detail: "its previous-hash does not match the event before it".into(),
                    });
                }
            }
        }
        if let Some(cp) = self.checkpoints.get(&e.seq) {
            if cp.hash != e.hash {
                return Err(ChainError::CheckpointMismatch {
                    seq: cp.seq,
                    detail: "the event there has another hash".into(),
                });
            }
        }
        self.prev = Some((e.seq, e.hash.clone()));
        self.seen += 1;
        Ok(())
    }

    /// Ends the chain: no checkpoint may lie beyond its last event. Returns the events verified.
    pub fn finish(mut self) -> Result<usize, ChainError> {
        self.check_signatures()?;
        let last = self.prev.as_ref().map_or(0, |(s, _)| *s);
        if let Some((seq, _)) = self.checkpoints.range(last + 1..).next() {
            return Err(ChainError::CheckpointMismatch {
                seq: *seq,
                detail: format!("the chain ends at #{last} (events after it were removed)"),
            });
        }
        Ok(self.seen)
    }
}

/// Verifies one chain: events in `seq` order, and its checkpoints. Returns the number of events
/// verified, or the first problem.
pub fn verify_chain(
    events: &[AuditRecord],
    checkpoints: &[Checkpoint],
    key: &ed25519_dalek::VerifyingKey,
) -> Result<usize, ChainError> {
    let mut v = ChainVerifier::new(checkpoints.to_vec(), key);
    for e in events {
        v.feed(e)?;
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
    }

    fn chain(n: i64) -> Vec<AuditRecord> {
        let account = Uuid::from_u128(42);
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let mut e = AuditRecord {
                    account,
                    seq,
                    id: Uuid::from_u128(seq as u128),
                    occurred: seq * 1000,
                    event: "prefect-cloud.workspace.created".into(),
                    workspace: None,
                    actor: AuditActor {
                        kind: "user".into(),
                        id: Some(Uuid::from_u128(1)),
                        name: "ann".into(),
                    },
                    resource_id: format!("prefect-cloud.workspace.{seq}"),
                    resource_name: Some("prod".into()),
                    related: json!([]),
                    payload: json!({"after": {"name": "prod", "b": 1, "a": 2}}),
                    ip: None,
                    user_agent: None,
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = e.compute_hash();
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_with_checkpoints_verifies() {
        let k = key();
        let events = chain(10);
        let cp = sign_checkpoint(&k, events[0].account, 7, events[6].hash.clone(), 1);
        assert_eq!(verify_chain(&events, &[cp], &k.verifying_key()), Ok(10));
    }

    #[test]
    fn modification_deletion_reordering_insertion_and_truncation_are_each_detected() {
        let k = key();
        let vk = k.verifying_key();
        let events = chain(10);
        let cp = sign_checkpoint(&k, events[0].account, 9, events[8].hash.clone(), 1);

        let mut modified = events.clone();
        modified[3].payload = json!({"after": {"name": "evil"}});
        assert!(matches!(
            verify_chain(&modified, &[], &vk),
            Err(ChainError::Tampered { seq: 4, .. })
        ));

        let mut deleted = events.clone();
        deleted.remove(4);
        assert!(matches!(
            verify_chain(&deleted, &[], &vk),
            Err(ChainError::Broken { seq: 6, .. })
        ));

        let mut reordered = events.clone();
        reordered.swap(2, 3);
        assert!(verify_chain(&reordered, &[], &vk).is_err());

        // An inserted event, even with a correct hash of its own, breaks the link after it.
        let mut inserted = events.clone();
        let mut extra = events[4].clone();
        extra.id = Uuid::from_u128(999);
        extra.hash = extra.compute_hash();
        inserted.insert(5, extra);
        assert!(verify_chain(&inserted, &[], &vk).is_err());

        let truncated = events[..8].to_vec();
        assert!(matches!(
            verify_chain(&truncated, std::slice::from_ref(&cp), &vk),
            Err(ChainError::CheckpointMismatch { seq: 9, .. })
        ));

        let headless = events[3..].to_vec();
        assert_eq!(
            verify_chain(&headless, &[], &vk),
            Err(ChainError::UnvouchedStart { first_seq: 4 })
        );
        let cut = sign_checkpoint(&k, events[0].account, 3, events[2].hash.clone(), 1);
        assert_eq!(
            verify_chain(&headless, &[cut], &vk),
            Ok(7),
            "a checkpoint at the cut vouches for retention"
        );

        let mut forged = cp;
        forged.hash = events[7].hash.clone();
        assert_eq!(
            verify_chain(&events, &[forged], &vk),
            Err(ChainError::BadCheckpoint { seq: 9 })
        );
    }

    #[test]
    fn payload_key_order_does_not_change_the_hash() {
        let mut a = chain(1).remove(0);
        let h = a.hash.clone();
        a.payload =
            serde_json::from_str(r#"{"after": {"a": 2, "name": "prod", "b": 1}}"#).expect("json");
        assert_eq!(a.compute_hash(), h);
    }
}
