//! Bearer tokens: `v1.<claims>.<mac>`, the claims (subject and expiry) signed with HMAC-SHA256.
//! A user token acts as its user only; an admin token may act as anyone.

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
}

/// Signs and verifies tokens with one key.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer with `key` (at least 16 bytes).
    pub fn new(key: Vec<u8>) -> Self {
        Signer { key }
    }

    fn mac(&self, msg: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        m.update(msg);
        m
    }

    /// A token for `subject` that expires at `expires_at_s`.
    pub fn issue(&self, subject: Subject, expires_at_s: u64) -> String {
        let sub = match subject {
            Subject::User(u) => format!("u{u}"),
            Subject::Admin => "admin".to_string(),
        };
        let claims = URL_SAFE_NO_PAD.encode(format!("{sub}:{expires_at_s}"));
        let mac = URL_SAFE_NO_PAD.encode(self.mac(claims.as_bytes()).finalize().into_bytes());
        format!("v1.{claims}.{mac}")
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
        self.mac(claims.as_bytes())
            .verify_slice(&sig)
            .map_err(|_| bad("signature does not match"))?;
        let raw = URL_SAFE_NO_PAD
            .decode(claims)
            .map_err(|_| bad("claims are not base64url"))?;
        let raw = String::from_utf8(raw).map_err(|_| bad("claims are not UTF-8"))?;
        let (sub, exp) = raw.split_once(':').ok_or_else(|| bad("claims are malformed"))?;
        let expires_at_s: u64 = exp.parse().map_err(|_| bad("expiry is malformed"))?;
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
        Ok(Claims { subject, expires_at_s })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejections() {
        let s = Signer::new(b"0123456789abcdef".to_vec());
        let t = s.issue(Subject::User(42), 2000);
        assert_eq!(
            s.verify(&t, 1000).unwrap(),
            Claims {
                subject: Subject::User(42),
                expires_at_s: 2000
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
        let admin = s.verify(&s.issue(Subject::Admin, 2000), 1000).unwrap();
        assert!(admin.act_as(7).is_ok());
        let user = s.verify(&t, 1000).unwrap();
        assert!(user.act_as(42).is_ok());
        assert_eq!(user.act_as(43).unwrap_err().code(), tonic::Code::PermissionDenied);
    }
}
