//! Signed messages: every privileged message — an approval, a rejection, a change request, a
//! remediation choice, a cancel, a pause, a resume, an override, a transfer decision, a funding
//! release, a compensation decision — is signed with the sender's Ed25519 key; the directory in
//! the policy holds each person's public key. What is signed names the promotion's run chain,
//! the message and its subject, so a signature is good for one decision on one promotion and
//! nothing else. It is one line per field, so anyone can rebuild and re-verify it from the audit
//! trail:
//!
//! ```text
//! promo-message/v1
//! <workflow id>             promotion-SPRING-26
//! <first run id>            the run chain's first run (the promotion continues as new)
//! <message>                 approve | reject | request_changes | choose_remediation | cancel |
//!                           pause | resume | override | resolve_compensation
//! <subject>                 what the message is about, see [`subject`]
//! r<revision>               the revision decided on
//! <actor>                   the sender's employee id
//! <role>                    ROLE_FINANCE, … for decisions; "-" for operator messages
//! <SHA-256 of the comment or reason, hex>
//! <signed at, Unix seconds>
//! ```
//!
//! Pure functions: verification is deterministic CPU work, so the workflow runs it itself (in the
//! update validator and again when a message is applied).

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The first line of every signed message.
pub const DOMAIN: &str = "promo-message/v1";

/// How far ahead of the workflow's clock a signature may be dated (clock skew), seconds.
pub const MAX_FUTURE_SKEW: i64 = 300;

/// The latest `signed_at` accepted (2100-01-01): a value past it is refused as out of range
/// before any arithmetic is done with it.
pub const MAX_SIGNED_AT: i64 = 4_102_444_800;

/// Why a key, a signature or a signed message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature where the policy requires one.
    #[error("unsigned: the policy requires signed messages (`promo` signs with --key or PROMO_APPROVER_KEY)")]
    Unsigned,
    /// The sender has no key in the directory.
    #[error("signed, but {0:?} has no public key in the directory")]
    NoPublicKey(String),
    /// A signed message without its revision.
    #[error("a signed message names its revision")]
    NoRevision,
    /// Signed for another revision.
    #[error("signed for revision {signed}, but the current revision is {current}")]
    WrongRevision {
        /// The revision signed.
        signed: u32,
        /// The current one.
        current: u32,
    },
    /// `signed_at` outside 1970–2100.
    #[error("signed_at: {0} is out of range (Unix seconds between 0 and {MAX_SIGNED_AT})")]
    SignedAtOutOfRange(i64),
    /// The signature was spent on an earlier message.
    #[error("this signature was already used: a replayed message")]
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
    /// The signature is not this message signed by the sender's key.
    #[error(
        "the signature does not verify against {actor:?}'s key for {message} on {subject:?} of revision \
         {revision} (what was signed must name this promotion, this message, this subject and revision)"
    )]
    DoesNotVerify {
        /// The sender.
        actor: String,
        /// The message name.
        message: String,
        /// The subject the workflow expects.
        subject: String,
        /// The revision.
        revision: u32,
    },
}

/// What a message says, as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed<'a> {
    /// `promotion-<id>`.
    pub workflow_id: &'a str,
    /// The first run of the promotion's chain of runs.
    pub first_run_id: &'a str,
    /// The message name (`approve`).
    pub message: &'a str,
    /// What it is about ([`subject`]).
    pub subject: &'a str,
    /// The revision decided on (never 0 in a signed message).
    pub revision: u32,
    /// The sender's employee id.
    pub actor: &'a str,
    /// The role decided in (`ROLE_FINANCE`), or "-".
    pub role: &'a str,
    /// The comment or reason.
    pub comment: &'a str,
    /// When it was signed, Unix seconds.
    pub signed_at: i64,
}

impl Signed<'_> {
    /// The exact text signed.
    pub fn payload(&self) -> String {
        let digest = hex(&Sha256::digest(self.comment.as_bytes()));
        format!(
            "{DOMAIN}\n{}\n{}\n{}\n{}\nr{}\n{}\n{}\n{digest}\n{}",
            self.workflow_id,
            self.first_run_id,
            self.message,
            self.subject,
            self.revision,
            self.actor,
            self.role,
            self.signed_at
        )
    }
}

/// What a message is about, as its signature names it — the same function for the workflow
/// (from its state) and for the signer (from the `status` query's `decision_subjects` and its own
/// arguments):
///
/// - approve / reject / request_changes while awaiting approval: `approval`;
/// - approve / reject as supply chain on transfers awaiting it: `transfers <ids, sorted, comma>`;
/// - approve as finance on a launch held for withdrawn funding: `funding-hold`;
/// - choose_remediation: `remediation <region> <option>`;
/// - cancel, pause, resume: `promotion`;
/// - override: `override <region>`, or `override *` for every region;
/// - resolve_compensation: `compensation retry` or `compensation accept`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject<'a> {
    /// An approval decision in the approval stage.
    Approval,
    /// Supply chain's decision on the transfers awaiting it.
    Transfers(&'a [String]),
    /// Finance's release of a launch held for withdrawn funding.
    FundingHold,
    /// A remediation option chosen for a region.
    Remediation {
        /// The region.
        region: &'a str,
        /// The option.
        option: &'a str,
    },
    /// The whole promotion (cancel, pause, resume).
    Promotion,
    /// An override of a region's gate (empty: every region's).
    Override(&'a str),
    /// A decision on a blocked compensation (`retry` or `accept`).
    Compensation(&'a str),
}

/// The subject line of a signed message.
pub fn subject(s: &Subject<'_>) -> String {
    match s {
        Subject::Approval => "approval".into(),
        Subject::Transfers(ids) => {
            let mut ids = ids.to_vec();
            ids.sort();
            format!("transfers {}", ids.join(","))
        }
        Subject::FundingHold => "funding-hold".into(),
        Subject::Remediation { region, option } => format!("remediation {region} {option}"),
        Subject::Promotion => "promotion".into(),
        Subject::Override(region) => format!("override {}", if region.is_empty() { "*" } else { region }),
        Subject::Compensation(decision) => format!("compensation {decision}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes base64 `text` into exactly `N` bytes.
fn bytes<const N: usize>(what: &'static str, text: &str) -> Result<[u8; N], SignatureError> {
    let raw =
        B64.decode(text.trim()).map_err(|e| SignatureError::NotBase64 { what, detail: e.to_string() })?;
    let found = raw.len();
    raw.try_into().map_err(|_| SignatureError::Length { what, found, expected: N })
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

/// The signature's bytes as hex: what replay protection remembers, so that two encodings of the
/// same signature (padding, whitespace) are one signature.
pub fn fingerprint(signature: &str) -> Result<String, SignatureError> {
    Ok(hex(&bytes::<64>("signature", signature)?))
}

/// Whether `signature` (base64) is `payload` signed by the key `public_b64`: `Ok(false)` when it
/// is a well-formed signature of something else.
pub fn verifies(public_b64: &str, payload: &str, signature: &str) -> Result<bool, SignatureError> {
    let key = public_key(public_b64)?;
    let sig = bytes::<64>("signature", signature)?;
    Ok(key.verify(payload.as_bytes(), &Signature::from_bytes(&sig)).is_ok())
}

/// What the workflow knows when it checks a signed message.
pub struct Check<'a> {
    /// The sender's public key from the directory, if any.
    pub public_key: Option<&'a str>,
    /// Whether the policy requires signatures.
    pub required: bool,
    /// The promotion's current revision.
    pub current_revision: u32,
    /// Workflow time now (Unix seconds), when known (not in an update validator).
    pub now: Option<i64>,
    /// How old a signature may be, seconds.
    pub max_age: i64,
    /// Fingerprints ([`fingerprint`]) of the signatures already used on this promotion, with
    /// their `signed_at` (a fingerprint is forgotten once its signature would be stale anyway).
    pub used: &'a BTreeMap<String, i64>,
}

/// A signature that holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The exact text signed.
    pub payload: String,
    /// The signature as received.
    pub signature: String,
    /// Its [`fingerprint`].
    pub fingerprint: String,
    /// The key it verified against.
    pub public_key: String,
    /// When it was signed, Unix seconds.
    pub signed_at: i64,
}

/// `Ok(Some(_))` for a valid signature, `Ok(None)` for an unsigned message the policy accepts,
/// or why the signature is refused.
pub fn check(c: &Check<'_>, s: &Signed<'_>, signature: &str) -> Result<Option<Verified>, SignatureError> {
    if !(0..=MAX_SIGNED_AT).contains(&s.signed_at) && !signature.is_empty() {
        return Err(SignatureError::SignedAtOutOfRange(s.signed_at));
    }
    if signature.is_empty() {
        return if c.required { Err(SignatureError::Unsigned) } else { Ok(None) };
    }
    let Some(key) = c.public_key else {
        return Err(SignatureError::NoPublicKey(s.actor.to_owned()));
    };
    if s.revision == 0 {
        return Err(SignatureError::NoRevision);
    }
    if s.revision != c.current_revision {
        return Err(SignatureError::WrongRevision { signed: s.revision, current: c.current_revision });
    }
    let fingerprint = fingerprint(signature)?;
    if c.used.contains_key(&fingerprint) {
        return Err(SignatureError::Replayed);
    }
    if let Some(now) = c.now {
        let age = now.saturating_sub(s.signed_at);
        if age > c.max_age {
            return Err(SignatureError::Stale { age, max_age: c.max_age });
        }
        if s.signed_at.saturating_sub(now) > MAX_FUTURE_SKEW {
            return Err(SignatureError::Future);
        }
    }
    let payload = s.payload();
    if !verifies(key, &payload, signature)? {
        return Err(SignatureError::DoesNotVerify {
            actor: s.actor.to_owned(),
            message: s.message.to_owned(),
            subject: s.subject.to_owned(),
            revision: s.revision,
        });
    }
    Ok(Some(Verified {
        payload,
        signature: signature.to_owned(),
        fingerprint,
        public_key: key.to_owned(),
        signed_at: s.signed_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn signed(revision: u32, comment: &'static str, subject: &'static str) -> Signed<'static> {
        Signed {
            workflow_id: "promotion-SPRING-26",
            first_run_id: "run-1",
            message: "approve",
            subject,
            revision,
            actor: "E2001",
            role: "ROLE_FINANCE",
            comment,
            signed_at: 1_000,
        }
    }

    #[test]
    fn valid_forged_wrong_key_replayed_and_stale_signatures() {
        let (secret, public) = keypair_from_seed([7; 32]);
        let (_, other) = keypair_from_seed([8; 32]);
        assert_eq!(public_key_of(&secret).unwrap(), public);
        let used = BTreeMap::new();
        let c = Check {
            public_key: Some(&public),
            required: true,
            current_revision: 1,
            now: Some(1_060),
            max_age: 900,
            used: &used,
        };
        let d = signed(1, "ok", "approval");
        let sig = sign(&secret, &d.payload()).unwrap();
        let v = check(&c, &d, &sig).unwrap().unwrap();
        assert_eq!(v.payload, d.payload());
        let refused = |c: &Check<'_>, d: &Signed<'_>, sig: &str| check(c, d, sig).unwrap_err().to_string();
        // Forged: the comment changed after signing.
        assert!(refused(&c, &signed(1, "ok, and more", "approval"), &sig).contains("does not verify"));
        // Signed with another key than the directory's.
        assert!(refused(&Check { public_key: Some(&other), ..c }, &d, &sig).contains("does not verify"));
        // Replayed on another subject, run chain, message, revision, or again on the same one.
        assert!(refused(&c, &signed(1, "ok", "funding-hold"), &sig).contains("does not verify"));
        assert!(
            refused(&c, &Signed { first_run_id: "run-2", ..d.clone() }, &sig).contains("does not verify")
        );
        assert!(refused(&c, &Signed { message: "reject", ..d.clone() }, &sig).contains("does not verify"));
        let c2 = Check { current_revision: 2, ..c };
        assert!(refused(&c2, &d, &sig).contains("current revision is 2"));
        assert!(refused(&c2, &signed(2, "ok", "approval"), &sig).contains("does not verify"));
        let used = BTreeMap::from([(v.fingerprint.clone(), v.signed_at)]);
        assert!(refused(&Check { used: &used, ..c }, &d, &sig).contains("already used"));
        // The same signature with a trailing space, or re-encoded: still the spent signature.
        assert!(refused(&Check { used: &used, ..c }, &d, &format!("{sig} ")).contains("already used"));
        // Stale, and at the limits of the clock (no overflow, the value named).
        assert!(refused(&Check { now: Some(5_000), ..c }, &d, &sig).contains("s old"));
        let far = Signed { signed_at: i64::MIN, ..d.clone() };
        assert_eq!(check(&c, &far, &sig), Err(SignatureError::SignedAtOutOfRange(i64::MIN)));
        let ahead = Signed { signed_at: i64::MAX, ..d.clone() };
        assert!(refused(&c, &ahead, &sig).starts_with("signed_at: 9223372036854775807 is out of range"));
        // Unsigned: refused where required, accepted where the policy says so.
        assert!(refused(&c, &d, "").starts_with("unsigned"));
        assert_eq!(check(&Check { required: false, ..c }, &d, ""), Ok(None));
        assert!(refused(&Check { public_key: None, ..c }, &d, &sig).contains("no public key"));
        assert!(refused(&c, &d, "not base64!").contains("not base64"));
    }

    #[test]
    fn subjects_name_what_is_decided() {
        let ids = ["T2".to_owned(), "T1".to_owned()];
        assert_eq!(subject(&Subject::Transfers(&ids)), "transfers T1,T2");
        assert_eq!(subject(&Subject::Override("")), "override *");
        assert_eq!(
            subject(&Subject::Remediation { region: "R3", option: "R3:delay" }),
            "remediation R3 R3:delay"
        );
        assert_eq!(subject(&Subject::Compensation("retry")), "compensation retry");
    }

    proptest! {
        /// Any signed_at, any now: a check answers (no overflow, no panic).
        #[test]
        fn any_clock_values_get_an_answer(signed_at in any::<i64>(), now in any::<i64>(), revision in any::<u32>()) {
            let (secret, public) = keypair_from_seed([9; 32]);
            let used = BTreeMap::new();
            let c = Check { public_key: Some(&public), required: true, current_revision: 1, now: Some(now), max_age: 900, used: &used };
            let d = Signed { signed_at, revision, ..signed(1, "x", "approval") };
            let sig = sign(&secret, &d.payload()).unwrap();
            let _ = check(&c, &d, &sig);
        }
    }
}
