//! Every write a client can make, as data: one [`Op`] per write RPC, plus the cluster's
//! follow-ups. A single node applies an op directly; a cluster node appends it to the replicated
//! log, and every node (or, for a user's own reading state and for engagement, the node of the
//! partition it belongs to) applies it from there (see `cluster`), so both modes run the same
//! engine call for the same op.

use std::sync::Arc;

use feed_engine::{
    AffinityItem, Comment, CommentCountItem, CommentId, FollowState, GraphItem, LikeCountItem, NewPost, Post, PostId,
    ReplyItem, User, UserId, Writer,
};
use serde::{Deserialize, Serialize};

/// A write, as it travels in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum Op {
    /// Sign-up.
    CreateUser {
        /// Unique handle.
        handle: String,
        /// Private accounts approve followers.
        private: bool,
    },
    /// Private flag on or off.
    SetPrivate {
        /// The account.
        user: UserId,
        /// The new flag.
        private: bool,
    },
    /// `user` acts on `target` with one of the relation verbs.
    Relation {
        /// Which relation change.
        verb: Verb,
        /// The acting user.
        user: UserId,
        /// The other user.
        target: UserId,
    },
    /// A new post.
    Publish {
        /// The author.
        author: UserId,
        /// What the author sent.
        post: NewPost,
        /// The author's follower count as their node counted it when it took the post (the
        /// graph's follower side is stored on the author's partition only): its rank and
        /// whether it is pushed are computed from it on every node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reach: Option<u64>,
    },
    /// A post removed by its author.
    DeletePost {
        /// The acting user.
        user: UserId,
        /// The post.
        post: PostId,
    },
    /// Tokens of `subject` (0: admin tokens) issued before `before_us` are refused from now on.
    RevokeTokens {
        /// The user whose tokens end, or 0 for admin tokens.
        subject: UserId,
        /// Unix microseconds: the new floor.
        before_us: u64,
    },
    /// The reader has read everything up to `post`.
    SetReadMarker {
        /// The reader.
        reader: UserId,
        /// The newest post read.
        post: PostId,
    },
    /// `user` likes `post`.
    Like {
        /// The acting user.
        user: UserId,
        /// The post.
        post: PostId,
    },
    /// `user` takes back a like.
    Unlike {
        /// The acting user.
        user: UserId,
        /// The post.
        post: PostId,
    },
    /// `user` comments on `post` (or replies to `parent`).
    Comment {
        /// The acting user.
        user: UserId,
        /// The post.
        post: PostId,
        /// The top-level comment replied to, if any.
        parent: Option<CommentId>,
        /// The comment.
        text: String,
    },
    /// `user` deletes a comment.
    DeleteComment {
        /// The acting user.
        user: UserId,
        /// The post the comment is on.
        post: PostId,
        /// The comment.
        comment: CommentId,
    },
    /// `user` was shown `posts` (their authors gain affinity).
    RecordViews {
        /// The viewer.
        user: UserId,
        /// The posts shown.
        posts: Vec<PostId>,
    },
    /// `user` has seen their notifications up to `up_to` (0: all).
    MarkNotificationsSeen {
        /// The user.
        user: UserId,
        /// The newest notification seen.
        up_to: u64,
    },
    /// Cluster follow-up: changes for users of partition `target` from likes and comments
    /// decided on their posts' partitions — affinity, reply notifications (only `target`'s owner
    /// applies it).
    FollowUpForUsers {
        /// The users' partition.
        target: u32,
        /// Affinity changes, each origin partition's in log order.
        affinity: Vec<AffinityItem>,
        /// Reply notifications, each origin partition's in log order.
        #[serde(default)]
        replies: Vec<ReplyItem>,
        /// The follow graph's halves decided on other partitions, each origin's in log order.
        #[serde(default)]
        graph: Vec<GraphItem>,
    },
    /// Cluster follow-up: posts' like and comment counts as the nodes holding their authors
    /// computed them (every node applies it, keeping the newest count of each post).
    FollowUpCounts {
        /// Like counts.
        likes: Vec<LikeCountItem>,
        /// Comment counts.
        #[serde(default)]
        comments: Vec<CommentCountItem>,
    },
}

/// The relation verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verb {
    /// Follow (or request to, for a private account).
    Follow,
    /// Stop following.
    Unfollow,
    /// Accept a follow request.
    Approve,
    /// Refuse a follow request.
    Deny,
    /// Block (also ends follows both ways).
    Block,
    /// Lift a block.
    Unblock,
    /// Hide someone's posts without unfollowing.
    Mute,
    /// Lift a mute.
    Unmute,
}

/// What applying an op returned.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A user (sign-up, private flag).
    User(User),
    /// The follow's resulting state.
    Follow(FollowState),
    /// Whether the relation changed.
    Changed(bool),
    /// The post as stored.
    Post(Arc<Post>),
    /// The revocation floor in force (Unix microseconds).
    Revoked(u64),
    /// A comment as stored.
    Comment(Comment),
    /// The notifications seen marker in force.
    Seen(u64),
    /// How many of the items named counted.
    Counted(u64),
}

impl Op {
    /// The user whose node owns this write (its acting user); none for sign-up, which any node
    /// takes (it mints an id it owns).
    pub fn actor(&self) -> Option<UserId> {
        match self {
            Op::CreateUser { .. } | Op::FollowUpForUsers { .. } | Op::FollowUpCounts { .. } => None,
            Op::RevokeTokens { subject, .. } => (*subject != feed_engine::OPERATOR_TOKENS).then_some(*subject),
            Op::SetPrivate { user, .. } | Op::Relation { user, .. } | Op::DeletePost { user, .. } => Some(*user),
            Op::Publish { author, .. } => Some(*author),
            Op::SetReadMarker { reader, .. } => Some(*reader),
            Op::Like { user, .. }
            | Op::Unlike { user, .. }
            | Op::Comment { user, .. }
            | Op::DeleteComment { user, .. }
            | Op::RecordViews { user, .. }
            | Op::MarkNotificationsSeen { user, .. } => Some(*user),
        }
    }

    /// Whether, in a cluster, only the owner of the event's partition applies the op: a user's
    /// own reading state (read marker, seen notifications, view affinity), their follows and
    /// mutes (the other user's half of a follow goes through the log; blocks stay replicated:
    /// every partition's visibility rules need them), engagement (decided on the post
    /// author's partition: [`Op::on_post_partition`]) and users' follow-ups.
    pub fn owner_only(&self) -> bool {
        self.on_post_partition()
            || matches!(
                self,
                Op::SetReadMarker { .. }
                    | Op::Relation {
                        verb: Verb::Follow | Verb::Unfollow | Verb::Approve | Verb::Deny | Verb::Mute | Verb::Unmute,
                        ..
                    }
                    | Op::RecordViews { .. }
                    | Op::MarkNotificationsSeen { .. }
                    | Op::FollowUpForUsers { .. }
            )
    }

    /// Whether, in a cluster, the op leaves another user's side of the follow graph as a
    /// follow-up (a follow, unfollow or approval), which is in the log before the op is answered
    /// so the writer's next call on any node reads both sides.
    pub fn has_graph_half(&self) -> bool {
        matches!(
            self,
            Op::Relation {
                verb: Verb::Follow | Verb::Unfollow | Verb::Approve,
                ..
            }
        )
    }

    /// Whether the op's partition is its post author's rather than its acting user's: a like,
    /// unlike, comment or comment deletion is decided where the post, its engagement and its
    /// counts live.
    pub fn on_post_partition(&self) -> bool {
        matches!(
            self,
            Op::Like { .. } | Op::Unlike { .. } | Op::Comment { .. } | Op::DeleteComment { .. }
        )
    }

    /// Whether applying the op creates something with an id of the post id space (a post, a
    /// comment, a notification), which the accepting node mints so every node applies the same.
    pub fn mints_id(&self) -> bool {
        matches!(
            self,
            Op::Publish { .. }
                | Op::Like { .. }
                | Op::Comment { .. }
                | Op::Relation {
                    verb: Verb::Follow | Verb::Approve,
                    ..
                }
        )
    }

    /// Applies the op through `e`: at the clock's time on one node, in the log event's context in
    /// a cluster (so every node computes the same result).
    pub fn apply(self, e: Writer<'_>) -> feed_engine::Result<Outcome> {
        Ok(match self {
            Op::CreateUser { handle, private } => Outcome::User(e.create_user(&handle, private)?),
            Op::SetPrivate { user, private } => Outcome::User(e.set_private(user, private)?),
            Op::Relation { verb, user, target } => match verb {
                Verb::Follow => Outcome::Follow(e.follow(user, target)?),
                Verb::Unfollow => Outcome::Changed(e.unfollow(user, target)?),
                Verb::Approve => Outcome::Changed(e.approve(user, target).map(|()| true)?),
                Verb::Deny => Outcome::Changed(e.deny(user, target).map(|()| true)?),
                Verb::Block => Outcome::Changed(e.block(user, target).map(|()| true)?),
                Verb::Unblock => Outcome::Changed(e.unblock(user, target).map(|()| true)?),
                Verb::Mute => Outcome::Changed(e.mute(user, target).map(|()| true)?),
                Verb::Unmute => Outcome::Changed(e.unmute(user, target).map(|()| true)?),
            },
            Op::Publish { author, post, reach } => Outcome::Post(e.publish_reaching(author, post, reach)?),
            Op::DeletePost { user, post } => {
                e.delete_post(user, post)?;
                Outcome::Changed(true)
            }
            Op::RevokeTokens { subject, before_us } => Outcome::Revoked(e.revoke_tokens(subject, before_us)?),
            Op::SetReadMarker { reader, post } => {
                e.set_read_marker(reader, post)?;
                Outcome::Changed(true)
            }
            Op::Like { user, post } => Outcome::Changed(e.like(user, post)?),
            Op::Unlike { user, post } => Outcome::Changed(e.unlike(user, post)?),
            Op::Comment {
                user,
                post,
                parent,
                text,
            } => Outcome::Comment(e.comment(user, post, parent, &text)?),
            Op::DeleteComment { user, post, comment } => {
                e.delete_comment(user, post, comment)?;
                Outcome::Changed(true)
            }
            Op::MarkNotificationsSeen { user, up_to } => Outcome::Seen(e.mark_notifications_seen(user, up_to)?),
            Op::RecordViews { user, posts } => Outcome::Counted(e.record_views(user, &posts)? as u64),
            Op::FollowUpForUsers {
                target,
                affinity,
                replies,
                graph,
            } => Outcome::Counted(e.apply_user_followups(target, &affinity, &replies, &graph)? as u64),
            Op::FollowUpCounts { likes, comments } => Outcome::Counted(e.apply_counts(&likes, &comments)? as u64),
        })
    }
}

/// Whether a relation change changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed(pub bool);

/// The revocation floor in force after a revocation (Unix microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked(pub u64);

/// The notifications seen marker in force after marking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen(pub u64);

/// How many of the items a write named counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted(pub u64);

/// The typed result of an op: what a caller of [`Op::apply`] (directly, or through the log and
/// back) asks for. An outcome of another kind is a bug, answered as `INTERNAL`, never a panic.
pub trait FromOutcome: Sized {
    /// The result inside `o`, if `o` is of this kind.
    fn take(o: Outcome) -> Result<Self, Outcome>;

    /// The result inside `o`, or `INTERNAL` (logged) for an outcome of another kind.
    fn from_outcome(o: Outcome) -> Result<Self, tonic::Status> {
        Self::take(o).map_err(|o| {
            tracing::error!(outcome = ?o, "op returned an outcome of another kind");
            tonic::Status::internal("internal error: unexpected outcome")
        })
    }
}

macro_rules! from_outcome {
    ($t:ty, $variant:ident, $wrap:expr) => {
        impl FromOutcome for $t {
            fn take(o: Outcome) -> Result<Self, Outcome> {
                match o {
                    Outcome::$variant(x) => Ok($wrap(x)),
                    o => Err(o),
                }
            }
        }
    };
}
from_outcome!(User, User, |u| u);
from_outcome!(FollowState, Follow, |s| s);
from_outcome!(Arc<Post>, Post, |p| p);
from_outcome!(Changed, Changed, Changed);
from_outcome!(Revoked, Revoked, Revoked);
from_outcome!(Comment, Comment, |c| c);
from_outcome!(Seen, Seen, Seen);
from_outcome!(Counted, Counted, Counted);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_roundtrip_through_json() {
        let ops = vec![
            Op::CreateUser {
                handle: "ada".into(),
                private: true,
            },
            Op::Relation {
                verb: Verb::Block,
                user: 1,
                target: 2,
            },
            Op::Publish {
                author: 3,
                post: NewPost::text("hi"),
                reach: None,
            },
            Op::SetReadMarker { reader: 4, post: 5 },
        ];
        for op in ops {
            let bytes = serde_json::to_vec(&op).unwrap();
            assert_eq!(serde_json::from_slice::<Op>(&bytes).unwrap(), op);
        }
        assert_eq!(
            Op::Publish {
                author: 3,
                post: NewPost::text("x"),
                reach: None,
            }
            .actor(),
            Some(3)
        );
        assert_eq!(
            Op::CreateUser {
                handle: "a".into(),
                private: false
            }
            .actor(),
            None
        );
    }
}
