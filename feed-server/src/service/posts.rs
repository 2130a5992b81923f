//! The post service: publish, delete, read one post or several, page an author's posts.

use std::sync::Arc;

use feed_engine::Post;
use feedline_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Api;
use super::bodies::heads;
use crate::convert;
use crate::ops::{Changed, Op};

/// The most posts one `GetPosts` asks for.
const MAX_GET_POSTS: usize = 100;

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
        let p: Arc<Post> = self
            .exec(Op::Publish {
                author,
                post,
                reach: None,
            })
            .await?;
        Ok(Response::new(convert::post(&p)))
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
        let _: Changed = self
            .exec(Op::DeletePost {
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
        let auth = req.metadata().get("authorization").cloned();
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        let p = self.engine.get_post(r.user_id, r.post_id).map_err(convert::status)?;
        let counts = self.engine.engagement(&[p.id]).map_err(convert::status)?;
        let mut out = [convert::post_with(&p, counts[0])];
        self.posts_with_bodies(r.user_id, &mut out, &heads([&*p]), auth).await?;
        let [out] = out;
        Ok(Response::new(out))
    }

    async fn get_posts(&self, req: Request<pb::GetPostsRequest>) -> Result<Response<pb::PostPage>, Status> {
        // Another node asking for bodies: answered from this node's own, whoever the reader is.
        let bodies_only = self.cluster.is_some()
            && req.metadata().get(crate::cluster::peers::FORWARDED).is_some()
            && req.metadata().get(crate::cluster::bodies::BODIES).is_some();
        if !bodies_only {
            forward!(
                self,
                req,
                req.get_ref().user_id,
                post_service_client::PostServiceClient::get_posts
            );
        }
        let adm = self.admit(&req, 1)?;
        let auth = req.metadata().get("authorization").cloned();
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        if r.post_ids.len() > MAX_GET_POSTS {
            return Err(Status::invalid_argument(format!(
                "GetPosts takes at most {MAX_GET_POSTS} post ids, got {}",
                r.post_ids.len()
            )));
        }
        let mut posts = self
            .engine
            .visible_posts(r.user_id, &r.post_ids)
            .map_err(convert::status)?;
        if bodies_only {
            posts.retain(|p| !p.trimmed);
        }
        let ids: Vec<u64> = posts.iter().map(|p| p.id).collect();
        let counts = self.engine.engagement(&ids).map_err(convert::status)?;
        let mut out: Vec<pb::Post> = posts
            .iter()
            .zip(counts)
            .map(|(p, c)| convert::post_with(p, c))
            .collect();
        self.posts_with_bodies(r.user_id, &mut out, &heads(posts.iter().map(|p| &**p)), auth)
            .await?;
        Ok(Response::new(pb::PostPage {
            posts: out,
            next_cursor: String::new(),
        }))
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
        let auth = req.metadata().get("authorization").cloned();
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        let p = self
            .engine
            .author_posts(
                r.user_id,
                r.author_id,
                convert::page_size(r.page_size),
                convert::cursor(&r.cursor),
            )
            .map_err(convert::status)?;
        Ok(Response::new(self.post_page_with_bodies(r.user_id, p, auth).await?))
    }
}
