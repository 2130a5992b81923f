//! The engagement service: likes, comments, notifications (paged and live).

use feedline_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Api;
use crate::convert;
use crate::ops::{Changed, Counted, Op, Seen};
use crate::subscribe::EventStream;

/// A write of `user_id`'s own reading state (views, notifications seen): forwarded to the
/// acting user's node, admitted, checked that the caller acts as that user, run through `exec`
/// as the op `$op` builds.
macro_rules! post_write {
    ($self:ident, $req:ident, $method:ident, |$r:ident| $op:expr) => {{
        forward!(
            $self,
            $req,
            $req.get_ref().user_id,
            engagement_service_client::EngagementServiceClient::$method
        );
        let adm = $self.admit(&$req, 1)?;
        let $r = $req.into_inner();
        adm.claims.act_as($r.user_id)?;
        $self.exec($op).await
    }};
}

/// A like, unlike, comment or comment deletion: decided on the node holding the post's author
/// (forwarded there; a post this node has not applied yet goes to the node that minted it),
/// admitted, checked that the caller acts as `user_id`, run through `exec_on` as the op `$op`
/// builds.
macro_rules! engage_write {
    ($self:ident, $req:ident, $method:ident, |$r:ident| $op:expr) => {{
        let post = $req.get_ref().post_id;
        let (peer, author) = $self.post_route(post, $req.metadata())?;
        forward_to!(
            $self,
            $req,
            peer,
            engagement_service_client::EngagementServiceClient::$method
        );
        let adm = $self.admit(&$req, 1)?;
        let $r = $req.into_inner();
        adm.claims.act_as($r.user_id)?;
        let author = $self.engage_author($r.user_id, post, author)?;
        $self.exec_on($op, author).await
    }};
}

#[tonic::async_trait]
impl pb::engagement_service_server::EngagementService for Api {
    async fn like(&self, req: Request<pb::PostActionRequest>) -> Result<Response<pb::ChangeResponse>, Status> {
        let Changed(changed) = engage_write!(self, req, like, |r| Op::Like {
            user: r.user_id,
            post: r.post_id
        })?;
        Ok(Response::new(pb::ChangeResponse { changed }))
    }

    async fn unlike(&self, req: Request<pb::PostActionRequest>) -> Result<Response<pb::ChangeResponse>, Status> {
        let Changed(changed) = engage_write!(self, req, unlike, |r| Op::Unlike {
            user: r.user_id,
            post: r.post_id
        })?;
        Ok(Response::new(pb::ChangeResponse { changed }))
    }

    async fn list_likers(&self, req: Request<pb::ListLikersRequest>) -> Result<Response<pb::UserPage>, Status> {
        // The likes are kept where the post's author is.
        let (peer, _) = self.post_route(req.get_ref().post_id, req.metadata())?;
        forward_to!(
            self,
            req,
            peer,
            engagement_service_client::EngagementServiceClient::list_likers
        );
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        let p = self
            .engine
            .likers(
                r.user_id,
                r.post_id,
                convert::page_size(r.page_size),
                convert::cursor(&r.cursor),
            )
            .map_err(convert::status)?;
        Ok(Response::new(convert::user_page(p)))
    }

    async fn add_comment(&self, req: Request<pb::AddCommentRequest>) -> Result<Response<pb::Comment>, Status> {
        let c: feed_engine::Comment = engage_write!(self, req, add_comment, |r| Op::Comment {
            user: r.user_id,
            post: r.post_id,
            parent: (r.parent_id != 0).then_some(r.parent_id),
            text: r.text,
        })?;
        Ok(Response::new(convert::comment(c)))
    }

    async fn delete_comment(
        &self,
        req: Request<pb::DeleteCommentRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let Changed(changed) = engage_write!(self, req, delete_comment, |r| Op::DeleteComment {
            user: r.user_id,
            post: r.post_id,
            comment: r.comment_id,
        })?;
        Ok(Response::new(pb::ChangeResponse { changed }))
    }

    async fn list_comments(&self, req: Request<pb::ListCommentsRequest>) -> Result<Response<pb::CommentPage>, Status> {
        // The comments are kept where the post's author is.
        let (peer, _) = self.post_route(req.get_ref().post_id, req.metadata())?;
        forward_to!(
            self,
            req,
            peer,
            engagement_service_client::EngagementServiceClient::list_comments
        );
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        let p = self
            .engine
            .comments(
                r.user_id,
                r.post_id,
                (r.parent_id != 0).then_some(r.parent_id),
                convert::page_size(r.page_size),
                convert::cursor(&r.cursor),
            )
            .map_err(convert::status)?;
        Ok(Response::new(convert::comment_page(p)))
    }

    async fn list_notifications(
        &self,
        req: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::NotificationPage>, Status> {
        forward!(
            self,
            req,
            req.get_ref().user_id,
            engagement_service_client::EngagementServiceClient::list_notifications
        );
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        let p = self
            .engine
            .notifications(r.user_id, convert::page_size(r.page_size), convert::cursor(&r.cursor))
            .map_err(convert::status)?;
        Ok(Response::new(convert::notification_page(p)))
    }

    async fn record_views(
        &self,
        req: Request<pb::RecordViewsRequest>,
    ) -> Result<Response<pb::RecordViewsResponse>, Status> {
        let Counted(counted) = post_write!(self, req, record_views, |r| Op::RecordViews {
            user: r.user_id,
            posts: r.post_ids,
        })?;
        Ok(Response::new(pb::RecordViewsResponse {
            counted: counted as u32,
        }))
    }

    async fn mark_notifications_seen(
        &self,
        req: Request<pb::MarkNotificationsSeenRequest>,
    ) -> Result<Response<pb::NotificationMarker>, Status> {
        let user = req.get_ref().user_id;
        let Seen(seen_up_to) = post_write!(self, req, mark_notifications_seen, |r| Op::MarkNotificationsSeen {
            user: r.user_id,
            up_to: r.up_to,
        })?;
        let unread = self.engine.unread_notifications(user).map_err(convert::status)?;
        Ok(Response::new(pb::NotificationMarker { seen_up_to, unread }))
    }

    type SubscribeNotificationsStream = EventStream<pb::NotificationEvent>;

    async fn subscribe_notifications(
        &self,
        req: Request<pb::SubscribeNotificationsRequest>,
    ) -> Result<Response<Self::SubscribeNotificationsStream>, Status> {
        // Likes and comments notify on the notified user's node only (decided on the post
        // author's node, a reply's notification sent on to the parent's author): the stream is
        // served by the user's node.
        if let Some(peer) = self.route(req.get_ref().user_id, req.metadata())? {
            let r = peer
                .forward(req, |ch, r| async move {
                    pb::engagement_service_client::EngagementServiceClient::new(ch)
                        .subscribe_notifications(r)
                        .await
                })
                .await?;
            let stream: EventStream<pb::NotificationEvent> = Box::pin(r.into_inner());
            return Ok(Response::new(stream));
        }
        let adm = self.admit(&req, 1)?;
        let user = req.into_inner().user_id;
        adm.claims.act_as(user)?;
        self.engine.get_user(user).map_err(convert::status)?;
        Ok(Response::new(self.live.notes.subscribe(user, self.sub_bounds())?))
    }
}
