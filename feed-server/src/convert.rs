//! The one place where engine types meet wire types: conversions both ways and the mapping of
//! engine errors to gRPC status codes.

use feed_engine as fe;
use feedline_proto::v1 as pb;
use tonic::Status;

/// An engine error as a gRPC status. Storage failures become `INTERNAL` without their details
/// (they are logged instead).
pub fn status(e: fe::Error) -> Status {
    match e {
        fe::Error::InvalidArgument(m) => Status::invalid_argument(m),
        fe::Error::NotFound(m) => Status::not_found(m),
        fe::Error::PermissionDenied(m) => Status::permission_denied(m),
        fe::Error::AlreadyExists(m) => Status::already_exists(m),
        fe::Error::Overloaded(m) => Status::resource_exhausted(m),
        fe::Error::ShuttingDown => Status::unavailable("server is shutting down; retry on another node or later"),
        fe::Error::Storage(err) => {
            tracing::error!(error = %err, "storage error");
            Status::internal("internal storage error")
        }
    }
}

/// A user for the wire.
pub fn user(u: fe::User) -> pb::User {
    pb::User {
        id: u.id,
        handle: u.handle,
        private: u.private,
        created_at_ms: u.created_at_ms,
        followers: u.followers,
        following: u.following,
        posts: u.posts,
    }
}

/// A post for the wire, without its engagement counts (see [`post_with`]).
pub fn post(p: &fe::Post) -> pb::Post {
    post_with(p, fe::Engagement::default())
}

/// A post for the wire with its engagement counts.
pub fn post_with(p: &fe::Post, e: fe::Engagement) -> pb::Post {
    pb::Post {
        location: p.location.clone().unwrap_or_default(),
        tags: p.tags(),
        like_count: e.likes,
        comment_count: e.comments,
        id: p.id,
        author_id: p.author,
        created_at_ms: p.created_at_ms,
        content_type: content_type(p.content_type) as i32,
        text: p.text.clone(),
        media: p.media.clone(),
        expires_at_ms: p.expires_at_ms.unwrap_or(0),
        score: fe::ranking::score(p.rank),
    }
}

fn content_type(c: fe::ContentType) -> pb::ContentType {
    match c {
        fe::ContentType::Text => pb::ContentType::Text,
        fe::ContentType::Image => pb::ContentType::Image,
        fe::ContentType::Video => pb::ContentType::Video,
    }
}

/// A publish request as the engine's `NewPost`.
pub fn new_post(r: pb::PublishRequest) -> Result<fe::NewPost, Status> {
    let content_type = match pb::ContentType::try_from(r.content_type) {
        Ok(pb::ContentType::Text) => fe::ContentType::Text,
        Ok(pb::ContentType::Image) => fe::ContentType::Image,
        Ok(pb::ContentType::Video) => fe::ContentType::Video,
        _ => {
            return Err(Status::invalid_argument(format!(
                "content_type must be TEXT, IMAGE or VIDEO, got {}",
                r.content_type
            )));
        }
    };
    let ttl_ms = match r.ttl_seconds {
        0 => None,
        s => Some(
            s.checked_mul(1000)
                .ok_or_else(|| Status::invalid_argument("ttl_seconds is too large"))?,
        ),
    };
    Ok(fe::NewPost {
        content_type,
        text: r.text,
        media: r.media,
        ttl_ms,
        location: (!r.location.is_empty()).then_some(r.location),
    })
}

/// A feed page for the wire, each post with its counts (`counts` in page order, or empty).
pub fn feed_page_with(p: fe::FeedPage, counts: &[fe::Engagement]) -> pb::FeedPage {
    let mut page = feed_page(p);
    for (post, e) in page.posts.iter_mut().zip(counts) {
        post.like_count = e.likes;
        post.comment_count = e.comments;
    }
    page
}

/// A ranker from the wire (`None`: the server's default).
pub fn ranker(r: i32) -> Result<Option<fe::Ranker>, Status> {
    match pb::Ranker::try_from(r) {
        Ok(pb::Ranker::Unspecified) => Ok(None),
        Ok(pb::Ranker::Stored) => Ok(Some(fe::Ranker::Stored)),
        Ok(pb::Ranker::Chronological) => Ok(Some(fe::Ranker::Chronological)),
        Ok(pb::Ranker::Engagement) => Ok(Some(fe::Ranker::Engagement)),
        Err(_) => Err(Status::invalid_argument(format!(
            "ranker must be STORED, CHRONOLOGICAL or ENGAGEMENT, got {r}"
        ))),
    }
}

fn ranker_out(r: fe::Ranker) -> pb::Ranker {
    match r {
        fe::Ranker::Stored => pb::Ranker::Stored,
        fe::Ranker::Chronological => pb::Ranker::Chronological,
        fe::Ranker::Engagement => pb::Ranker::Engagement,
    }
}

/// A ranked page for the wire, each post with its counts (`counts` in page order).
pub fn ranked_page(p: fe::RankedPage, counts: &[fe::Engagement]) -> pb::FeedPage {
    let explained = p.items.iter().all(|i| i.why.is_some()) && !p.items.is_empty();
    pb::FeedPage {
        posts: p
            .items
            .iter()
            .zip(
                counts
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(fe::Engagement::default())),
            )
            .map(|(i, c)| post_with(&i.post, c))
            .collect(),
        why: if explained {
            p.items
                .iter()
                .filter_map(|i| i.why)
                .map(|w| pb::ScoreParts {
                    base: w.base,
                    engagement: w.engagement,
                    velocity: w.velocity,
                    affinity: w.affinity,
                    total: w.total,
                    moved_for_diversity: w.moved_for_diversity,
                })
                .collect()
        } else {
            Vec::new()
        },
        next_cursor: p.next_cursor.unwrap_or_default(),
        source: source(p.path) as i32,
        partial: p.partial.is_some(),
        partial_reason: p.partial.unwrap_or_default(),
        ranker: ranker_out(p.ranker) as i32,
    }
}

fn source(path: fe::FeedPath) -> pb::FeedSource {
    match path {
        fe::FeedPath::Push => pb::FeedSource::Push,
        fe::FeedPath::Pull => pb::FeedSource::Pull,
        fe::FeedPath::Mixed => pb::FeedSource::Mixed,
        fe::FeedPath::Cache => pb::FeedSource::Cache,
        fe::FeedPath::Discovery => pb::FeedSource::Discovery,
        fe::FeedPath::Unread => pb::FeedSource::Unread,
    }
}

/// A feed page for the wire.
pub fn feed_page(p: fe::FeedPage) -> pb::FeedPage {
    let source = source(p.path);
    pb::FeedPage {
        posts: p.items.iter().map(|i| post(&i.post)).collect(),
        next_cursor: p.next_cursor.unwrap_or_default(),
        source: source as i32,
        partial: p.partial.is_some(),
        partial_reason: p.partial.unwrap_or_default(),
        why: Vec::new(),
        ranker: pb::Ranker::Stored as i32,
    }
}

/// A user page for the wire.
pub fn user_page(p: fe::UserPage) -> pb::UserPage {
    pb::UserPage {
        user_ids: p.users,
        next_cursor: p.next_cursor.unwrap_or_default(),
    }
}

/// A post page for the wire, each post with its counts (`counts` in page order).
pub fn post_page(p: fe::PostPage, counts: &[fe::Engagement]) -> pb::PostPage {
    pb::PostPage {
        posts: p
            .posts
            .iter()
            .enumerate()
            .map(|(i, x)| post_with(x, counts.get(i).copied().unwrap_or_default()))
            .collect(),
        next_cursor: p.next_cursor.unwrap_or_default(),
    }
}

/// A comment for the wire.
pub fn comment(c: fe::Comment) -> pb::Comment {
    pb::Comment {
        id: c.id,
        post_id: c.post,
        parent_id: c.parent.unwrap_or(0),
        author_id: c.author,
        created_at_ms: c.created_at_ms,
        text: c.text,
    }
}

/// A comment page for the wire.
pub fn comment_page(p: fe::CommentPage) -> pb::CommentPage {
    pb::CommentPage {
        comments: p.comments.into_iter().map(comment).collect(),
        next_cursor: p.next_cursor.unwrap_or_default(),
    }
}

/// A notification for the wire.
pub fn notification(n: &fe::Notification) -> pb::Notification {
    use fe::NotificationKind as K;
    let kind = match n.kind {
        K::Followed => pb::NotificationKind::Followed,
        K::Requested => pb::NotificationKind::Requested,
        K::Approved => pb::NotificationKind::Approved,
        K::Liked => pb::NotificationKind::Liked,
        K::Commented => pb::NotificationKind::Commented,
        K::Replied => pb::NotificationKind::Replied,
    };
    pb::Notification {
        id: n.id,
        kind: kind as i32,
        actor_id: n.actor,
        post_id: n.post.unwrap_or(0),
        comment_id: n.comment.unwrap_or(0),
        at_ms: n.at_ms,
    }
}

/// A live notification event for the wire.
pub fn notification_event(n: &fe::Notification) -> pb::NotificationEvent {
    pb::NotificationEvent {
        notification: Some(notification(n)),
        resync: false,
    }
}

/// A notification page for the wire.
pub fn notification_page(p: fe::NotificationPage) -> pb::NotificationPage {
    pb::NotificationPage {
        groups: p
            .groups
            .into_iter()
            .map(|g| pb::NotificationGroup {
                newest: Some(notification(&g.newest)),
                actor_ids: g.actors,
                count: g.count,
                unread: g.unread,
            })
            .collect(),
        next_cursor: p.next_cursor.unwrap_or_default(),
        unread: p.unread,
        seen_up_to: p.seen_up_to,
    }
}

/// A tag with its post count for the wire.
pub fn tag_count(t: fe::TagCount) -> pb::TagCount {
    pb::TagCount {
        tag: t.tag,
        posts: t.posts,
    }
}

/// An empty cursor means "first page".
pub fn cursor(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// A page size from the wire; the engine checks its range (0 is refused, not defaulted, so a
/// client that forgot to set it hears so).
pub fn page_size(n: u32) -> usize {
    n as usize
}

/// A feed event for the wire.
pub fn feed_event(e: &fe::Entry) -> pb::FeedEvent {
    pb::FeedEvent {
        post_id: e.post,
        author_id: e.author,
        score: fe::ranking::score(e.rank),
        resync: false,
    }
}

/// The event that tells a subscriber it missed events and should re-read its feed.
pub fn resync_event() -> pb::FeedEvent {
    pb::FeedEvent {
        resync: true,
        ..Default::default()
    }
}

/// A follow's resulting state for the wire.
pub fn follow_response(s: fe::FollowState) -> pb::FollowResponse {
    let state = match s {
        fe::FollowState::Following => pb::FollowState::Following,
        fe::FollowState::Requested => pb::FollowState::Requested,
    };
    pb::FollowResponse { state: state as i32 }
}

/// One read of a batch: its page with its posts' counts, or its error (the other reads are
/// still answered).
pub fn read_result(page: fe::Result<(fe::FeedPage, Vec<fe::Engagement>)>) -> pb::HomeFeedResult {
    match page {
        Ok((p, counts)) => pb::HomeFeedResult {
            result: Some(pb::home_feed_result::Result::Page(feed_page_with(p, &counts))),
        },
        Err(e) => read_error(status(e)),
    }
}

/// A per-read error of a batch.
pub fn read_error(s: Status) -> pb::HomeFeedResult {
    pb::HomeFeedResult {
        result: Some(pb::home_feed_result::Result::Error(pb::ReadError {
            code: s.code() as i32,
            message: s.message().to_string(),
        })),
    }
}
