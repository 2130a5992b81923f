//! The post service: publish, delete, read one post, page an author's posts.

use std::sync::Arc;

use feed_engine::Post;
use feedline_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Api;
use crate::convert;
use crate::ops::{Changed, Op};

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
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        let p = self.engine.get_post(r.user_id, r.post_id).map_err(convert::status)?;
        let counts = self.engine.engagement(&[p.id]).map_err(convert::status)?;
        Ok(Response::new(convert::post_with(&p, counts[0])))
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
        Ok(Response::new(self.post_page(p.map_err(convert::status)?)?))
    }
}
