//! Page assembly, pure: merges candidate entries from many sources (a precomputed timeline and
//! pulled outbox heads) into one feed order, de-duplicated, strictly after a cursor.

use crate::codec::FeedCursor;
use crate::model::Entry;

/// Merges `sources` (each in any order) into feed order — rank descending, then post id
/// descending — keeping only entries strictly after `after` and at or above `floor` (inclusive),
/// with each post once.
pub fn merge(sources: &[&[Entry]], after: Option<FeedCursor>, floor: Option<(u64, u64)>) -> Vec<Entry> {
    let mut all: Vec<Entry> = sources
        .iter()
        .flat_map(|s| s.iter().copied())
        .filter(|e| after.is_none_or(|c| c.is_before(e)))
        .filter(|e| floor.is_none_or(|f| (e.rank, e.post) >= f))
        .collect();
    all.sort_unstable_by_key(|e| std::cmp::Reverse(e.order_key()));
    all.dedup_by_key(|e| e.post);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(rank: u64, post: u64) -> Entry {
        Entry {
            rank,
            post,
            author: post % 7,
            expires_at_ms: None,
        }
    }

    #[test]
    fn merges_in_rank_order_without_duplicates() {
        let pushed = [e(90, 1), e(50, 2), e(10, 3)];
        let pulled = [e(70, 4), e(50, 2), e(5, 5)];
        let m = merge(&[&pushed, &pulled], None, None);
        let posts: Vec<u64> = m.iter().map(|x| x.post).collect();
        assert_eq!(posts, vec![1, 4, 2, 3, 5]);
    }

    #[test]
    fn respects_cursor_and_floor() {
        let s = [e(90, 1), e(70, 4), e(50, 2), e(10, 3)];
        let m = merge(&[&s], Some(FeedCursor { rank: 90, post: 1 }), Some((50, 2)));
        let posts: Vec<u64> = m.iter().map(|x| x.post).collect();
        assert_eq!(posts, vec![4, 2]);
    }

    proptest! {
        #[test]
        fn paging_by_cursor_visits_each_entry_once(posts in proptest::collection::vec(0u64..200, 0..80), page in 1usize..7) {
            // A post has one rank wherever it comes from; ranks tie across posts.
            let src: Vec<Entry> = posts.iter().map(|&p| e((p * 7919) % 50, p)).collect();
            let all = merge(&[&src], None, None);
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let m = merge(&[&src], cursor, None);
                let pg: Vec<Entry> = m.into_iter().take(page).collect();
                if pg.is_empty() { break; }
                let last = pg.last().unwrap();
                cursor = Some(FeedCursor { rank: last.rank, post: last.post });
                seen.extend(pg);
            }
            prop_assert_eq!(seen, all);
        }
    }
}
