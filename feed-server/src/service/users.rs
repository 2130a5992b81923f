//! The user service: sign-up, profiles, tokens, the follow graph and its lists.

use feed_engine::{FollowState, User};
use feedline_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{Api, client_ip};
use crate::convert;
use crate::ops::{Op, Revoked, Verb};

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
        let u: User = self
            .exec(Op::CreateUser {
                handle: r.handle,
                private: r.private,
            })
            .await?;
        let token = self.user_token(u.id, self.cfg.auth.user_token_ttl_s);
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(convert::user(u)),
            token,
        }))
    }

    async fn get_user(&self, req: Request<pb::GetUserRequest>) -> Result<Response<pb::User>, Status> {
        // A user's counts are kept on their node.
        forward!(
            self,
            req,
            req.get_ref().user_id,
            user_service_client::UserServiceClient::get_user
        );
        self.settle_graph(req.get_ref().user_id).await?;
        let adm = self.admit(&req, 1)?;
        let id = req.into_inner().user_id;
        let u = self.engine.profile(adm.claims.viewer(), id).map_err(convert::status)?;
        Ok(Response::new(convert::user(u)))
    }

    async fn get_user_by_handle(&self, req: Request<pb::GetUserByHandleRequest>) -> Result<Response<pb::User>, Status> {
        if self.cluster.is_some()
            && let Ok(u) = self.engine.user_by_handle(&req.get_ref().handle)
        {
            forward!(
                self,
                req,
                u.id,
                user_service_client::UserServiceClient::get_user_by_handle
            );
            self.settle_graph(u.id).await?;
        }
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
        let u: User = self
            .exec(Op::SetPrivate {
                user: r.user_id,
                private: r.private,
            })
            .await?;
        Ok(Response::new(convert::user(u)))
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
        let s: FollowState = self.relation(&adm, Verb::Follow, req.into_inner()).await?;
        Ok(Response::new(convert::follow_response(s)))
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
        // Both lists of a user are kept on their node.
        forward!(
            self,
            req,
            req.get_ref().user_id,
            user_service_client::UserServiceClient::list_followers
        );
        self.settle_graph(req.get_ref().user_id).await?;
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
        forward!(
            self,
            req,
            req.get_ref().user_id,
            user_service_client::UserServiceClient::list_following
        );
        self.settle_graph(req.get_ref().user_id).await?;
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
        let valid_from_us: Revoked = self
            .exec(Op::RevokeTokens {
                subject,
                before_us: crate::auth::now_us(),
            })
            .await?;
        Ok(Response::new(pb::RevokeTokensResponse {
            valid_from_us: valid_from_us.0,
        }))
    }

    async fn list_follow_requests(&self, req: Request<pb::ListUsersRequest>) -> Result<Response<pb::UserPage>, Status> {
        forward!(
            self,
            req,
            req.get_ref().user_id,
            user_service_client::UserServiceClient::list_follow_requests
        );
        self.settle_graph(req.get_ref().user_id).await?;
        let adm = self.admit(&req, 1)?;
        let r = req.into_inner();
        adm.claims.act_as(r.user_id)?;
        let p = self
            .engine
            .pending_requests(r.user_id, convert::page_size(r.page_size), convert::cursor(&r.cursor));
        Ok(Response::new(convert::user_page(p.map_err(convert::status)?)))
    }
}
