//! The feed service: home feeds (one or a batch), discovery, read markers, the unread feed
//! and live subscriptions.

use feedline_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Api;
use super::bodies::heads;
use crate::convert;
use crate::ops::{Changed, Op};
use crate::subscribe::EventStream;

/// A one-page feed read: forwarded to the reader's node, admitted, checked that the caller acts
/// as the reader, served by the engine's `$read`.
macro_rules! page_read {
    ($self:ident, $req:ident, $method:ident, $read:ident) => {{
        forward!(
            $self,
            $req,
            $req.get_ref().reader_id,
            feed_service_client::FeedServiceClient::$method
        );
        let adm = $self.admit(&$req, 1)?;
        let auth = $req.metadata().get("authorization").cloned();
        let r = $req.into_inner();
        adm.claims.act_as(r.reader_id)?;
        let p = $self
            .engine
            .$read(r.reader_id, convert::page_size(r.page_size), convert::cursor(&r.cursor))
            .map_err(convert::status)?;
        let heads = heads(p.items.iter().map(|i| &*i.post));
        let mut page = $self.counted(p)?;
        $self.feed_with_bodies(r.reader_id, &mut page, &heads, auth).await;
        Ok(Response::new(page))
    }};
}

#[tonic::async_trait]
impl pb::feed_service_server::FeedService for Api {
    async fn get_home_feed(&self, req: Request<pb::GetHomeFeedRequest>) -> Result<Response<pb::FeedPage>, Status> {
        let ranker = convert::ranker(req.get_ref().ranker)?;
        let stored = ranker.unwrap_or(self.engine.config().ranker.default) == feed_engine::Ranker::Stored;
        if stored && !req.get_ref().explain {
            return page_read!(self, req, get_home_feed, home_feed);
        }
        forward!(
            self,
            req,
            req.get_ref().reader_id,
            feed_service_client::FeedServiceClient::get_home_feed
        );
        let adm = self.admit(&req, 1)?;
        let auth = req.metadata().get("authorization").cloned();
        let r = req.into_inner();
        adm.claims.act_as(r.reader_id)?;
        let p = self
            .engine
            .ranked_feed(
                r.reader_id,
                ranker,
                convert::page_size(r.page_size),
                convert::cursor(&r.cursor),
                r.explain,
            )
            .map_err(convert::status)?;
        let ids: Vec<_> = p.items.iter().map(|i| i.post.id).collect();
        let counts = self.engine.engagement(&ids).map_err(convert::status)?;
        let heads = heads(p.items.iter().map(|i| &*i.post));
        let mut page = convert::ranked_page(p, &counts);
        self.feed_with_bodies(r.reader_id, &mut page, &heads, auth).await;
        Ok(Response::new(page))
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
        // In a cluster, each owner serves its readers: reads it does not own go to their owners.
        let (mut slots, local) = match &self.cluster {
            Some(c) => c.scatter_reads(reads, auth.clone(), forwarded).await?,
            None => (vec![None; reads.len()], reads.into_iter().enumerate().collect()),
        };
        let served = self
            .blocking(move |e| {
                Ok(local
                    .into_iter()
                    .map(|(i, r)| {
                        let page = e
                            .home_feed(r.reader_id, convert::page_size(r.page_size), convert::cursor(&r.cursor))
                            .and_then(|p| {
                                let ids: Vec<_> = p.items.iter().map(|i| i.post.id).collect();
                                Ok((p, e.engagement(&ids)?))
                            });
                        let heads = page
                            .as_ref()
                            .map(|(p, _)| heads(p.items.iter().map(|i| &*i.post)))
                            .unwrap_or_default();
                        (i, r.reader_id, heads, convert::read_result(page))
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
        for (i, reader, heads, mut r) in served {
            if let Some(pb::home_feed_result::Result::Page(page)) = &mut r.result
                && !heads.is_empty()
            {
                self.feed_with_bodies(reader, page, &heads, auth.clone()).await;
            }
            slots[i] = Some(r);
        }
        let results = slots
            .into_iter()
            .map(|r| r.unwrap_or_else(|| convert::read_error(Status::internal("read not served"))))
            .collect();
        Ok(Response::new(pb::GetHomeFeedsResponse { results }))
    }

    async fn get_discovery_feed(&self, req: Request<pb::GetHomeFeedRequest>) -> Result<Response<pb::FeedPage>, Status> {
        page_read!(self, req, get_discovery_feed, discovery_feed)
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
        let _: Changed = self
            .exec(Op::SetReadMarker {
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
        page_read!(self, req, get_unread_feed, unread_feed)
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
        Ok(Response::new(self.live.feed.subscribe(reader, self.sub_bounds())?))
    }
}
