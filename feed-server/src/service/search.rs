//! The search service: a hashtag's posts, users by handle prefix, hashtags by prefix.

use feedline_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Api;
use crate::convert;

#[tonic::async_trait]
impl pb::search_service_server::SearchService for Api {
    async fn list_tag_posts(&self, req: Request<pb::ListTagPostsRequest>) -> Result<Response<pb::PostPage>, Status> {
        // Which private authors the viewer follows is known on the viewer's node.
        forward!(
            self,
            req,
            req.get_ref().user_id,
            search_service_client::SearchServiceClient::list_tag_posts
        );
        let adm = self.admit(&req, 1)?;
        let auth = req.metadata().get("authorization").cloned();
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        let p = if r.trending {
            self.engine
                .trending_tag_posts(r.user_id, &r.tag, convert::page_size(r.page_size))
        } else {
            self.engine.tag_posts(
                r.user_id,
                &r.tag,
                convert::page_size(r.page_size),
                convert::cursor(&r.cursor),
            )
        }
        .map_err(convert::status)?;
        Ok(Response::new(self.post_page_with_bodies(r.user_id, p, auth).await?))
    }

    async fn search_users(&self, req: Request<pb::SearchRequest>) -> Result<Response<pb::SearchUsersResponse>, Status> {
        let adm = self.admit(&req, 1)?;
        let auth = req.metadata().get("authorization").cloned();
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        let mut users = self
            .engine
            .search_users(r.user_id, &r.prefix, r.limit as usize)
            .map_err(convert::status)?;
        if let Some(c) = &self.cluster {
            c.owners_counts(&mut users, auth).await;
        }
        Ok(Response::new(pb::SearchUsersResponse {
            users: users.into_iter().map(convert::user).collect(),
        }))
    }

    async fn search_tags(&self, req: Request<pb::SearchRequest>) -> Result<Response<pb::SearchTagsResponse>, Status> {
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        let tags = self
            .engine
            .search_tags(&r.prefix, r.limit as usize)
            .map_err(convert::status)?;
        Ok(Response::new(pb::SearchTagsResponse {
            tags: tags.into_iter().map(convert::tag_count).collect(),
        }))
    }

    async fn trending_tags(
        &self,
        req: Request<pb::TrendingTagsRequest>,
    ) -> Result<Response<pb::TrendingTagsResponse>, Status> {
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        let tags = self.engine.trending_tags(r.limit as usize).map_err(convert::status)?;
        Ok(Response::new(pb::TrendingTagsResponse {
            tags: tags
                .into_iter()
                .map(|t| pb::TagTrend {
                    tag: t.tag,
                    heat: t.heat,
                })
                .collect(),
        }))
    }
}
