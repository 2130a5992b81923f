//! Posts answered as heads (cluster mode: an older post by an author another node holds, whose
//! body this node no longer keeps) get their bodies from the authors' nodes before they leave:
//! a feed page whose bodies do not all come is `partial`, the posts missing theirs left as
//! heads (id, author, time, score and hashtags, no text or media); a single post or a list of
//! posts answers `UNAVAILABLE` with a retry hint instead.

use feedline_proto::v1 as pb;
use tonic::Status;
use tonic::metadata::AsciiMetadataValue;

use super::Api;

/// `(post, author)` of the heads among `posts`.
pub(super) fn heads<'a>(posts: impl IntoIterator<Item = &'a feed_engine::Post>) -> Vec<(u64, u64)> {
    posts
        .into_iter()
        .filter(|p| p.trimmed)
        .map(|p| (p.id, p.author))
        .collect()
}

impl Api {
    /// Puts the bodies of `heads` into `posts`, from their authors' nodes, as `viewer` may see
    /// them; returns why some are still heads (`None`: none is).
    async fn fill_bodies(
        &self,
        viewer: u64,
        posts: &mut [pb::Post],
        heads: &[(u64, u64)],
        auth: Option<AsciiMetadataValue>,
    ) -> Option<String> {
        if heads.is_empty() {
            return None;
        }
        let Some(c) = &self.cluster else {
            return Some(format!("{} posts have no body on this node", heads.len()));
        };
        let got = c.fetch_bodies(viewer, heads, auth).await;
        for p in posts.iter_mut() {
            if let Some(b) = got.posts.get(&p.id) {
                p.text.clone_from(&b.text);
                p.media.clone_from(&b.media);
                p.location.clone_from(&b.location);
                p.tags.clone_from(&b.tags);
            }
        }
        (!got.missing.is_empty()).then(|| got.missing.join("; "))
    }

    /// A feed page with its posts' bodies: `partial`, with the reason, when some stay heads.
    pub(super) async fn feed_with_bodies(
        &self,
        viewer: u64,
        page: &mut pb::FeedPage,
        heads: &[(u64, u64)],
        auth: Option<AsciiMetadataValue>,
    ) {
        if let Some(why) = self.fill_bodies(viewer, &mut page.posts, heads, auth).await {
            page.partial = true;
            page.partial_reason = if page.partial_reason.is_empty() {
                why
            } else {
                format!("{}; {why}", page.partial_reason)
            };
            metrics::counter!(feed_engine::metrics::PARTIAL_PAGES).increment(1);
        }
    }

    /// A page of posts for the wire, with counts and bodies, or `UNAVAILABLE` (retry) when
    /// some stay heads.
    pub(super) async fn post_page_with_bodies(
        &self,
        viewer: u64,
        p: feed_engine::PostPage,
        auth: Option<AsciiMetadataValue>,
    ) -> Result<pb::PostPage, Status> {
        let heads = heads(p.posts.iter().map(|p| &**p));
        let mut page = self.post_page(p)?;
        self.posts_with_bodies(viewer, &mut page.posts, &heads, auth).await?;
        Ok(page)
    }

    /// Posts with their bodies, or `UNAVAILABLE` (retry) when some stay heads.
    pub(super) async fn posts_with_bodies(
        &self,
        viewer: u64,
        posts: &mut [pb::Post],
        heads: &[(u64, u64)],
        auth: Option<AsciiMetadataValue>,
    ) -> Result<(), Status> {
        match self.fill_bodies(viewer, posts, heads, auth).await {
            None => Ok(()),
            Some(why) => Err(crate::cluster::peers::retry_later(why)),
        }
    }
}
