//! The gRPC services over the engine: authentication and acting-as checks, rate limits, the
//! in-flight cap, and a call into the engine per RPC (writes on the blocking pool; see
//! ARCHITECTURE.md for reads). The services themselves are in `users.rs`, `posts.rs`,
//! `feeds.rs`, `engage.rs` and `search.rs`; wire types are built only by `convert`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use feed_engine::Engine;
use feedline_proto::v1 as pb;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Status};

use crate::auth::{Claims, Signer, Subject, now_s};
use crate::cluster::Cluster;
use crate::config::ServerConfig;
use crate::convert;
use crate::ops::{FromOutcome, Op, Verb};
use crate::subscribe::Live;

/// Shared state of every service.
pub struct Api {
    engine: Engine,
    signer: Signer,
    cfg: ServerConfig,
    in_flight: Arc<Semaphore>,
    per_user: DefaultKeyedRateLimiter<u64>,
    per_addr: DefaultKeyedRateLimiter<IpAddr>,
    /// Failed authentications per address; an address over it is refused until the instant.
    failed_auth: DefaultKeyedRateLimiter<IpAddr>,
    auth_refused_until: dashmap::DashMap<IpAddr, Instant>,
    live: Live,
    cluster: Option<Arc<Cluster>>,
    /// mTLS is on: admin tokens and forwarded calls must come with a verified client certificate.
    client_certs: bool,
}

/// What a call may do once admitted: its claims, and its in-flight slot for the call's duration.
struct Admitted {
    claims: Claims,
    _permit: OwnedSemaphorePermit,
}

/// How long an address that failed to authenticate too often is refused.
const AUTH_PENALTY: Duration = Duration::from_secs(60);

fn client_ip<T>(req: &Request<T>) -> IpAddr {
    req.remote_addr().map(|a| a.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

fn per_hour(n: u32) -> Quota {
    Quota::per_hour(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Api {
    /// Services over `engine`, signing with `signer`; `live` must be the engine's listeners.
    pub fn new(
        engine: Engine,
        signer: Signer,
        cfg: ServerConfig,
        live: Live,
        cluster: Option<Arc<Cluster>>,
        client_certs: bool,
    ) -> Arc<Api> {
        Arc::new(Api {
            cluster,
            client_certs,
            in_flight: Arc::new(Semaphore::new(cfg.limits.max_in_flight)),
            per_user: RateLimiter::keyed(per_hour(cfg.limits.user_requests_per_hour)),
            per_addr: RateLimiter::keyed(per_hour(cfg.limits.anonymous_requests_per_hour)),
            failed_auth: RateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(cfg.auth.failed_auth_per_minute).unwrap_or(NonZeroU32::MIN),
            )),
            auth_refused_until: Default::default(),
            engine,
            signer,
            cfg,
            live,
        })
    }

    fn slot(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.in_flight.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!(feed_engine::metrics::OVERLOADED, "what" => "in-flight").increment(1);
            Status::resource_exhausted(format!(
                "server is at its limit of {} requests in flight; retry with backoff",
                self.cfg.limits.max_in_flight
            ))
        })
    }

    /// The claims of a request's token: signed by a key in force, not expired, not revoked.
    /// Failures count against the caller's address; past `failed-auth-per-minute` the address
    /// is refused for a minute before any token is checked.
    fn authenticate<T>(&self, req: &Request<T>) -> Result<Claims, Status> {
        let ip = client_ip(req);
        let now = Instant::now();
        if let Some(until) = self.auth_refused_until.get(&ip).map(|u| *u) {
            if now < until {
                metrics::counter!(feed_engine::metrics::OVERLOADED, "what" => "failed-auth").increment(1);
                return Err(Status::resource_exhausted(format!(
                    "too many failed authentications from this address; retry in {} s",
                    (until - now).as_secs().max(1)
                )));
            }
            self.auth_refused_until.remove(&ip);
        }
        let verified = self.signer.authenticate(req, now_s()).and_then(|c| {
            let floor = self
                .engine
                .tokens_valid_from(c.revocation_subject())
                .map_err(convert::status)?;
            if c.issued_at_us < floor {
                return Err(Status::unauthenticated("invalid token: revoked"));
            }
            Ok(c)
        });
        if verified.is_err() && self.failed_auth.check_key(&ip).is_err() {
            if self.auth_refused_until.len() > 100_000 {
                self.auth_refused_until.retain(|_, u| *u > now);
            }
            self.auth_refused_until.insert(ip, now + AUTH_PENALTY);
        }
        verified
    }

    /// Admits a call: a node not stopping to be rebuilt (cluster mode), a free in-flight slot, a
    /// valid token, and the caller's rate budget (`cost` requests; admin tokens are exempt).
    fn admit<T>(&self, req: &Request<T>, cost: u32) -> Result<Admitted, Status> {
        if let Some(c) = &self.cluster {
            c.refuse_if_restarting()?;
        }
        let permit = self.slot()?;
        let claims = self.authenticate(req)?;
        if self.client_certs && req.peer_certs().is_none_or(|c| c.is_empty()) {
            if claims.is_admin() {
                return Err(Status::permission_denied(
                    "admin calls need a client certificate signed by the server's client CA",
                ));
            }
            if req.metadata().get(crate::cluster::peers::FORWARDED).is_some() {
                return Err(Status::permission_denied(
                    "forwarded calls need a node's client certificate signed by the server's client CA",
                ));
            }
        }
        if let Subject::User(u) = claims.subject {
            let n = NonZeroU32::new(cost.max(1)).unwrap_or(NonZeroU32::MIN);
            let ok = matches!(self.per_user.check_key_n(&u, n), Ok(Ok(())));
            if !ok {
                metrics::counter!(feed_engine::metrics::OVERLOADED, "what" => "rate-limit").increment(1);
                return Err(Status::resource_exhausted(format!(
                    "rate limit: {} requests per hour per user",
                    self.cfg.limits.user_requests_per_hour
                )));
            }
        }
        Ok(Admitted {
            claims,
            _permit: permit,
        })
    }

    /// Runs an engine call on the blocking pool (for calls that fsync or scan).
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> feed_engine::Result<R> + Send + 'static,
    ) -> Result<R, Status> {
        let engine = self.engine.clone();
        match tokio::task::spawn_blocking(move || f(&engine)).await {
            Ok(r) => r.map_err(convert::status),
            Err(e) => {
                tracing::error!(error = %e, "engine task failed");
                Err(Status::internal("internal error"))
            }
        }
    }

    /// Runs a write: on a single node, straight into the engine; in a cluster, through the
    /// replicated log (acknowledged once a quorum has it and this node has applied it).
    /// The result comes back typed: `T` is what the op returns.
    async fn exec<T: FromOutcome>(&self, op: Op) -> Result<T, Status> {
        self.exec_on(op, None).await
    }

    /// [`Api::exec`] for an op decided on its post's partition: `author` is the post's author
    /// (cluster mode; `None` on one node).
    async fn exec_on<T: FromOutcome>(&self, op: Op, author: Option<u64>) -> Result<T, Status> {
        let outcome = match &self.cluster {
            // Answer before the server's request timeout cuts the call off without a reason.
            Some(c) => {
                let budget = std::time::Duration::from_millis(self.cfg.limits.request_timeout_ms * 8 / 10);
                c.exec(op, author, budget).await?
            }
            // Likes wait on the engine's like committer, not on a blocking thread each.
            None => match op {
                Op::Like { user, post } => {
                    crate::ops::Outcome::Changed(self.engine.like_async(user, post).await.map_err(convert::status)?)
                }
                Op::Unlike { user, post } => {
                    crate::ops::Outcome::Changed(self.engine.unlike_async(user, post).await.map_err(convert::status)?)
                }
                op => self.blocking(move |e| op.apply(e.writer())).await?,
            },
        };
        T::from_outcome(outcome)
    }

    /// A relation change by `r.user_id` on `r.target_id`.
    async fn relation<T: FromOutcome>(&self, adm: &Admitted, verb: Verb, r: pb::RelationRequest) -> Result<T, Status> {
        adm.claims.act_as(r.user_id)?;
        self.exec(Op::Relation {
            verb,
            user: r.user_id,
            target: r.target_id,
        })
        .await
    }

    /// Cluster mode, on `user`'s node: waits until the halves of follows other nodes sent for
    /// the user before this call are applied, so their lists and counts include them.
    async fn settle_graph(&self, user: u64) -> Result<(), Status> {
        if let Some(c) = &self.cluster {
            c.settle(user).await;
        }
        Ok(())
    }

    /// The peer owning `user`, when a cluster node does not own it.
    fn route(
        &self,
        user: u64,
        md: &tonic::metadata::MetadataMap,
    ) -> Result<Option<std::sync::Arc<crate::cluster::peers::Peer>>, Status> {
        match &self.cluster {
            Some(c) => c.route(user, md),
            None => Ok(None),
        }
    }

    /// Cluster mode: the node deciding likes and comments on `post` (its author's; none: this
    /// one) and the post's author when this node knows the post.
    fn post_route(
        &self,
        post: u64,
        md: &tonic::metadata::MetadataMap,
    ) -> Result<(Option<std::sync::Arc<crate::cluster::peers::Peer>>, Option<u64>), Status> {
        match &self.cluster {
            Some(c) => c.route_post(post, md),
            None => Ok((None, None)),
        }
    }

    /// The author a like or comment on `post` by `viewer` is decided under, answering here:
    /// `known` (or none on one node); in a cluster, a post this node does not know is refused as
    /// the engine refuses it (`NOT_FOUND`).
    fn engage_author(&self, viewer: u64, post: u64, known: Option<u64>) -> Result<Option<u64>, Status> {
        if self.cluster.is_none() || known.is_some() {
            return Ok(known);
        }
        self.engine.has_liked(viewer, post).map_err(convert::status)?;
        match self.engine.post_author(post).map_err(convert::status)? {
            Some(a) => Ok(Some(a)),
            None => Err(Status::not_found(format!("post {post} does not exist"))),
        }
    }

    /// A feed page for the wire with each post's engagement counts (one multi-get).
    fn counted(&self, p: feed_engine::FeedPage) -> Result<pb::FeedPage, Status> {
        let ids: Vec<_> = p.items.iter().map(|i| i.post.id).collect();
        let counts = self.engine.engagement(&ids).map_err(convert::status)?;
        Ok(convert::feed_page_with(p, &counts))
    }

    /// A post page for the wire with each post's engagement counts (one multi-get).
    fn post_page(&self, p: feed_engine::PostPage) -> Result<pb::PostPage, Status> {
        let ids: Vec<_> = p.posts.iter().map(|p| p.id).collect();
        let counts = self.engine.engagement(&ids).map_err(convert::status)?;
        Ok(convert::post_page(p, &counts))
    }

    /// The limits every live subscription is held to.
    fn sub_bounds(&self) -> crate::subscribe::Bounds {
        let l = &self.cfg.limits;
        crate::subscribe::Bounds {
            buffer: l.subscriber_buffer,
            max: l.max_subscribers,
            per_user: l.max_subscriptions_per_user,
            lifetime: Duration::from_secs(l.subscription_lifetime_s),
        }
    }

    fn user_token(&self, user: u64, ttl_s: u64) -> String {
        self.signer.issue(Subject::User(user), ttl_s)
    }
}

/// In a cluster, hands the call to the node owning `$user` (returning its answer) unless this
/// node owns it.
macro_rules! forward_to {
    ($self:ident, $req:ident, $peer:expr, $module:ident :: $client:ident :: $method:ident) => {
        if let Some(peer) = $peer {
            let res = peer
                .forward(
                    $req,
                    |ch, r| async move { pb::$module::$client::new(ch).$method(r).await },
                )
                .await;
            // Read-your-writes here: a forwarded write is answered once this node has it too.
            if let (Ok(r), Some(c)) = (&res, &$self.cluster) {
                c.caught_up_with(r.metadata()).await;
            }
            return res;
        }
    };
}

macro_rules! forward {
    ($self:ident, $req:ident, $user:expr, $module:ident :: $client:ident :: $method:ident) => {
        forward_to!(
            $self,
            $req,
            $self.route($user, $req.metadata())?,
            $module::$client::$method
        )
    };
}

/// A relation change: forwarded to the acting user's node, checked, run through `exec`.
macro_rules! relation_call {
    ($self:ident, $req:ident, $verb:expr, $method:ident) => {{
        forward!(
            $self,
            $req,
            $req.get_ref().user_id,
            user_service_client::UserServiceClient::$method
        );
        let adm = $self.admit(&$req, 1)?;
        let c: crate::ops::Changed = $self.relation(&adm, $verb, $req.into_inner()).await?;
        Ok(Response::new(pb::ChangeResponse { changed: c.0 }))
    }};
}

// After the macros above, which the services use.
mod bodies;
mod engage;
mod feeds;
mod posts;
mod search;
mod users;
