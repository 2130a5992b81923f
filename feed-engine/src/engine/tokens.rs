//! Token revocation floors: "tokens issued before T are invalid", per user (and one for the
//! operator's tokens, as subject 0). The engine only stores the floors durably; the server signs
//! tokens with their issue time and compares.

use crate::error::Result;
use crate::model::UserId;
use crate::tables::{META, MetaKey};

use super::{Engine, Writer};

/// The subject whose floor applies to operator (admin) tokens. No user has id 0.
pub const OPERATOR_TOKENS: UserId = 0;

impl Engine {
    /// The issue time (Unix microseconds) below which `subject`'s tokens are refused; 0 if none.
    pub fn tokens_valid_from(&self, subject: UserId) -> Result<u64> {
        Ok(META
            .get_u64(&self.inner().store, MetaKey::TokensValidFrom(subject))?
            .unwrap_or(0))
    }
}

impl Writer<'_> {
    /// Makes every token of `subject` ([`OPERATOR_TOKENS`] for admin tokens) issued before
    /// `before_us` (Unix microseconds) invalid. The floor only rises; returns the floor in force.
    /// Durable when this returns.
    pub fn revoke_tokens(&self, subject: UserId, before_us: u64) -> Result<u64> {
        let inner = self.inner();
        if subject != OPERATOR_TOKENS {
            inner.require_user(subject)?;
        }
        let _g = inner.lock_users(subject, subject);
        let floor = self.tokens_valid_from(subject)?.max(before_us);
        let mut b = inner.store.batch();
        META.put_u64(&inner.store, &mut b, MetaKey::TokensValidFrom(subject), floor);
        inner.store.write(b, self.ctx.durability())?;
        Ok(floor)
    }
}
