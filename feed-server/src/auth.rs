//! Bearer tokens: `v1.<claims>.<mac>`, the claims (subject, expiry, issue time) signed with
//! HMAC-SHA256. A user token acts as its user only; an admin token may act as anyone.
//!
//! Revocation has two levers: a signing-key rotation (the previous key keeps verifying until a
//! grace deadline, then every token it signed is dead) and a per-subject floor stored by the
//! engine ("tokens issued before T are invalid"), checked by the service on every call.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tonic::Status;

type HmacSha256 = Hmac<Sha256>;

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// One user.
    User(u64),
    /// The operator: bulk loading, load generation.
    Admin,
}

/// A verified token's claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    /// Who it speaks for.
    pub subject: Subject,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at_s: u64,
    /// Issue time, microseconds since the Unix epoch (0 for tokens minted before issue times
    /// were signed: any revocation of their subject ends them).
    pub issued_at_us: u64,
}

impl Claims {
    /// Ok if these claims may act as `user`; `PERMISSION_DENIED` otherwise.
    pub fn act_as(&self, user: u64) -> Result<(), Status> {
        match self.subject {
            Subject::Admin => Ok(()),
            Subject::User(u) if u == user => Ok(()),
            Subject::User(u) => Err(Status::permission_denied(format!(
                "token of user {u} may not act as user {user}"
            ))),
        }
    }

    /// Whether the token is the admin's.
    pub fn is_admin(&self) -> bool {
        self.subject == Subject::Admin
    }

    /// The engine's view of this caller: the operator sees everything, a user what the graph
    /// lets them.
    pub fn viewer(&self) -> feed_engine::Viewer {
        match self.subject {
            Subject::Admin => feed_engine::Viewer::Operator,
            Subject::User(u) => feed_engine::Viewer::User(u),
        }
    }

    /// The subject whose revocation floor applies (`OPERATOR_TOKENS` for admin tokens).
    pub fn revocation_subject(&self) -> u64 {
        match self.subject {
            Subject::Admin => feed_engine::OPERATOR_TOKENS,
            Subject::User(u) => u,
        }
    }
}

/// Signs tokens with the current key and verifies them with it, or with the previous key until
/// its grace deadline (a key rotation that does not log everyone out at once).
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
    previous: Option<(Vec<u8>, u64)>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer with `key` (at least 16 bytes).
    pub fn new(key: Vec<u8>) -> Self {
        Signer { key, previous: None }
    }

    /// Also accepts tokens signed with `previous` until `until_s` (Unix seconds).
    pub fn with_previous(mut self, previous: Vec<u8>, until_s: u64) -> Self {
        self.previous = Some((previous, until_s));
        self
    }

    fn mac(key: &[u8], msg: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        m.update(msg);
        m
    }

    /// A token for `subject` issued at `issued_at_us` (Unix µs) that expires at `expires_at_s`
    /// (Unix seconds).
    pub fn issue_at(&self, subject: Subject, issued_at_us: u64, expires_at_s: u64) -> String {
        let sub = match subject {
            Subject::User(u) => format!("u{u}"),
            Subject::Admin => "admin".to_string(),
        };
        let claims = URL_SAFE_NO_PAD.encode(format!("{sub}:{expires_at_s}:{issued_at_us}"));
        let mac = URL_SAFE_NO_PAD.encode(Self::mac(&self.key, claims.as_bytes()).finalize().into_bytes());
        format!("v1.{claims}.{mac}")
    }

    /// A token for `subject`, issued now, that lives `ttl_s` seconds.
    pub fn issue(&self, subject: Subject, ttl_s: u64) -> String {
        self.issue_at(subject, now_us(), now_s().saturating_add(ttl_s))
    }

    /// Verifies a token at `now_s`: `UNAUTHENTICATED` for anything forged, malformed or expired.
    pub fn verify(&self, token: &str, now_s: u64) -> Result<Claims, Status> {
        let bad = |why: &str| Status::unauthenticated(format!("invalid token: {why}"));
        let mut parts = token.split('.');
        let (Some("v1"), Some(claims), Some(mac), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected v1.<claims>.<signature>"));
        };
        let sig = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| bad("signature is not base64url"))?;
        let current = Self::mac(&self.key, claims.as_bytes()).verify_slice(&sig).is_ok();
        let previous = !current
            && self.previous.as_ref().is_some_and(|(key, until_s)| {
                now_s < *until_s && Self::mac(key, claims.as_bytes()).verify_slice(&sig).is_ok()
            });
        if !current && !previous {
            return Err(bad("signature does not match"));
        }
        let raw = URL_SAFE_NO_PAD
            .decode(claims)
            .map_err(|_| bad("claims are not base64url"))?;
        let raw = String::from_utf8(raw).map_err(|_| bad("claims are not UTF-8"))?;
        let mut fields = raw.split(':');
        let (Some(sub), Some(exp), iat, None) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
            return Err(bad("claims are malformed"));
        };
        let expires_at_s: u64 = exp.parse().map_err(|_| bad("expiry is malformed"))?;
        let issued_at_us: u64 = match iat {
            Some(t) => t.parse().map_err(|_| bad("issue time is malformed"))?,
            None => 0,
        };
        if expires_at_s <= now_s {
            return Err(bad("expired"));
        }
        let subject = match sub {
            "admin" => Subject::Admin,
            s => Subject::User(
                s.strip_prefix('u')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| bad("subject is malformed"))?,
            ),
        };
        Ok(Claims {
            subject,
            expires_at_s,
            issued_at_us,
        })
    }

    /// The claims of a request's `authorization: Bearer …` metadata.
    pub fn authenticate<T>(&self, req: &tonic::Request<T>, now_s: u64) -> Result<Claims, Status> {
        let v = req.metadata().get("authorization").ok_or_else(|| {
            Status::unauthenticated("missing authorization metadata: send 'authorization: Bearer <token>'")
        })?;
        let v = v
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization metadata is not text"))?;
        let token = v
            .strip_prefix("Bearer ")
            .ok_or_else(|| Status::unauthenticated("authorization must be 'Bearer <token>'"))?;
        self.verify(token.trim(), now_s)
    }
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    now_us() / 1_000_000
}

/// Microseconds since the Unix epoch: the issue times that revocation compares. A revocation
/// and a token issued on either side of it are at least one request apart, far more than 1 µs.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejections() {
        let s = Signer::new(b"0123456789abcdef".to_vec());
        let t = s.issue_at(Subject::User(42), 900_000_000, 2000);
        assert_eq!(
            s.verify(&t, 1000).unwrap(),
            Claims {
                subject: Subject::User(42),
                expires_at_s: 2000,
                issued_at_us: 900_000_000,
            }
        );
        assert!(s.verify(&t, 2000).is_err(), "expired");
        let other = Signer::new(b"fedcba9876543210".to_vec());
        assert!(other.verify(&t, 1000).is_err(), "other key");
        let forged = t.replace(&t[3..8], "AAAAA");
        assert!(s.verify(&forged, 1000).is_err(), "tampered claims");
        for junk in ["", "v1", "v1.a.b.c", "v2.x.y", "v1.!!.??"] {
            assert_eq!(
                s.verify(junk, 1000).unwrap_err().code(),
                tonic::Code::Unauthenticated,
                "{junk}"
            );
        }
        let admin = s.verify(&s.issue_at(Subject::Admin, 900, 2000), 1000).unwrap();
        assert!(admin.act_as(7).is_ok());
        let user = s.verify(&t, 1000).unwrap();
        assert!(user.act_as(42).is_ok());
        assert_eq!(user.act_as(43).unwrap_err().code(), tonic::Code::PermissionDenied);
    }
}

#[cfg(test)]
mod rotation {
    use super::*;

    #[test]
    fn the_previous_key_verifies_until_its_grace_deadline_only() {
        let old = Signer::new(b"old-key-0123456789".to_vec());
        let token = old.issue_at(Subject::User(7), 100, 10_000);
        let rotated = Signer::new(b"new-key-0123456789".to_vec()).with_previous(b"old-key-0123456789".to_vec(), 500);
        assert!(rotated.verify(&token, 400).is_ok(), "within the grace period");
        assert_eq!(
            rotated.verify(&token, 500).unwrap_err().code(),
            tonic::Code::Unauthenticated,
            "after the grace deadline"
        );
        let fresh = rotated.issue_at(Subject::User(7), 450, 10_000);
        assert!(old.verify(&fresh, 460).is_err(), "new tokens use the new key");
        assert!(rotated.verify(&fresh, 9_000).is_ok());
    }
}
