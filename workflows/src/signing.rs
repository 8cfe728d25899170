//! Signed approvals: an approver signs each decision (approve, reject, request changes) with an
//! Ed25519 key; the directory in the policy holds each approver's public key. What is signed is
//! one line per field, so anyone can rebuild and re-verify it from the audit trail:
//!
//! ```text
//! promo-decision/v1
//! <promotion id>
//! <revision>
//! <role, e.g. ROLE_FINANCE>
//! <approve | reject | request_changes>
//! <SHA-256 of the comment, hex>
//! <signed at, Unix seconds>
//! ```
//!
//! Pure functions: verification is deterministic CPU work, so the workflow runs it itself (in the
//! update validator and again when a signal or update is applied).

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// The first line of every signed decision.
pub const DOMAIN: &str = "promo-decision/v1";

/// What a decision says, as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Promotion id.
    pub promotion_id: &'a str,
    /// Revision decided on (never 0 in a signed decision).
    pub revision: u32,
    /// Role name (`ROLE_FINANCE`).
    pub role: &'a str,
    /// `approve`, `reject` or `request_changes`.
    pub decision: &'a str,
    /// The comment.
    pub comment: &'a str,
    /// When it was signed, Unix seconds.
    pub signed_at: i64,
}

impl Decision<'_> {
    /// The exact text signed.
    pub fn payload(&self) -> String {
        let digest = hex(&Sha256::digest(self.comment.as_bytes()));
        format!(
            "{DOMAIN}\n{}\n{}\n{}\n{}\n{digest}\n{}",
            self.promotion_id, self.revision, self.role, self.decision, self.signed_at
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new key pair from 32 random bytes: (secret key, public key), both base64.
pub fn keypair_from_seed(seed: [u8; 32]) -> (String, String) {
    let key = SigningKey::from_bytes(&seed);
    (B64.encode(key.to_bytes()), B64.encode(key.verifying_key().to_bytes()))
}

/// The public key (base64) of a secret key (base64).
pub fn public_key_of(secret_b64: &str) -> Result<String, String> {
    Ok(B64.encode(signing_key(secret_b64)?.verifying_key().to_bytes()))
}

fn signing_key(secret_b64: &str) -> Result<SigningKey, String> {
    let bytes = B64.decode(secret_b64.trim()).map_err(|e| format!("the secret key is not base64: {e}"))?;
    let seed: [u8; 32] =
        bytes.try_into().map_err(|b: Vec<u8>| format!("the secret key has {} bytes, not 32", b.len()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Signs `payload` with a secret key (base64); the signature is base64.
pub fn sign(secret_b64: &str, payload: &str) -> Result<String, String> {
    Ok(B64.encode(signing_key(secret_b64)?.sign(payload.as_bytes()).to_bytes()))
}

/// A public key (base64), checked.
pub fn public_key(public_b64: &str) -> Result<VerifyingKey, String> {
    let key = B64.decode(public_b64.trim()).map_err(|e| format!("the public key is not base64: {e}"))?;
    let key: [u8; 32] = key.try_into().map_err(|_| "the public key is not 32 bytes".to_owned())?;
    VerifyingKey::from_bytes(&key).map_err(|e| format!("the public key is invalid: {e}"))
}

/// Whether `signature` (base64) is `payload` signed by the key `public_b64`.
pub fn verify(public_b64: &str, payload: &str, signature: &str) -> Result<(), String> {
    let key = public_key(public_b64)?;
    let sig = B64.decode(signature.trim()).map_err(|e| format!("the signature is not base64: {e}"))?;
    let sig: [u8; 64] = sig.try_into().map_err(|_| "the signature is not 64 bytes".to_owned())?;
    key.verify(payload.as_bytes(), &Signature::from_bytes(&sig))
        .map_err(|_| "the signature does not verify against the approver's key".to_owned())
}

/// What the workflow knows when it checks a signed decision.
pub struct Check<'a> {
    /// The approver's public key from the directory, if any.
    pub public_key: Option<&'a str>,
    /// Whether the policy requires signatures.
    pub required: bool,
    /// The promotion's current revision.
    pub current_revision: u32,
    /// Workflow time now (Unix seconds), when known (not in an update validator).
    pub now: Option<i64>,
    /// How old a signature may be, seconds.
    pub max_age: i64,
    /// Signatures already used on this promotion.
    pub used: &'a BTreeSet<String>,
}

/// Why a decision's signature is refused; `Ok(Some(payload))` for a valid signature and
/// `Ok(None)` for an unsigned decision the policy accepts.
pub fn check(c: &Check<'_>, d: &Decision<'_>, signature: &str) -> Result<Option<String>, String> {
    if signature.is_empty() {
        return if c.required {
            Err("unsigned: the policy requires signed decisions (`promo approve` signs with --key or \
                 PROMO_APPROVER_KEY)"
                .into())
        } else {
            Ok(None)
        };
    }
    let Some(key) = c.public_key else {
        return Err("signed, but the approver has no public key in the directory".into());
    };
    if d.revision == 0 {
        return Err("a signed decision names its revision".into());
    }
    if d.revision != c.current_revision {
        return Err(format!(
            "signed for revision {}, but the current revision is {}",
            d.revision, c.current_revision
        ));
    }
    if c.used.contains(signature) {
        return Err("this signature was already used: a replayed decision".into());
    }
    if let Some(now) = c.now {
        if now - d.signed_at > c.max_age {
            return Err(format!(
                "signed {} s ago; the policy accepts signatures up to {} s old",
                now - d.signed_at,
                c.max_age
            ));
        }
        if d.signed_at - now > 300 {
            return Err("signed in the future".into());
        }
    }
    let payload = d.payload();
    verify(key, &payload, signature)?;
    Ok(Some(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(revision: u32, comment: &'static str) -> Decision<'static> {
        Decision {
            promotion_id: "SPRING-26",
            revision,
            role: "ROLE_FINANCE",
            decision: "approve",
            comment,
            signed_at: 1_000,
        }
    }

    #[test]
    fn valid_forged_wrong_key_replayed_and_stale_signatures() {
        let (secret, public) = keypair_from_seed([7; 32]);
        let (_, other) = keypair_from_seed([8; 32]);
        assert_eq!(public_key_of(&secret).unwrap(), public);
        let used = BTreeSet::new();
        let c = Check {
            public_key: Some(&public),
            required: true,
            current_revision: 1,
            now: Some(1_060),
            max_age: 900,
            used: &used,
        };
        let d = decision(1, "ok");
        let sig = sign(&secret, &d.payload()).unwrap();
        assert_eq!(check(&c, &d, &sig), Ok(Some(d.payload())));
        // Forged: the comment changed after signing.
        assert!(check(&c, &decision(1, "ok, and more"), &sig).unwrap_err().contains("does not verify"));
        // Signed with another key than the directory's.
        assert!(
            check(&Check { public_key: Some(&other), ..c }, &d, &sig)
                .unwrap_err()
                .contains("does not verify")
        );
        // Replayed on another revision, or again on the same one.
        let c2 = Check { current_revision: 2, ..c };
        assert!(check(&c2, &d, &sig).unwrap_err().contains("current revision is 2"));
        assert!(check(&c2, &decision(2, "ok"), &sig).unwrap_err().contains("does not verify"));
        let used = BTreeSet::from([sig.clone()]);
        assert!(check(&Check { used: &used, ..c }, &d, &sig).unwrap_err().contains("already used"));
        // Stale.
        assert!(check(&Check { now: Some(5_000), ..c }, &d, &sig).unwrap_err().contains("s old"));
        // Unsigned: refused where required, accepted where the policy says so.
        assert!(check(&c, &d, "").unwrap_err().starts_with("unsigned"));
        assert_eq!(check(&Check { required: false, ..c }, &d, ""), Ok(None));
        assert!(check(&Check { public_key: None, ..c }, &d, &sig).unwrap_err().contains("no public key"));
        assert!(check(&c, &d, "not base64!").unwrap_err().contains("not base64"));
    }
}
