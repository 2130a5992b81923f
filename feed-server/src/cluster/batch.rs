//! Batched reads in a cluster: a batch of home-feed reads is split by owner; this node keeps
//! its own readers' reads, sends one sub-batch to each peer that owns others, and puts every
//! answer back in its request's place. A list of profiles (search results) takes each
//! profile's follow counts from the user's node, which alone holds them.

use std::collections::BTreeMap;

use feedline_proto::v1 as pb;
use tonic::metadata::{AsciiMetadataValue, MetadataMap, MetadataValue};
use tonic::{Request, Status};

use super::Cluster;
use super::peers::FORWARDED;
use crate::convert;

/// Answers by request position (`None`: not answered yet), and the reads this node serves.
pub type Scattered = (Vec<Option<pb::HomeFeedResult>>, Vec<(usize, pb::GetHomeFeedRequest)>);

/// Metadata marking a call as forwarded (for routing checks of a forwarded batch).
fn forwarded_md() -> MetadataMap {
    let mut md = MetadataMap::new();
    md.insert(FORWARDED, MetadataValue::from_static("1"));
    md
}

impl Cluster {
    /// Sends the reads of `reads` this node does not own to their owners (one sub-batch per
    /// peer, concurrently, with the caller's `auth`) and returns their answers in place, with the
    /// reads left for this node. A batch that was itself `forwarded` is not forwarded again: a
    /// read this node does not own is answered with the routing error.
    pub async fn scatter_reads(
        &self,
        reads: Vec<pb::GetHomeFeedRequest>,
        auth: Option<AsciiMetadataValue>,
        forwarded: bool,
    ) -> Result<Scattered, Status> {
        let mut slots: Vec<Option<pb::HomeFeedResult>> = vec![None; reads.len()];
        let mut local = Vec::new();
        let mut remote: BTreeMap<String, Vec<(usize, pb::GetHomeFeedRequest)>> = BTreeMap::new();
        for (i, r) in reads.into_iter().enumerate() {
            if self.owns(r.reader_id) {
                local.push((i, r));
            } else if forwarded {
                let why = self.route(r.reader_id, &forwarded_md()).err();
                slots[i] = Some(convert::read_error(
                    why.unwrap_or_else(|| Status::internal("read not served")),
                ));
            } else {
                let peer = self.route(r.reader_id, &MetadataMap::new())?;
                let name = peer.map(|p| p.spec.name.clone()).unwrap_or_default();
                remote.entry(name).or_default().push((i, r));
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
                let res = match self.route(first, &MetadataMap::new()) {
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
        for (idx, res) in futures::future::join_all(calls).await {
            match res {
                Ok(r) => {
                    let results = r.into_inner().results;
                    for (k, i) in idx.into_iter().enumerate() {
                        slots[i] = Some(results.get(k).cloned().unwrap_or_else(|| {
                            convert::read_error(Status::internal("owner answered fewer reads than asked"))
                        }));
                    }
                }
                Err(s) => {
                    for i in idx {
                        slots[i] = Some(convert::read_error(s.clone()));
                    }
                }
            }
        }
        Ok((slots, local))
    }
}

impl Cluster {
    /// Replaces the follower and following counts of the `users` this node does not hold by
    /// their nodes' (one `GetUser` each, concurrently, with the caller's `auth`): only a user's
    /// node holds their side of the graph. A profile whose node does not answer keeps this
    /// node's counts.
    pub async fn owners_counts(&self, users: &mut [feed_engine::User], auth: Option<AsciiMetadataValue>) {
        let calls = users
            .iter()
            .enumerate()
            .filter(|(_, u)| !self.owns(u.id))
            .map(|(i, u)| {
                let auth = auth.clone();
                let id = u.id;
                async move {
                    let mut req = Request::new(pb::GetUserRequest { user_id: id });
                    if let Some(a) = auth {
                        req.metadata_mut().insert("authorization", a);
                    }
                    let res = match self.route(id, &MetadataMap::new()) {
                        Ok(Some(peer)) => peer
                            .forward(req, |ch, r| async move {
                                pb::user_service_client::UserServiceClient::new(ch).get_user(r).await
                            })
                            .await
                            .ok(),
                        _ => None,
                    };
                    (i, res.map(|r| r.into_inner()))
                }
            });
        for (i, got) in futures::future::join_all(calls).await {
            match got {
                Some(p) => (users[i].followers, users[i].following) = (p.followers, p.following),
                None => tracing::debug!(user = users[i].id, "a search result's counts from this node"),
            }
        }
    }
}
