//! Ranked home feeds: a read-time rerank of the top candidates of the home feed.
//!
//! The first page of a reading session takes the top `candidates` entries of the reader's home
//! feed (pushed, pulled, mixed or cached: the same feed as [`Engine::home_feed`]), scores each,
//! orders them with a diversity rule, and pins the result in a session the cursor names; later
//! pages are served from the session (dropping what was deleted, blocked or unfollowed since),
//! then continue below the candidates in stored order. So paging never repeats or skips an entry
//! while the session is held (`session-ttl-ms`, within `session-bytes`); an expired session's
//! cursor is refused with a message saying to start again.
//!
//! Scores are in units of recency halving periods, on top of the stored score:
//! `base + we·log2(1 + likes + 2·comments) + wv·log2(1 + heat) + wa·log2(1 + affinity)`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::codec;
use crate::config::{Ranker, RankerConfig};
use crate::error::{Error, Result};
use crate::hot::Weigh;
use crate::model::{FeedPage, FeedPath, Post, PostId, UserId};
use crate::ranking;
use crate::social::{Engagement, RankedItem, RankedPage, ScoreParts};
use crate::tables::AFFINITY;

use super::Engine;

/// A reading session: the ranked candidates its cursor pins.
#[derive(Debug)]
pub(crate) struct Session {
    reader: UserId,
    ranker: Ranker,
    created_ms: u64,
    items: Vec<(Arc<Post>, ScoreParts)>,
    /// Where the feed continues below the candidates, if it does.
    floor: Option<String>,
    path: FeedPath,
}

impl Weigh for Session {
    fn weight(&self) -> usize {
        96 + self.items.len() * (8 + std::mem::size_of::<ScoreParts>()) + self.floor.as_ref().map_or(0, |f| f.len())
    }
}

/// Orders scored candidates best first, then moves an item down when it would make a run of more
/// than `max_run` posts by one author (unless nothing else is left).
pub(crate) fn diversify(mut scored: Vec<(Arc<Post>, ScoreParts)>, max_run: usize) -> Vec<(Arc<Post>, ScoreParts)> {
    scored.sort_by(|a, b| {
        b.1.total
            .total_cmp(&a.1.total)
            .then_with(|| (b.0.rank, b.0.id).cmp(&(a.0.rank, a.0.id)))
    });
    let mut out: Vec<(Arc<Post>, ScoreParts)> = Vec::with_capacity(scored.len());
    let mut rest = std::collections::VecDeque::from(scored);
    while !rest.is_empty() {
        let run_author = (out.len() >= max_run)
            .then(|| {
                let a = out[out.len() - 1].0.author;
                out[out.len() - max_run..]
                    .iter()
                    .all(|(p, _)| p.author == a)
                    .then_some(a)
            })
            .flatten();
        let at = match run_author {
            Some(a) => rest.iter().position(|(p, _)| p.author != a).unwrap_or(0),
            None => 0,
        };
        let (p, mut why) = rest.remove(at).expect("index within rest");
        if at > 0 {
            why.moved_for_diversity = true;
        }
        out.push((p, why));
    }
    out
}

/// Scores one candidate.
fn score(cfg: &RankerConfig, ranker: Ranker, p: &Post, counts: Engagement, heat: f64, affinity: f64) -> ScoreParts {
    let base = ranking::score(p.rank);
    match ranker {
        Ranker::Engagement => {
            let engagement = cfg.engagement_weight * (1.0 + counts.likes as f64 + 2.0 * counts.comments as f64).log2();
            let velocity = cfg.velocity_weight * (1.0 + heat).log2();
            let affinity = cfg.affinity_weight * (1.0 + affinity).log2();
            ScoreParts {
                base,
                engagement,
                velocity,
                affinity,
                total: base + engagement + velocity + affinity,
                moved_for_diversity: false,
            }
        }
        // Newest first: the post id is time-ordered.
        Ranker::Chronological | Ranker::Stored => ScoreParts {
            base,
            total: p.id as f64,
            ..Default::default()
        },
    }
}

impl Engine {
    /// A page of `reader`'s home feed in `ranker`'s order (`None`: the configured default),
    /// with each item's score components when `explain` is set. `Stored` is the home feed as
    /// [`Engine::home_feed`] serves it; `Chronological` and `Engagement` rerank the top
    /// candidates and pin them for the reading session (see the module docs).
    pub fn ranked_feed(
        &self,
        reader: UserId,
        ranker: Option<Ranker>,
        page_size: usize,
        cursor: Option<&str>,
        explain: bool,
    ) -> Result<RankedPage> {
        let ranker = ranker.unwrap_or(self.config().ranker.default);
        let session = cursor.map(codec::decode_ranked_cursor);
        match (ranker, session) {
            (Ranker::Stored, _) | (_, Some(Err(_))) => {
                // A stored-order read, or the continuation below a session's candidates.
                let p = self.home_feed(reader, page_size, cursor)?;
                Ok(stored_page(p, ranker, explain))
            }
            (_, None) => {
                self.check_page_size(page_size)?;
                let (id, s) = self.new_session(reader, ranker)?;
                self.session_page(reader, id, &s, 0, page_size, explain)
            }
            (_, Some(Ok((id, offset)))) => {
                self.check_page_size(page_size)?;
                let inner = self.inner();
                inner.require_user(reader)?;
                let expired = || {
                    Error::invalid(
                        "this ranked feed's reading session has ended (sessions are kept for a while, then dropped): start again from the first page",
                    )
                };
                let s = inner.sessions.get(id).ok_or_else(expired)?;
                if s.reader != reader || s.ranker != ranker {
                    return Err(Error::invalid(
                        "this cursor belongs to another reader's or another ranker's feed: pass back a cursor exactly as a previous page returned it",
                    ));
                }
                if inner.now_ms().saturating_sub(s.created_ms) > inner.cfg.ranker.session_ttl_ms {
                    return Err(expired());
                }
                self.session_page(reader, id, &s, offset as usize, page_size, explain)
            }
        }
    }

    /// Takes the top candidates of `reader`'s feed, ranks them and keeps the session.
    fn new_session(&self, reader: UserId, ranker: Ranker) -> Result<(u64, Arc<Session>)> {
        let t0 = Instant::now();
        let inner = self.inner();
        let cfg = &inner.cfg.ranker;
        let now = inner.now_ms();
        let head = self.feed_head(reader, cfg.candidates, now, t0)?;
        let posts: Vec<Arc<Post>> = head.items.iter().map(|i| i.post.clone()).collect();
        let counts = self.counts_now(&posts, now)?;
        let mut authors: Vec<UserId> = posts.iter().map(|p| p.author).collect();
        authors.sort_unstable();
        authors.dedup();
        let affinity: HashMap<UserId, f64> = if ranker == Ranker::Engagement {
            authors
                .iter()
                .copied()
                .zip(AFFINITY.get_many(&inner.store, reader, &authors)?)
                .map(|(a, d)| (a, d.at(now, cfg.affinity_halving_ms)))
                .collect()
        } else {
            HashMap::new()
        };
        let scored: Vec<(Arc<Post>, ScoreParts)> = posts
            .into_iter()
            .zip(counts)
            .map(|(p, (c, heat))| {
                let a = affinity.get(&p.author).copied().unwrap_or(0.0);
                let why = score(cfg, ranker, &p, c, heat, a);
                (p, why)
            })
            .collect();
        let items = match ranker {
            Ranker::Engagement => diversify(scored, cfg.max_author_run),
            _ => diversify(scored, usize::MAX),
        };
        let session = Arc::new(Session {
            reader,
            ranker,
            created_ms: now,
            items,
            floor: head.next_cursor,
            path: head.path,
        });
        let id = inner.session_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) ^ (now << 20);
        let v = inner.sessions.version(id);
        inner.sessions.insert_if_current(id, v, session.clone());
        metrics::counter!(crate::metrics::RANKED_SESSIONS, "ranker" => ranker_name(ranker)).increment(1);
        Ok((id, session))
    }

    /// The page of a session from `offset`: what is still visible of its candidates, then a
    /// cursor to the next page (in the session, or below its candidates).
    fn session_page(
        &self,
        reader: UserId,
        id: u64,
        s: &Session,
        offset: usize,
        page_size: usize,
        explain: bool,
    ) -> Result<RankedPage> {
        let inner = self.inner();
        let now = inner.now_ms();
        let graph = inner.reader_graph(reader)?;
        let mut items = Vec::with_capacity(page_size);
        let mut at = offset.min(s.items.len());
        while at < s.items.len() && items.len() < page_size {
            let end = (at + page_size - items.len()).min(s.items.len());
            let slice = &s.items[at..end];
            let ids: Vec<PostId> = slice.iter().map(|(p, _)| p.id).collect();
            let live = self.feed_posts(&ids)?;
            for ((p, why), still) in slice.iter().zip(live) {
                let shown = p.author == reader
                    || s.path == FeedPath::Discovery
                    || (graph.follows(p.author) && !graph.hides(p.author));
                if still.is_some() && !p.expired(now) && shown && !inner.cache.is_deleting(p.id) {
                    items.push(RankedItem {
                        post: p.clone(),
                        why: explain.then_some(*why),
                    });
                }
            }
            at = end;
        }
        let next_cursor = if at < s.items.len() {
            Some(codec::encode_ranked_cursor(id, at as u32))
        } else {
            s.floor.clone()
        };
        Ok(RankedPage {
            items,
            next_cursor,
            path: s.path,
            ranker: s.ranker,
            partial: None,
        })
    }
}

fn ranker_name(r: Ranker) -> &'static str {
    match r {
        Ranker::Chronological => "chronological",
        Ranker::Stored => "stored",
        Ranker::Engagement => "engagement",
    }
}

/// A stored-order page as a ranked page.
fn stored_page(p: FeedPage, ranker: Ranker, explain: bool) -> RankedPage {
    RankedPage {
        items: p
            .items
            .iter()
            .map(|i| RankedItem {
                post: i.post.clone(),
                why: explain.then(|| {
                    let base = ranking::score(i.post.rank);
                    ScoreParts {
                        base,
                        total: base,
                        ..Default::default()
                    }
                }),
            })
            .collect(),
        next_cursor: p.next_cursor,
        path: p.path,
        ranker,
        partial: p.partial,
    }
}
