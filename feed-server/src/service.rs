//! The gRPC services over the engine: authentication and acting-as checks, rate limits, the
//! in-flight cap, and a call into the engine per RPC (writes on the blocking pool).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use feed_engine::{Engine, FollowState};
use feedline_proto::v1 as pb;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Response, Status};

use crate::auth::{Claims, Signer, Subject, now_s};
use crate::cluster::Cluster;
use crate::config::ServerConfig;
use crate::convert;
use crate::ops::{Op, Outcome, Verb, unexpected};
use crate::subscribe::{EventStream, Subscriptions};

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
    subs: Arc<Subscriptions>,
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
    /// Services over `engine`, signing with `signer`; `subs` must be the engine's listener.
    pub fn new(
        engine: Engine,
        signer: Signer,
        cfg: ServerConfig,
        subs: Arc<Subscriptions>,
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
            subs,
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

    /// Admits a call: a free in-flight slot, a valid token, and the caller's rate budget (`cost`
    /// requests; admin tokens are exempt).
    fn admit<T>(&self, req: &Request<T>, cost: u32) -> Result<Admitted, Status> {
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
    async fn exec(&self, op: Op) -> Result<Outcome, Status> {
        match &self.cluster {
            // Answer before the server's request timeout cuts the call off without a reason.
            Some(c) => {
                let budget = std::time::Duration::from_millis(self.cfg.limits.request_timeout_ms * 8 / 10);
                c.exec(op, budget).await
            }
            None => self.blocking(move |e| op.apply(e.writer())).await,
        }
    }

    /// A relation change by `r.user_id` on `r.target_id`.
    async fn relation(&self, adm: &Admitted, verb: Verb, r: pb::RelationRequest) -> Result<Outcome, Status> {
        adm.claims.act_as(r.user_id)?;
        self.exec(Op::Relation {
            verb,
            user: r.user_id,
            target: r.target_id,
        })
        .await
    }

    /// The peer owning `user`, when a cluster node does not own it.
    fn route(
        &self,
        user: u64,
        md: &tonic::metadata::MetadataMap,
    ) -> Result<Option<&crate::cluster::peers::Peer>, Status> {
        match &self.cluster {
            Some(c) => c.route(user, md),
            None => Ok(None),
        }
    }

    fn user_token(&self, user: u64, ttl_s: u64) -> String {
        self.signer.issue(Subject::User(user), ttl_s)
    }
}

/// A per-read error of a batch.
fn read_error(s: Option<Status>) -> pb::HomeFeedResult {
    let s = s.unwrap_or_else(|| Status::internal("read not served"));
    pb::HomeFeedResult {
        result: Some(pb::home_feed_result::Result::Error(pb::ReadError {
            code: s.code() as i32,
            message: s.message().to_string(),
        })),
    }
}

/// Metadata marking a call as forwarded (for routing checks of a forwarded batch).
fn forwarded_md() -> tonic::metadata::MetadataMap {
    let mut md = tonic::metadata::MetadataMap::new();
    md.insert(
        crate::cluster::peers::FORWARDED,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    md
}

/// In a cluster, hands the call to the node owning `$user` (returning its answer) unless this
/// node owns it.
macro_rules! forward {
    ($self:ident, $req:ident, $user:expr, $module:ident :: $client:ident :: $method:ident) => {
        if let Some(peer) = $self.route($user, $req.metadata())? {
            return peer
                .forward(
                    $req,
                    |ch, r| async move { pb::$module::$client::new(ch).$method(r).await },
                )
                .await;
        }
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
        match $self.relation(&adm, $verb, $req.into_inner()).await? {
            Outcome::Changed(changed) => Ok(Response::new(pb::ChangeResponse { changed })),
            o => Err(unexpected(&o)),
        }
    }};
}

#[tonic::async_trait]
impl pb::user_service_server::UserService for Api {
    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let _permit = self.slot()?;
        // Anonymous sign-up is limited per client address; an admin token is exempt.
        // A token, when one is sent, must be valid (a bad one counts as a failed authentication).
        let admin = match req.metadata().get("authorization") {
            Some(_) => self.authenticate(&req)?.is_admin(),
            None => false,
        };
        if !admin {
            let ip = client_ip(&req);
            if self.per_addr.check_key(&ip).is_err() {
                return Err(Status::resource_exhausted(format!(
                    "rate limit: {} unauthenticated requests per hour per address",
                    self.cfg.limits.anonymous_requests_per_hour
                )));
            }
        }
        let r = req.into_inner();
        let u = match self
            .exec(Op::CreateUser {
                handle: r.handle,
                private: r.private,
            })
            .await?
        {
            Outcome::User(u) => u,
            o => return Err(unexpected(&o)),
        };
        let token = self.user_token(u.id, self.cfg.auth.user_token_ttl_s);
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(convert::user(u)),
            token,
        }))
    }

    async fn get_user(&self, req: Request<pb::GetUserRequest>) -> Result<Response<pb::User>, Status> {
        let adm = self.admit(&req, 1)?;
        let id = req.into_inner().user_id;
        let u = self.engine.profile(adm.claims.viewer(), id).map_err(convert::status)?;
        Ok(Response::new(convert::user(u)))
    }

    async fn get_user_by_handle(&self, req: Request<pb::GetUserByHandleRequest>) -> Result<Response<pb::User>, Status> {
        let adm = self.admit(&req, 1)?;
        let u = self
            .engine
            .profile_by_handle(adm.claims.viewer(), &req.into_inner().handle)
            .map_err(convert::status)?;
        Ok(Response::new(convert::user(u)))
    }

    async fn set_private(&self, req: Request<pb::SetPrivateRequest>) -> Result<Response<pb::User>, Status> {
        forward!(
            self,
            req,
            req.get_ref().user_id,
            user_service_client::UserServiceClient::set_private
        );
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        match self
            .exec(Op::SetPrivate {
                user: r.user_id,
                private: r.private,
            })
            .await?
        {
            Outcome::User(u) => Ok(Response::new(convert::user(u))),
            o => Err(unexpected(&o)),
        }
    }

    async fn issue_token(
        &self,
        req: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, Status> {
        let adm = self.admit(&req, 1)?;
        if !adm.claims.is_admin() {
            return Err(Status::permission_denied("IssueToken needs the admin token"));
        }
        let r = req.into_inner();
        let max = self.cfg.auth.max_token_ttl_s;
        if r.ttl_seconds > max {
            return Err(Status::invalid_argument(format!(
                "ttl_seconds must be at most {max} (the server's max-token-ttl-s), got {}",
                r.ttl_seconds
            )));
        }
        self.engine.get_user(r.user_id).map_err(convert::status)?;
        let ttl = if r.ttl_seconds == 0 {
            self.cfg.auth.user_token_ttl_s
        } else {
            r.ttl_seconds
        };
        Ok(Response::new(pb::IssueTokenResponse {
            token: self.user_token(r.user_id, ttl),
        }))
    }

    async fn follow(&self, req: Request<pb::RelationRequest>) -> Result<Response<pb::FollowResponse>, Status> {
        forward!(
            self,
            req,
            req.get_ref().user_id,
            user_service_client::UserServiceClient::follow
        );
        let adm = self.admit(&req, 1)?;
        let s = match self.relation(&adm, Verb::Follow, req.into_inner()).await? {
            Outcome::Follow(s) => s,
            o => return Err(unexpected(&o)),
        };
        let state = match s {
            FollowState::Following => pb::FollowState::Following,
            FollowState::Requested => pb::FollowState::Requested,
        };
        Ok(Response::new(pb::FollowResponse { state: state as i32 }))
    }

    async fn unfollow(&self, req: Request<pb::RelationRequest>) -> Result<Response<pb::ChangeResponse>, Status> {
        relation_call!(self, req, Verb::Unfollow, unfollow)
    }

    async fn approve_follower(
        &self,
        req: Request<pb::RelationRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        relation_call!(self, req, Verb::Approve, approve_follower)
    }

    async fn deny_follower(&self, req: Request<pb::RelationRequest>) -> Result<Response<pb::ChangeResponse>, Status> {
        relation_call!(self, req, Verb::Deny, deny_follower)
    }

    async fn block(&self, req: Request<pb::RelationRequest>) -> Result<Response<pb::ChangeResponse>, Status> {
        relation_call!(self, req, Verb::Block, block)
    }

    async fn unblock(&self, req: Request<pb::RelationRequest>) -> Result<Response<pb::ChangeResponse>, Status> {
        relation_call!(self, req, Verb::Unblock, unblock)
    }

    async fn mute(&self, req: Request<pb::RelationRequest>) -> Result<Response<pb::ChangeResponse>, Status> {
        relation_call!(self, req, Verb::Mute, mute)
    }

    async fn unmute(&self, req: Request<pb::RelationRequest>) -> Result<Response<pb::ChangeResponse>, Status> {
        relation_call!(self, req, Verb::Unmute, unmute)
    }

    async fn list_followers(&self, req: Request<pb::ListUsersRequest>) -> Result<Response<pb::UserPage>, Status> {
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        let p = self.engine.followers(
            adm.claims.viewer(),
            r.user_id,
            convert::page_size(r.page_size),
            convert::cursor(&r.cursor),
        );
        Ok(Response::new(convert::user_page(p.map_err(convert::status)?)))
    }

    async fn list_following(&self, req: Request<pb::ListUsersRequest>) -> Result<Response<pb::UserPage>, Status> {
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        let p = self.engine.following(
            adm.claims.viewer(),
            r.user_id,
            convert::page_size(r.page_size),
            convert::cursor(&r.cursor),
        );
        Ok(Response::new(convert::user_page(p.map_err(convert::status)?)))
    }

    async fn revoke_tokens(
        &self,
        req: Request<pb::RevokeTokensRequest>,
    ) -> Result<Response<pb::RevokeTokensResponse>, Status> {
        let subject = req.get_ref().user_id;
        if subject != feed_engine::OPERATOR_TOKENS {
            forward!(
                self,
                req,
                subject,
                user_service_client::UserServiceClient::revoke_tokens
            );
        }
        let adm = self.admit(&req, 1)?;
        if subject == feed_engine::OPERATOR_TOKENS && !adm.claims.is_admin() {
            return Err(Status::permission_denied("revoking admin tokens needs the admin token"));
        }
        if subject != feed_engine::OPERATOR_TOKENS {
            adm.claims.act_as(subject)?;
        }
        match self
            .exec(Op::RevokeTokens {
                subject,
                before_us: crate::auth::now_us(),
            })
            .await?
        {
            Outcome::Revoked(valid_from_us) => Ok(Response::new(pb::RevokeTokensResponse { valid_from_us })),
            o => Err(unexpected(&o)),
        }
    }

    async fn list_follow_requests(&self, req: Request<pb::ListUsersRequest>) -> Result<Response<pb::UserPage>, Status> {
        forward!(
            self,
            req,
            req.get_ref().user_id,
            user_service_client::UserServiceClient::list_follow_requests
        );
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        let p = self
            .engine
            .pending_requests(r.user_id, convert::page_size(r.page_size), convert::cursor(&r.cursor));
        Ok(Response::new(convert::user_page(p.map_err(convert::status)?)))
    }
}

#[tonic::async_trait]
impl pb::post_service_server::PostService for Api {
    async fn publish(&self, req: Request<pb::PublishRequest>) -> Result<Response<pb::Post>, Status> {
        forward!(
            self,
            req,
            req.get_ref().author_id,
            post_service_client::PostServiceClient::publish
        );
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.author_id)?;
        let author = r.author_id;
        let post = convert::new_post(r)?;
        match self.exec(Op::Publish { author, post }).await? {
            Outcome::Post(p) => Ok(Response::new(convert::post(&p))),
            o => Err(unexpected(&o)),
        }
    }

    async fn delete_post(&self, req: Request<pb::DeletePostRequest>) -> Result<Response<pb::ChangeResponse>, Status> {
        forward!(
            self,
            req,
            req.get_ref().user_id,
            post_service_client::PostServiceClient::delete_post
        );
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        self.exec(Op::DeletePost {
            user: r.user_id,
            post: r.post_id,
        })
        .await?;
        Ok(Response::new(pb::ChangeResponse { changed: true }))
    }

    async fn get_post(&self, req: Request<pb::GetPostRequest>) -> Result<Response<pb::Post>, Status> {
        forward!(
            self,
            req,
            req.get_ref().user_id,
            post_service_client::PostServiceClient::get_post
        );
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        let p = self.engine.get_post(r.user_id, r.post_id).map_err(convert::status)?;
        Ok(Response::new(convert::post(&p)))
    }

    async fn list_author_posts(
        &self,
        req: Request<pb::ListAuthorPostsRequest>,
    ) -> Result<Response<pb::PostPage>, Status> {
        forward!(
            self,
            req,
            req.get_ref().user_id,
            post_service_client::PostServiceClient::list_author_posts
        );
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        let p = self.engine.author_posts(
            r.user_id,
            r.author_id,
            convert::page_size(r.page_size),
            convert::cursor(&r.cursor),
        );
        Ok(Response::new(convert::post_page(p.map_err(convert::status)?)))
    }
}

#[tonic::async_trait]
impl pb::feed_service_server::FeedService for Api {
    async fn get_home_feed(&self, req: Request<pb::GetHomeFeedRequest>) -> Result<Response<pb::FeedPage>, Status> {
        forward!(
            self,
            req,
            req.get_ref().reader_id,
            feed_service_client::FeedServiceClient::get_home_feed
        );
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.reader_id)?;
        let p = self
            .engine
            .home_feed(r.reader_id, convert::page_size(r.page_size), convert::cursor(&r.cursor));
        Ok(Response::new(convert::feed_page(p.map_err(convert::status)?)))
    }

    async fn get_home_feeds(
        &self,
        req: Request<pb::GetHomeFeedsRequest>,
    ) -> Result<Response<pb::GetHomeFeedsResponse>, Status> {
        // Authenticate before looking at the request: an anonymous caller learns nothing.
        let n = req.get_ref().reads.len();
        let max = self.cfg.limits.max_batch_reads;
        let adm = self.admit(&req, n.clamp(1, max) as u32)?;
        if n == 0 || n > max {
            return Err(Status::invalid_argument(format!(
                "a batch holds 1 to {max} reads, got {n}"
            )));
        }
        let auth = req.metadata().get("authorization").cloned();
        let forwarded = req.metadata().get(crate::cluster::peers::FORWARDED).is_some();
        let reads = req.into_inner().reads;
        for r in &reads {
            adm.claims.act_as(r.reader_id)?;
        }
        // In a cluster, each owner serves its readers: local reads here, one sub-batch per peer.
        let mut slots: Vec<Option<pb::HomeFeedResult>> = vec![None; reads.len()];
        let mut local = Vec::new();
        let mut remote: std::collections::BTreeMap<String, Vec<(usize, pb::GetHomeFeedRequest)>> = Default::default();
        for (i, r) in reads.into_iter().enumerate() {
            match &self.cluster {
                Some(c) if !c.owns(r.reader_id) => {
                    if forwarded {
                        slots[i] = Some(read_error(c.route(r.reader_id, &forwarded_md()).err()));
                    } else {
                        let peer = c.route(r.reader_id, &tonic::metadata::MetadataMap::new())?;
                        let name = peer.map(|p| p.spec.name.clone()).unwrap_or_default();
                        remote.entry(name).or_default().push((i, r));
                    }
                }
                _ => local.push((i, r)),
            }
        }
        let calls = remote.into_values().map(|group| {
            let auth = auth.clone();
            async move {
                let (idx, reads): (Vec<usize>, Vec<pb::GetHomeFeedRequest>) = group.into_iter().unzip();
                let first = reads[0].reader_id;
                let mut sub = Request::new(pb::GetHomeFeedsRequest { reads });
                if let Some(a) = auth {
                    sub.metadata_mut().insert("authorization", a);
                }
                let res = match self.route(first, &tonic::metadata::MetadataMap::new()) {
                    Ok(Some(peer)) => {
                        peer.forward(sub, |ch, r| async move {
                            pb::feed_service_client::FeedServiceClient::new(ch)
                                .get_home_feeds(r)
                                .await
                        })
                        .await
                    }
                    Ok(None) => Err(Status::internal("routing changed during a batch")),
                    Err(e) => Err(e),
                };
                (idx, res)
            }
        });
        let answers = futures::future::join_all(calls).await;
        for (idx, res) in answers {
            match res {
                Ok(r) => {
                    let results = r.into_inner().results;
                    for (k, i) in idx.into_iter().enumerate() {
                        slots[i] = Some(results.get(k).cloned().unwrap_or_else(|| {
                            read_error(Some(Status::internal("owner answered fewer reads than asked")))
                        }));
                    }
                }
                Err(s) => {
                    for i in idx {
                        slots[i] = Some(read_error(Some(s.clone())));
                    }
                }
            }
        }
        let served = self
            .blocking(move |e| {
                Ok(local
                    .into_iter()
                    .map(|(i, r)| {
                        let page =
                            e.home_feed(r.reader_id, convert::page_size(r.page_size), convert::cursor(&r.cursor));
                        let res = match page {
                            Ok(p) => pb::HomeFeedResult {
                                result: Some(pb::home_feed_result::Result::Page(convert::feed_page(p))),
                            },
                            Err(err) => read_error(Some(convert::status(err))),
                        };
                        (i, res)
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
        for (i, r) in served {
            slots[i] = Some(r);
        }
        let results = slots
            .into_iter()
            .map(|r| r.unwrap_or_else(|| read_error(None)))
            .collect();
        Ok(Response::new(pb::GetHomeFeedsResponse { results }))
    }

    async fn get_discovery_feed(&self, req: Request<pb::GetHomeFeedRequest>) -> Result<Response<pb::FeedPage>, Status> {
        forward!(
            self,
            req,
            req.get_ref().reader_id,
            feed_service_client::FeedServiceClient::get_discovery_feed
        );
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.reader_id)?;
        let p = self
            .engine
            .discovery_feed(r.reader_id, convert::page_size(r.page_size), convert::cursor(&r.cursor));
        Ok(Response::new(convert::feed_page(p.map_err(convert::status)?)))
    }

    async fn set_read_marker(
        &self,
        req: Request<pb::SetReadMarkerRequest>,
    ) -> Result<Response<pb::ReadMarker>, Status> {
        forward!(
            self,
            req,
            req.get_ref().reader_id,
            feed_service_client::FeedServiceClient::set_read_marker
        );
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.reader_id)?;
        self.exec(Op::SetReadMarker {
            reader: r.reader_id,
            post: r.post_id,
        })
        .await?;
        Ok(Response::new(pb::ReadMarker {
            reader_id: r.reader_id,
            post_id: r.post_id,
        }))
    }

    async fn get_read_marker(
        &self,
        req: Request<pb::GetReadMarkerRequest>,
    ) -> Result<Response<pb::ReadMarker>, Status> {
        forward!(
            self,
            req,
            req.get_ref().reader_id,
            feed_service_client::FeedServiceClient::get_read_marker
        );
        let adm = self.admit(&req, 1)?;
        let reader = req.into_inner().reader_id;
        adm.claims.act_as(reader)?;
        let post = self.engine.read_marker(reader).map_err(convert::status)?;
        Ok(Response::new(pb::ReadMarker {
            reader_id: reader,
            post_id: post.unwrap_or(0),
        }))
    }

    async fn get_unread_feed(&self, req: Request<pb::GetHomeFeedRequest>) -> Result<Response<pb::FeedPage>, Status> {
        forward!(
            self,
            req,
            req.get_ref().reader_id,
            feed_service_client::FeedServiceClient::get_unread_feed
        );
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.reader_id)?;
        let p = self
            .engine
            .unread_feed(r.reader_id, convert::page_size(r.page_size), convert::cursor(&r.cursor));
        Ok(Response::new(convert::feed_page(p.map_err(convert::status)?)))
    }

    type SubscribeHomeFeedStream = EventStream;

    async fn subscribe_home_feed(
        &self,
        req: Request<pb::SubscribeHomeFeedRequest>,
    ) -> Result<Response<EventStream>, Status> {
        if let Some(peer) = self.route(req.get_ref().reader_id, req.metadata())? {
            let r = peer
                .forward(req, |ch, r| async move {
                    pb::feed_service_client::FeedServiceClient::new(ch)
                        .subscribe_home_feed(r)
                        .await
                })
                .await?;
            let stream: EventStream = Box::pin(r.into_inner());
            return Ok(Response::new(stream));
        }
        let adm = self.admit(&req, 1)?;
        let reader = req.into_inner().reader_id;
        adm.claims.act_as(reader)?;
        self.engine.get_user(reader).map_err(convert::status)?;
        let l = &self.cfg.limits;
        Ok(Response::new(self.subs.subscribe(
            reader,
            crate::subscribe::Bounds {
                buffer: l.subscriber_buffer,
                max: l.max_subscribers,
                per_user: l.max_subscriptions_per_user,
                lifetime: Duration::from_secs(l.subscription_lifetime_s),
            },
        )?))
    }
}
