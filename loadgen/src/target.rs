//! Where the load goes: the engine linked in-process (its own RocksDB dir), a feed-server (or a
//! cluster of them, calls spread round-robin over the nodes) over gRPC, or one of the peer
//! designs (Redis sorted sets, the spec's PostgreSQL tables). The same workload drives all.

use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use feed_engine::{Engine, NewPost, codec};
use feedline_proto::v1 as pb;
use feedline_proto::v1::feed_service_client::FeedServiceClient;
use feedline_proto::v1::post_service_client::PostServiceClient;
use feedline_proto::v1::user_service_client::UserServiceClient;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

pub use crate::grpc_client::{Grpc, GrpcNode, NodeReport, NodeStats};

/// The text of a load generator's post by default.
pub const POST_TEXT: &str = "load generator post";

/// A post text of `bytes` bytes (0: [`POST_TEXT`]): words repeated, like a caption.
pub fn post_text(bytes: usize) -> String {
    if bytes == 0 {
        return POST_TEXT.to_string();
    }
    let words = "a load generator caption about a photo of the sea at dusk ";
    words
        .chars()
        .cycle()
        .take(bytes)
        .collect::<String>()
        .trim_end()
        .to_string()
        + "."
}
use crate::postgres_peer::PostgresPeer;
use crate::redis_peer::RedisPeer;

/// A failed operation, labelled for the report (a gRPC code name or an engine error kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError(pub String);

impl From<tonic::Status> for OpError {
    fn from(s: tonic::Status) -> Self {
        match s.code() {
            // Transport failures all arrive as Unknown: the message says which.
            tonic::Code::Unknown => OpError(format!("Unknown({})", s.message().chars().take(48).collect::<String>())),
            code => OpError(format!("{code:?}")),
        }
    }
}

impl From<feed_engine::Error> for OpError {
    fn from(e: feed_engine::Error) -> Self {
        let kind = match e {
            feed_engine::Error::InvalidArgument(_) => "InvalidArgument",
            feed_engine::Error::NotFound(_) => "NotFound",
            feed_engine::Error::PermissionDenied(_) => "PermissionDenied",
            feed_engine::Error::AlreadyExists(_) => "AlreadyExists",
            feed_engine::Error::Overloaded(_) => "ResourceExhausted",
            feed_engine::Error::ShuttingDown => "Unavailable",
            feed_engine::Error::Storage(_) => "Internal",
        };
        OpError(kind.into())
    }
}

/// A change to the follow graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// Start following.
    Follow,
    /// Stop following.
    Unfollow,
}

/// A target of the load.
#[derive(Clone)]
pub enum Target {
    /// The engine in this process.
    InProcess(Engine),
    /// A server, with an admin token (may act as any user).
    Grpc(Box<Grpc>),
    /// The peer design on Redis sorted sets (see [`crate::redis_peer`]).
    Redis(RedisPeer),
    /// The spec's own design on PostgreSQL (see [`crate::postgres_peer`]).
    Postgres(PostgresPeer),
}

pub(crate) type R<T> = Result<T, OpError>;

/// A post the load published.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    /// Its id.
    pub id: u64,
    /// Its ranking score (feeds are ordered by it, highest first); for the peers, its time.
    pub score: f64,
}

/// Engine calls that write (and fsync) run on blocking threads, at most this many at once — as a
/// server's handler pool would: hundreds of threads queued on one WAL only thrash two cores.
const BLOCKING_CALLS: usize = 64;

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> feed_engine::Result<T> + Send + 'static) -> R<T> {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let _slot = SLOTS
        .get_or_init(|| tokio::sync::Semaphore::new(BLOCKING_CALLS))
        .acquire()
        .await
        .map_err(|e| OpError(format!("closed: {e}")))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OpError(format!("join: {e}")))?
        .map_err(OpError::from)
}

impl Target {
    /// Connects to `grpc://host:port` — or to every node of `grpc://a,grpc://b,…` (the
    /// `grpc://` of later nodes may be left out) — with an admin token; `grpcs://` nodes over
    /// TLS with `tls` (the server's CA, and a client certificate where mTLS guards the admin).
    pub async fn grpc(
        url: &str,
        admin_token: &str,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> anyhow::Result<Target> {
        let mut nodes = Vec::new();
        for part in url.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (scheme, addr) = match part.split_once("://") {
                Some((s, a)) => (s, a),
                None if url.starts_with("grpcs://") => ("grpcs", part),
                None => ("grpc", part),
            };
            let mut endpoint = match scheme {
                "grpc" => Channel::from_shared(format!("http://{addr}"))?,
                "grpcs" => {
                    Channel::from_shared(format!("https://{addr}"))?.tls_config(tls.clone().unwrap_or_default())?
                }
                other => anyhow::bail!("unknown scheme {other}:// in {url:?}"),
            };
            endpoint = endpoint.tcp_nodelay(true);
            let ch = endpoint.connect_timeout(Duration::from_secs(5)).connect().await?;
            nodes.push(GrpcNode {
                url: format!("{scheme}://{addr}"),
                users: UserServiceClient::new(ch.clone()),
                posts: PostServiceClient::new(ch.clone()),
                feeds: FeedServiceClient::new(ch.clone()).max_decoding_message_size(64 << 20),
                engage: feedline_proto::v1::engagement_service_client::EngagementServiceClient::new(ch),
            });
        }
        anyhow::ensure!(!nodes.is_empty(), "no gRPC node in {url:?}");
        let stats = nodes
            .iter()
            .map(|_| {
                Ok(Mutex::new(NodeStats {
                    latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
                    errors: 0,
                }))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Target::Grpc(Box::new(Grpc::new(
            nodes,
            stats,
            format!("Bearer {admin_token}").parse()?,
        ))))
    }

    /// Per-node figures of a gRPC target (none for other targets).
    pub fn node_reports(&self) -> Vec<NodeReport> {
        match self {
            Target::Grpc(g) => g.node_reports(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn req<T>(auth: &MetadataValue<Ascii>, m: T) -> Request<T> {
        let mut r = Request::new(m);
        r.metadata_mut().insert("authorization", auth.clone());
        r
    }

    /// Creates a user; returns its id.
    pub async fn create_user(&self, handle: String) -> R<u64> {
        match self {
            Target::InProcess(e) => {
                let e = e.clone();
                blocking(move || e.create_user(&handle, false).map(|u| u.id)).await
            }
            Target::Grpc(g) => {
                let req = Self::req(&g.auth, pb::CreateUserRequest { handle, private: false });
                let r = g
                    .call(|n| async move { n.users.clone().create_user(req).await })
                    .await?;
                r.into_inner()
                    .user
                    .map(|u| u.id)
                    .ok_or_else(|| OpError("NoUser".into()))
            }
            Target::Redis(r) => r.create_user(handle).await,
            Target::Postgres(p) => p.create_user(handle).await,
        }
    }

    /// `follower` follows (or unfollows) `followee`.
    pub async fn relate(&self, edge: Edge, follower: u64, followee: u64) -> R<()> {
        match self {
            Target::InProcess(e) => {
                let e = e.clone();
                blocking(move || match edge {
                    Edge::Follow => e.follow(follower, followee).map(|_| ()),
                    Edge::Unfollow => e.unfollow(follower, followee).map(|_| ()),
                })
                .await
            }
            Target::Grpc(g) => {
                let req = Self::req(
                    &g.auth,
                    pb::RelationRequest {
                        user_id: follower,
                        target_id: followee,
                    },
                );
                g.call(|n| async move {
                    let mut users = n.users.clone();
                    match edge {
                        Edge::Follow => users.follow(req).await.map(|_| ()),
                        Edge::Unfollow => users.unfollow(req).await.map(|_| ()),
                    }
                })
                .await
            }
            Target::Redis(r) => r.relate(edge == Edge::Follow, follower, followee).await,
            Target::Postgres(p) => p.relate(edge == Edge::Follow, follower, followee).await,
        }
    }

    /// Publishes a post of `content_type` (1 text, 2 image, 3 video) with `text`; returns its
    /// id and its ranking score.
    pub async fn publish(&self, author: u64, content_type: i32, text: &str) -> R<Published> {
        let text = text.to_string();
        let media = if content_type == 1 {
            vec![]
        } else {
            vec!["media://loadgen/object".to_string()]
        };
        match self {
            Target::InProcess(e) => {
                let e = e.clone();
                let ct = match content_type {
                    2 => feed_engine::ContentType::Image,
                    3 => feed_engine::ContentType::Video,
                    _ => feed_engine::ContentType::Text,
                };
                let post = NewPost {
                    content_type: ct,
                    text,
                    media,
                    ttl_ms: None,
                    location: None,
                };
                blocking(move || {
                    e.publish(author, post).map(|p| Published {
                        id: p.id,
                        score: feed_engine::ranking::score(p.rank),
                    })
                })
                .await
            }
            Target::Grpc(g) => {
                let req = pb::PublishRequest {
                    author_id: author,
                    content_type,
                    text,
                    media,
                    ttl_seconds: 0,
                    location: String::new(),
                };
                let req = Self::req(&g.auth, req);
                let p = g
                    .call(|n| async move { n.posts.clone().publish(req).await })
                    .await?
                    .into_inner();
                Ok(Published {
                    id: p.id,
                    score: p.score,
                })
            }
            Target::Redis(r) => {
                let now = unix_ms();
                let id = r.publish(author, &text, now).await?;
                Ok(Published { id, score: now as f64 })
            }
            Target::Postgres(p) => Ok(Published {
                id: p.publish(author, content_type, &text).await?,
                score: unix_ms() as f64,
            }),
        }
    }

    /// Deletes one of `author`'s posts.
    pub async fn delete(&self, author: u64, post: u64) -> R<()> {
        match self {
            Target::InProcess(e) => {
                let e = e.clone();
                blocking(move || e.delete_post(author, post)).await
            }
            Target::Grpc(g) => {
                let req = Self::req(
                    &g.auth,
                    pb::DeletePostRequest {
                        user_id: author,
                        post_id: post,
                    },
                );
                g.call(|n| async move { n.posts.clone().delete_post(req).await })
                    .await?;
                Ok(())
            }
            Target::Redis(r) => r.delete(post).await,
            Target::Postgres(p) => p.delete(post).await,
        }
    }

    /// Reads the first page of `reader`'s home feed in `ranker`'s order (`None`: stored);
    /// returns the post ids.
    pub async fn read(&self, reader: u64, page: u32, ranker: Option<feed_engine::Ranker>) -> R<Vec<u64>> {
        match self {
            // Reads are microseconds and mostly in memory: served inline, like the server does.
            Target::InProcess(e) => Ok(match ranker {
                None | Some(feed_engine::Ranker::Stored) => e
                    .home_feed(reader, page as usize, None)?
                    .items
                    .iter()
                    .map(|i| i.post.id)
                    .collect(),
                Some(r) => e
                    .ranked_feed(reader, Some(r), page as usize, None, false)?
                    .items
                    .iter()
                    .map(|i| i.post.id)
                    .collect(),
            }),
            Target::Grpc(g) => {
                let req = pb::GetHomeFeedRequest {
                    reader_id: reader,
                    page_size: page,
                    cursor: String::new(),
                    ranker: match ranker {
                        None => pb::Ranker::Unspecified,
                        Some(feed_engine::Ranker::Stored) => pb::Ranker::Stored,
                        Some(feed_engine::Ranker::Chronological) => pb::Ranker::Chronological,
                        Some(feed_engine::Ranker::Engagement) => pb::Ranker::Engagement,
                    } as i32,
                    ..Default::default()
                };
                let req = Self::req(&g.auth, req);
                Ok(g.call(|n| async move { n.feeds.clone().get_home_feed(req).await })
                    .await?
                    .into_inner()
                    .posts
                    .iter()
                    .map(|p| p.id)
                    .collect())
            }
            Target::Redis(r) => Ok(r.read_many(&[reader], page).await?.pop().unwrap_or_default()),
            Target::Postgres(p) => Ok(p.read_many(&[reader], page).await?.pop().unwrap_or_default()),
        }
    }

    /// Reads many readers' first pages in one call; one result per reader.
    pub async fn read_batch(&self, readers: &[u64], page: u32) -> R<Vec<R<usize>>> {
        match self {
            Target::InProcess(e) => Ok(readers
                .iter()
                .map(|&r| {
                    e.home_feed(r, page as usize, None)
                        .map(|p| p.items.len())
                        .map_err(OpError::from)
                })
                .collect()),
            Target::Grpc(g) => {
                let reads = readers
                    .iter()
                    .map(|&r| pb::GetHomeFeedRequest {
                        reader_id: r,
                        page_size: page,
                        cursor: String::new(),
                        ..Default::default()
                    })
                    .collect();
                let req = Self::req(&g.auth, pb::GetHomeFeedsRequest { reads });
                let res = g
                    .call(|n| async move { n.feeds.clone().get_home_feeds(req).await })
                    .await?;
                Ok(res
                    .into_inner()
                    .results
                    .into_iter()
                    .map(|x| match x.result {
                        Some(pb::home_feed_result::Result::Page(p)) => Ok(p.posts.len()),
                        Some(pb::home_feed_result::Result::Error(e)) => {
                            Err(OpError(format!("{:?}", tonic::Code::from_i32(e.code))))
                        }
                        None => Err(OpError("Empty".into())),
                    })
                    .collect())
            }
            Target::Redis(r) => Ok(counts(r.read_many(readers, page).await?)),
            Target::Postgres(p) => Ok(counts(p.read_many(readers, page).await?)),
        }
    }

    /// Whether `post` is in `reader`'s home feed at any rank, not only on its first page (a
    /// small author's new post can rank below older posts of large authors): one 1-entry page
    /// read from just above the post's position (a cursor made of its rank and id + 1, the
    /// order feeds page in), so a look costs one small read however deep the post ranks. It
    /// goes through the same read path (stored timeline, pulled authors, visibility) as any
    /// read. The peers look the entry up directly.
    pub async fn seen(&self, reader: u64, post: Published) -> R<bool> {
        match self {
            Target::Redis(r) => return r.seen(reader, post.id).await,
            Target::Postgres(p) => return p.seen(reader, post.id).await,
            _ => {}
        }
        let above = codec::encode_feed_cursor(codec::FeedCursor {
            rank: feed_engine::ranking::rank_of(post.score),
            post: post.id.saturating_add(1),
        });
        let (items, _) = self.feed_page(reader, 1, Some(above)).await?;
        Ok(items.first().is_some_and(|&(id, _)| id == post.id))
    }

    /// One page of a feedline feed: `(post id, score)` of each item, and the next cursor.
    async fn feed_page(&self, reader: u64, n: usize, cursor: Option<String>) -> R<(Vec<(u64, f64)>, Option<String>)> {
        match self {
            Target::InProcess(e) => {
                let page = e.home_feed(reader, n, cursor.as_deref())?;
                let items = page
                    .items
                    .iter()
                    .map(|i| (i.post.id, feed_engine::ranking::score(i.post.rank)))
                    .collect();
                Ok((items, page.next_cursor))
            }
            Target::Grpc(g) => {
                let req = Self::req(
                    &g.auth,
                    pb::GetHomeFeedRequest {
                        reader_id: reader,
                        page_size: n as u32,
                        cursor: cursor.unwrap_or_default(),
                        ..Default::default()
                    },
                );
                let page = g
                    .call(|n| async move { n.feeds.clone().get_home_feed(req).await })
                    .await?
                    .into_inner();
                let items = page.posts.iter().map(|p| (p.id, p.score)).collect();
                Ok((items, Some(page.next_cursor).filter(|c| !c.is_empty())))
            }
            Target::Redis(_) | Target::Postgres(_) => Err(OpError("NotPaged".into())),
        }
    }
}

/// Per reader, how many entries a peer's batched read returned.
fn counts(pages: Vec<Vec<u64>>) -> Vec<R<usize>> {
    pages.into_iter().map(|v| Ok(v.len())).collect()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
