//! Opaque page cursors: a feed position (`rank`, `post`) or the last id of a list, versioned
//! and URL-safe; anything a client did not get from a page decodes to `InvalidArgument`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};
use crate::model::{Entry, PostId};

use super::read_u64;

const CURSOR_V1: u8 = 1;
const CURSOR_FEED: u8 = b'F';
const CURSOR_LIST: u8 = b'L';
const CURSOR_RANKED: u8 = b'R';

/// A position in a ranked feed: the last entry the reader was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedCursor {
    /// Rank of the last entry shown.
    pub rank: u64,
    /// Post id of the last entry shown.
    pub post: PostId,
}

impl FeedCursor {
    /// Whether `e` comes strictly after this position in feed order (rank↓, post↓).
    pub fn is_before(&self, e: &Entry) -> bool {
        (e.rank, e.post) < (self.rank, self.post)
    }
}

fn decode_cursor_bytes(s: &str, kind: u8, len: usize) -> Result<Vec<u8>> {
    let bad = || {
        // Never echo the cursor: it is the caller's unbounded input.
        Error::invalid(format!(
            "malformed cursor ({} bytes): pass back a cursor exactly as a previous page returned it",
            s.len()
        ))
    };
    if s.len() > 64 {
        return Err(bad());
    }
    let b = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    if b.len() != len || b[0] != CURSOR_V1 || b[1] != kind {
        return Err(bad());
    }
    Ok(b)
}

/// Encodes a feed cursor as opaque URL-safe text.
pub fn encode_feed_cursor(c: FeedCursor) -> String {
    let mut b = vec![CURSOR_V1, CURSOR_FEED];
    b.extend_from_slice(&c.rank.to_be_bytes());
    b.extend_from_slice(&c.post.to_be_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

/// Decodes a feed cursor; anything else is an `InvalidArgument` error.
pub fn decode_feed_cursor(s: &str) -> Result<FeedCursor> {
    let b = decode_cursor_bytes(s, CURSOR_FEED, 18)?;
    Ok(FeedCursor {
        rank: read_u64(&b, 2).unwrap_or(0),
        post: read_u64(&b, 10).unwrap_or(0),
    })
}

/// Encodes a list cursor (the last id of a page of users or posts).
pub fn encode_list_cursor(last: u64) -> String {
    let mut b = vec![CURSOR_V1, CURSOR_LIST];
    b.extend_from_slice(&last.to_be_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

/// Decodes a list cursor; anything else is an `InvalidArgument` error.
pub fn decode_list_cursor(s: &str) -> Result<u64> {
    let b = decode_cursor_bytes(s, CURSOR_LIST, 10)?;
    Ok(read_u64(&b, 2).unwrap_or(0))
}

/// Encodes a ranked-feed cursor: a reading session and the position in it.
pub fn encode_ranked_cursor(session: u64, offset: u32) -> String {
    let mut b = vec![CURSOR_V1, CURSOR_RANKED];
    b.extend_from_slice(&session.to_be_bytes());
    b.extend_from_slice(&offset.to_be_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

/// Decodes a ranked-feed cursor into `(session, offset)`; anything else is an
/// `InvalidArgument` error.
pub fn decode_ranked_cursor(s: &str) -> Result<(u64, u32)> {
    let b = decode_cursor_bytes(s, CURSOR_RANKED, 14)?;
    let offset = u32::from_be_bytes([b[10], b[11], b[12], b[13]]);
    Ok((read_u64(&b, 2).unwrap_or(0), offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn malformed_cursors_are_invalid_argument() {
        for s in ["", "!!!", "AAAA", &encode_list_cursor(3), &"A".repeat(200)] {
            assert!(matches!(decode_feed_cursor(s), Err(Error::InvalidArgument(_))), "{s}");
        }
        assert!(matches!(
            decode_list_cursor(&encode_feed_cursor(FeedCursor { rank: 1, post: 2 })),
            Err(Error::InvalidArgument(_))
        ));
    }

    proptest! {
        #[test]
        fn ranked_cursor_roundtrips(session: u64, offset: u32) {
            prop_assert_eq!(decode_ranked_cursor(&encode_ranked_cursor(session, offset)).unwrap(), (session, offset));
            prop_assert!(decode_feed_cursor(&encode_ranked_cursor(session, offset)).is_err());
        }

        #[test]
        fn feed_cursor_roundtrips(rank: u64, post: u64) {
            let c = FeedCursor { rank, post };
            prop_assert_eq!(decode_feed_cursor(&encode_feed_cursor(c)).unwrap(), c);
        }
    }
}
