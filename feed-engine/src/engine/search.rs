//! Tags and search: a hashtag's posts newest first, users by handle prefix, hashtags by prefix.
//! Each is a bounded scan of one ordered family; what the viewer may not see is left out.

use std::collections::HashMap;
use std::sync::Arc;

use crate::codec;
use crate::error::{Error, Result};
use crate::model::{PostId, PostPage, User, UserId};
use crate::ranking;
use crate::social::{TagCount, TagTrend, is_tag};
use crate::tables::{HANDLES, TAGS};

use super::Engine;

/// Tag postings one page may look at: past it the page ends early with a cursor, so a tag whose
/// recent posts are mostly hidden from the viewer costs a bounded read.
const TAG_SCAN_PER_PAGE: usize = 1000;

/// Names a prefix search looks at before ranking them by use.
const NAME_SCAN: usize = 1000;

/// The tag a caller asked for, as stored: `#` and surrounding space dropped, lowercase.
fn normalize_tag(tag: &str) -> Result<String> {
    let t = tag.trim().trim_start_matches('#').to_lowercase();
    if !is_tag(&t) {
        return Err(Error::invalid(format!(
            "{tag:?} is not a hashtag: 1 to {} bytes of letters, digits and _, with at least one letter",
            crate::social::MAX_TAG_BYTES
        )));
    }
    Ok(t)
}

impl Engine {
    /// A page of the posts tagged `tag`, newest first, as `viewer` may see them.
    pub fn tag_posts(&self, viewer: UserId, tag: &str, page_size: usize, cursor: Option<&str>) -> Result<PostPage> {
        self.check_page_size(page_size)?;
        let tag = normalize_tag(tag)?;
        let from = cursor.map(codec::decode_list_cursor).transpose()?;
        let inner = self.inner();
        inner.require_user(viewer)?;
        let now = inner.now_ms();
        let mut found: Vec<(PostId, UserId)> = Vec::new();
        let mut may: HashMap<UserId, bool> = HashMap::new();
        let mut scanned = 0;
        let mut last = None;
        let mut err = None;
        TAGS.scan(&inner.store, &tag, from, |post, author| {
            scanned += 1;
            last = Some(post);
            let ok = match may.get(&author) {
                Some(&ok) => ok,
                None => match self.may_view(viewer, author) {
                    Ok(ok) => *may.entry(author).or_insert(ok),
                    Err(e) => {
                        err = Some(e);
                        return false;
                    }
                },
            };
            if ok {
                found.push((post, author));
            }
            found.len() <= page_size && scanned < TAG_SCAN_PER_PAGE
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        let more = found.len() > page_size || scanned >= TAG_SCAN_PER_PAGE;
        found.truncate(page_size);
        let ids: Vec<PostId> = found.iter().map(|&(p, _)| p).collect();
        let posts: Vec<_> = self
            .load_posts(&ids)?
            .into_iter()
            .flatten()
            .filter(|p| !p.expired(now))
            .map(Arc::new)
            .collect();
        // The next page starts below the last posting looked at (shown or not).
        let resume = if found.len() == page_size && more {
            found.last().map(|&(p, _)| p)
        } else {
            last.filter(|_| more)
        };
        let next_cursor = resume.and_then(|p| p.checked_sub(1)).map(codec::encode_list_cursor);
        Ok(PostPage { posts, next_cursor })
    }

    /// Up to `limit` users whose handle starts with `prefix`, in handle order, as `viewer` may
    /// see them (users who blocked the viewer left out).
    pub fn search_users(&self, viewer: UserId, prefix: &str, limit: usize) -> Result<Vec<User>> {
        self.check_page_size(limit)?;
        let prefix = prefix.trim().trim_start_matches('@').to_lowercase();
        super::users::validate_handle(&prefix)?;
        let inner = self.inner();
        inner.require_user(viewer)?;
        // Enough handles for the page and a few hidden ones; a page short of them looks no further
        // (a prefix search is a typeahead: the next keystroke narrows it).
        let want = (limit * 2 + 8).min(NAME_SCAN);
        let mut ids = Vec::with_capacity(want);
        HANDLES.scan_prefix(&inner.store, &prefix, |id| {
            ids.push(id);
            ids.len() < want
        })?;
        let mut out = Vec::with_capacity(limit);
        for id in ids {
            if id != viewer && self.blocked_by(viewer, id)? {
                continue;
            }
            out.push(self.get_user(id)?);
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Up to `limit` hashtags starting with `prefix` (`#` optional), most used first.
    pub fn search_tags(&self, prefix: &str, limit: usize) -> Result<Vec<TagCount>> {
        self.check_page_size(limit)?;
        let p = prefix.trim().trim_start_matches('#').to_lowercase();
        if p.is_empty() || p.len() > crate::social::MAX_TAG_BYTES {
            return Err(Error::invalid(format!(
                "a tag prefix is 1 to {} bytes, got {}",
                crate::social::MAX_TAG_BYTES,
                p.len()
            )));
        }
        let mut tags = TAGS.names(&self.inner().store, &p, NAME_SCAN)?;
        tags.sort_by(|a, b| b.posts.cmp(&a.posts).then_with(|| a.tag.cmp(&b.tag)));
        tags.truncate(limit);
        Ok(tags)
    }

    /// The hashtags people engage with most now (velocity, not all-time use), hottest first.
    pub fn trending_tags(&self, limit: usize) -> Result<Vec<TagTrend>> {
        self.check_page_size(limit)?;
        let inner = self.inner();
        Ok(inner
            .trends
            .hot_tags(inner.now_ms(), limit)
            .into_iter()
            .map(|(tag, heat)| TagTrend { tag, heat })
            .collect())
    }

    /// The top `page_size` of `tag`'s most recent visible posts (the newest 500), ordered by
    /// stored score raised by their engagement and its velocity — one page, no cursor.
    pub fn trending_tag_posts(&self, viewer: UserId, tag: &str, page_size: usize) -> Result<PostPage> {
        let page = self.tag_posts_window(viewer, tag, TRENDING_TAG_WINDOW)?;
        let inner = self.inner();
        let now = inner.now_ms();
        let r = &inner.cfg.ranker;
        let counts = self.counts_now(&page, now)?;
        let mut scored: Vec<(f64, Arc<crate::model::Post>)> = page
            .into_iter()
            .zip(counts)
            .map(|(p, (c, heat))| {
                let score = ranking::score(p.rank)
                    + r.engagement_weight * (1.0 + c.likes as f64 + 2.0 * c.comments as f64).log2()
                    + r.velocity_weight * (1.0 + heat).log2();
                (score, p)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| b.1.id.cmp(&a.1.id)));
        scored.truncate(page_size.min(self.config().max_page_size));
        Ok(PostPage {
            posts: scored.into_iter().map(|(_, p)| p).collect(),
            next_cursor: None,
        })
    }

    /// Up to `n` of `tag`'s newest posts `viewer` may see.
    fn tag_posts_window(&self, viewer: UserId, tag: &str, n: usize) -> Result<Vec<Arc<crate::model::Post>>> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = None;
        loop {
            let page = self.tag_posts(viewer, tag, self.config().max_page_size, cursor.as_deref())?;
            out.extend(page.posts);
            match page.next_cursor {
                Some(c) if out.len() < n => cursor = Some(c),
                _ => break,
            }
        }
        out.truncate(n);
        Ok(out)
    }
}

/// Recent posts of a tag the trending order is chosen from.
const TRENDING_TAG_WINDOW: usize = 500;
