//! Engagement as plain data: likes, comments, notifications and hashtags. No IO; the one piece
//! of behaviour is [`hashtags`], the parse of a post's text that both publish and delete use.

use crate::model::{PostId, UserId};

/// A comment's id: minted like a post id (time-ordered), so a post's comments sort oldest first.
pub type CommentId = u64;

/// A comment on a post, or a reply to one (one level: replies have no replies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// The comment's id.
    pub id: CommentId,
    /// The post it is on.
    pub post: PostId,
    /// The top-level comment it replies to (`None`: a top-level comment).
    pub parent: Option<CommentId>,
    /// Who wrote it.
    pub author: UserId,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// The comment, UTF-8.
    pub text: String,
}

/// A page of comments, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentPage {
    /// The comments.
    pub comments: Vec<Comment>,
    /// Cursor for the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// A post's engagement counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Engagement {
    /// Likes.
    pub likes: u64,
    /// Comments and replies not deleted.
    pub comments: u64,
}

/// What a notification tells its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationKind {
    /// The actor followed the recipient.
    Followed,
    /// The actor asked to follow the recipient (a private account).
    Requested,
    /// The actor (a private account) approved the recipient's request.
    Approved,
    /// The actor liked the recipient's post.
    Liked,
    /// The actor commented on the recipient's post.
    Commented,
    /// The actor replied to the recipient's comment.
    Replied,
}

impl NotificationKind {
    /// The byte stored for this kind.
    pub fn to_byte(self) -> u8 {
        match self {
            NotificationKind::Followed => 1,
            NotificationKind::Requested => 2,
            NotificationKind::Approved => 3,
            NotificationKind::Liked => 4,
            NotificationKind::Commented => 5,
            NotificationKind::Replied => 6,
        }
    }

    /// The kind a stored byte names, if any.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => NotificationKind::Followed,
            2 => NotificationKind::Requested,
            3 => NotificationKind::Approved,
            4 => NotificationKind::Liked,
            5 => NotificationKind::Commented,
            6 => NotificationKind::Replied,
            _ => return None,
        })
    }

    /// Whether notifications of this kind about one post are shown as one group
    /// ("A and 12 others liked your post").
    pub fn grouped(self) -> bool {
        matches!(self, NotificationKind::Liked | NotificationKind::Commented)
    }
}

/// One notification as stored and as delivered live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    /// Time-ordered id (a larger id is a later notification); the unit of the seen marker.
    pub id: u64,
    /// What happened.
    pub kind: NotificationKind,
    /// Who did it.
    pub actor: UserId,
    /// The post it is about, if any.
    pub post: Option<PostId>,
    /// The comment it is about (new comment or reply), if any.
    pub comment: Option<CommentId>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Notifications shown as one line: one notification, or several of a grouped kind about the
/// same post that fell on the same page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationGroup {
    /// The newest notification of the group (its id, time, comment).
    pub newest: Notification,
    /// The group's actors, newest first, at most [`GROUP_ACTORS_SHOWN`].
    pub actors: Vec<UserId>,
    /// How many notifications the group stands for (`actors` plus the others).
    pub count: u64,
    /// Whether any of them is newer than the recipient's seen marker.
    pub unread: bool,
}

/// Actors named in a group; the rest are counted.
pub const GROUP_ACTORS_SHOWN: usize = 3;

/// A page of a user's notifications, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationPage {
    /// The groups.
    pub groups: Vec<NotificationGroup>,
    /// Cursor for the next page; `None` at the end.
    pub next_cursor: Option<String>,
    /// Notifications newer than the seen marker (counted up to the notifications kept per user).
    pub unread: u64,
    /// The seen marker: the id of the newest notification marked seen (0: none).
    pub seen_up_to: u64,
}

/// A hashtag with the number of posts carrying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagCount {
    /// The tag, lowercase, without `#`.
    pub tag: String,
    /// Posts published with it and not deleted.
    pub posts: u64,
}

/// A quantity that halves every `halving_ms` unless added to: engagement velocity ("heat") and
/// a reader's affinity to an author.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Decayed {
    /// The value at `at_ms`.
    pub value: f64,
    /// When `value` was last brought up to date.
    pub at_ms: u64,
}

impl Decayed {
    /// The value at `now_ms`.
    pub fn at(&self, now_ms: u64, halving_ms: u64) -> f64 {
        let dt = now_ms.saturating_sub(self.at_ms) as f64;
        self.value * (-dt / halving_ms.max(1) as f64).exp2()
    }

    /// The sum of two decayed values, brought to the later of their times. Exact, associative
    /// and commutative (no clamping: a value taken back may leave a small negative remainder,
    /// which readers clamp), so it can be a merge operator's fold.
    pub fn combined(&self, other: &Decayed, halving_ms: u64) -> Decayed {
        let at_ms = self.at_ms.max(other.at_ms);
        Decayed {
            value: self.at(at_ms, halving_ms) + other.at(at_ms, halving_ms),
            at_ms,
        }
    }

    /// Adds `amount` at `now_ms` (the value decays to then first).
    pub fn add(&mut self, now_ms: u64, amount: f64, halving_ms: u64) {
        let now = now_ms.max(self.at_ms);
        self.value = (self.at(now, halving_ms) + amount).max(0.0);
        self.at_ms = now;
    }
}

/// Why a ranked item is where it is: its score's components (all in units of recency halving
/// periods, so `base` is the stored rank's score and one unit is worth one halving of age).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScoreParts {
    /// The stored score: recency, author reach and content boost, fixed at publish time.
    pub base: f64,
    /// From the post's likes and comments.
    pub engagement: f64,
    /// From the post's recent engagement velocity.
    pub velocity: f64,
    /// From the reader's affinity to the author.
    pub affinity: f64,
    /// The sum the candidates were ordered by.
    pub total: f64,
    /// Whether the diversity rule moved the item below higher-scored ones (a run of one author).
    pub moved_for_diversity: bool,
}

/// One item of a ranked home feed page.
#[derive(Debug, Clone)]
pub struct RankedItem {
    /// The post.
    pub post: std::sync::Arc<crate::model::Post>,
    /// Its score components, when asked for.
    pub why: Option<ScoreParts>,
}

/// A page of a ranked home feed.
#[derive(Debug, Clone)]
pub struct RankedPage {
    /// The items, in ranked order.
    pub items: Vec<RankedItem>,
    /// Cursor for the next page; `None` at the end. It pins the ranking of the reading session
    /// it started, so paging never repeats or skips an item while the session is held.
    pub next_cursor: Option<String>,
    /// How the candidates were assembled (push, pull, mixed, cache, discovery).
    pub path: crate::model::FeedPath,
    /// The ranker that ordered the page.
    pub ranker: crate::config::Ranker,
    /// Why the page may miss entries, when it may (see [`crate::model::FeedPage::partial`]).
    pub partial: Option<String>,
}

/// A hashtag with its engagement velocity now.
#[derive(Debug, Clone, PartialEq)]
pub struct TagTrend {
    /// The tag, lowercase, without `#`.
    pub tag: String,
    /// Likes (1) and comments (2) on posts carrying it, decayed over `heat-halving-ms`.
    pub heat: f64,
}

/// Longest hashtag kept, in bytes (a longer run after `#` is not a tag).
pub const MAX_TAG_BYTES: usize = 64;

/// Whether `c` may appear in a hashtag.
fn tag_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The hashtags of a post's text, in order of first appearance, lowercase, without `#`, each
/// once: a `#` not preceded by a tag character, followed by letters, digits or `_` (at least one
/// letter, so `#1` is not a tag), at most [`MAX_TAG_BYTES`] bytes.
pub fn hashtags(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut prev: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let starts = c == '#' && !prev.is_some_and(|p| tag_char(p) || p == '#');
        prev = Some(c);
        if !starts {
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while let Some(&(j, d)) = chars.peek() {
            if !tag_char(d) {
                break;
            }
            end = j + d.len_utf8();
            prev = Some(d);
            chars.next();
        }
        let tag = &text[start..end];
        if tag.is_empty() || tag.len() > MAX_TAG_BYTES || !tag.chars().any(char::is_alphabetic) {
            continue;
        }
        let tag = tag.to_lowercase();
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

/// Whether `s` is a hashtag as [`hashtags`] would parse it (lowercase, tag characters, a letter,
/// 1 to [`MAX_TAG_BYTES`] bytes).
pub fn is_tag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TAG_BYTES
        && s.chars().all(tag_char)
        && s.chars().any(char::is_alphabetic)
        && s.to_lowercase() == s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decayed_sums_fold_in_any_order_to_the_same_value() {
        let h = 1_000;
        let ops = [
            Decayed { value: 1.0, at_ms: 0 },
            Decayed {
                value: 2.0,
                at_ms: 1_500,
            },
            Decayed {
                value: -1.0,
                at_ms: 700,
            },
        ];
        let fold = |order: [usize; 3]| {
            order
                .iter()
                .fold(Decayed::default(), |acc, &i| acc.combined(&ops[i], h))
        };
        let a = fold([0, 1, 2]);
        for order in [[2, 1, 0], [1, 0, 2], [0, 2, 1]] {
            let b = fold(order);
            assert_eq!(a.at_ms, b.at_ms);
            assert!((a.value - b.value).abs() < 1e-12, "{a:?} vs {b:?}");
        }
        // 1 halved 1.5 times, plus 2, minus 1 halved 0.8 times.
        let want = 2f64.powf(-1.5) + 2.0 - 2f64.powf(-0.8);
        assert!((a.value - want).abs() < 1e-12 && a.at_ms == 1_500);
    }

    #[test]
    fn hashtags_are_parsed_once_lowercase_in_order() {
        assert_eq!(
            hashtags("#Rust and #rust, #tokio! a#b #1 #_x ##double #日本"),
            vec!["rust", "tokio", "_x", "日本"]
        );
        assert_eq!(hashtags("no tags # here"), Vec::<String>::new());
        let long = format!("#{}", "a".repeat(MAX_TAG_BYTES + 1));
        assert!(hashtags(&long).is_empty(), "an over-long run is not a tag");
        assert!(is_tag("rust") && !is_tag("Rust") && !is_tag("") && !is_tag("12") && !is_tag("a-b"));
    }

    #[test]
    fn kinds_roundtrip_through_their_byte() {
        for b in 0..=255u8 {
            if let Some(k) = NotificationKind::from_byte(b) {
                assert_eq!(k.to_byte(), b);
            }
        }
        assert!(NotificationKind::from_byte(0).is_none());
    }
}
