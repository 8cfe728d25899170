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

/// Why a key, a signature or a signed decision is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature where the policy requires one.
    #[error(
        "unsigned: the policy requires signed decisions (`promo approve` signs with --key or \
         PROMO_APPROVER_KEY)"
    )]
    Unsigned,
    /// The sender has no key in the directory.
    #[error("signed, but the approver has no public key in the directory")]
    NoPublicKey,
    /// A signed decision without its revision.
    #[error("a signed decision names its revision")]
    NoRevision,
    /// Signed for another revision.
    #[error("signed for revision {signed}, but the current revision is {current}")]
    WrongRevision {
        /// The revision signed.
        signed: u32,
        /// The current one.
        current: u32,
    },
    /// The signature was spent on an earlier decision.
    #[error("this signature was already used: a replayed decision")]
    Replayed,
    /// Older than the policy accepts.
    #[error("signed {age} s ago; the policy accepts signatures up to {max_age} s old")]
    Stale {
        /// Seconds since signing.
        age: i64,
        /// The policy's limit.
        max_age: i64,
    },
    /// Signed more than five minutes ahead of the workflow's clock.
    #[error("signed in the future")]
    Future,
    /// A key or signature that is not base64.
    #[error("the {what} is not base64: {detail}")]
    NotBase64 {
        /// `secret key`, `public key` or `signature`.
        what: &'static str,
        /// The decoder's complaint.
        detail: String,
    },
    /// A key or signature of the wrong length.
    #[error("the {what} has {found} bytes, not {expected}")]
    Length {
        /// `secret key`, `public key` or `signature`.
        what: &'static str,
        /// Bytes found.
        found: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A public key that is not a valid Ed25519 point.
    #[error("the public key is invalid: {0}")]
    InvalidKey(String),
    /// The signature is not the decision signed by the approver's key.
    #[error("the signature does not verify against the approver's key")]
    DoesNotVerify,
}

/// Decodes base64 `text` into exactly `N` bytes.
fn bytes<const N: usize>(what: &'static str, text: &str) -> Result<[u8; N], SignatureError> {
    let raw =
        B64.decode(text.trim()).map_err(|e| SignatureError::NotBase64 { what, detail: e.to_string() })?;
    let found = raw.len();
    raw.try_into().map_err(|_| SignatureError::Length { what, found, expected: N })
}

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
pub fn public_key_of(secret_b64: &str) -> Result<String, SignatureError> {
    Ok(B64.encode(signing_key(secret_b64)?.verifying_key().to_bytes()))
}

fn signing_key(secret_b64: &str) -> Result<SigningKey, SignatureError> {
    Ok(SigningKey::from_bytes(&bytes::<32>("secret key", secret_b64)?))
}

/// Signs `payload` with a secret key (base64); the signature is base64.
pub fn sign(secret_b64: &str, payload: &str) -> Result<String, SignatureError> {
    Ok(B64.encode(signing_key(secret_b64)?.sign(payload.as_bytes()).to_bytes()))
}

/// A public key (base64), checked.
pub fn public_key(public_b64: &str) -> Result<VerifyingKey, SignatureError> {
    VerifyingKey::from_bytes(&bytes::<32>("public key", public_b64)?)
        .map_err(|e| SignatureError::InvalidKey(e.to_string()))
}

/// Whether `signature` (base64) is `payload` signed by the key `public_b64`.
pub fn verify(public_b64: &str, payload: &str, signature: &str) -> Result<(), SignatureError> {
    let key = public_key(public_b64)?;
    let sig = bytes::<64>("signature", signature)?;
    key.verify(payload.as_bytes(), &Signature::from_bytes(&sig)).map_err(|_| SignatureError::DoesNotVerify)
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
pub fn check(c: &Check<'_>, d: &Decision<'_>, signature: &str) -> Result<Option<String>, SignatureError> {
    if signature.is_empty() {
        return if c.required { Err(SignatureError::Unsigned) } else { Ok(None) };
    }
    let Some(key) = c.public_key else {
        return Err(SignatureError::NoPublicKey);
    };
    if d.revision == 0 {
        return Err(SignatureError::NoRevision);
    }
    if d.revision != c.current_revision {
        return Err(SignatureError::WrongRevision { signed: d.revision, current: c.current_revision });
    }
    if c.used.contains(signature) {
        return Err(SignatureError::Replayed);
    }
    if let Some(now) = c.now {
        let age = now.saturating_sub(d.signed_at);
        if age > c.max_age {
            return Err(SignatureError::Stale { age, max_age: c.max_age });
        }
        if d.signed_at.saturating_sub(now) > 300 {
            return Err(SignatureError::Future);
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
        let refused = |c: &Check<'_>, d: &Decision<'_>, sig: &str| check(c, d, sig).unwrap_err().to_string();
        // Forged: the comment changed after signing.
        assert!(refused(&c, &decision(1, "ok, and more"), &sig).contains("does not verify"));
        // Signed with another key than the directory's.
        assert!(refused(&Check { public_key: Some(&other), ..c }, &d, &sig).contains("does not verify"));
        // Replayed on another revision, or again on the same one.
        let c2 = Check { current_revision: 2, ..c };
        assert!(refused(&c2, &d, &sig).contains("current revision is 2"));
        assert!(refused(&c2, &decision(2, "ok"), &sig).contains("does not verify"));
        let used = BTreeSet::from([sig.clone()]);
        assert!(refused(&Check { used: &used, ..c }, &d, &sig).contains("already used"));
        // Stale, and stale at the limits of the clock (no overflow).
        assert!(refused(&Check { now: Some(5_000), ..c }, &d, &sig).contains("s old"));
        let far = Decision { signed_at: i64::MIN, ..d.clone() };
        assert!(refused(&Check { now: Some(i64::MAX), ..c }, &far, &sig).contains("s old"));
        let ahead = Decision { signed_at: i64::MAX, ..d.clone() };
        assert_eq!(check(&Check { now: Some(i64::MIN), ..c }, &ahead, &sig), Err(SignatureError::Future));
        // Unsigned: refused where required, accepted where the policy says so.
        assert!(refused(&c, &d, "").starts_with("unsigned"));
        assert_eq!(check(&Check { required: false, ..c }, &d, ""), Ok(None));
        assert!(refused(&Check { public_key: None, ..c }, &d, &sig).contains("no public key"));
        assert!(refused(&c, &d, "not base64!").contains("not base64"));
    }
}
