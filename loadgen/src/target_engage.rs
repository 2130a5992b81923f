//! Likes and comments through a target: the engine in-process or a server; the peer designs
//! model the feed only and have neither.

use feedline_proto::v1 as pb;

use crate::target::{OpError, R, Target, blocking};

impl Target {
    /// Whether the target has likes and comments (the peer designs model the feed only).
    pub fn has_engagement(&self) -> bool {
        matches!(self, Target::InProcess(_) | Target::Grpc(_))
    }

    /// `user` likes `post`; whether that changed anything (false: already liked).
    pub async fn like(&self, user: u64, post: u64) -> R<bool> {
        match self {
            // The engine's like committer batches likes itself: no blocking thread per like.
            Target::InProcess(e) => e.like_async(user, post).await.map_err(OpError::from),
            Target::Grpc(g) => {
                let req = Self::req(
                    &g.auth,
                    pb::PostActionRequest {
                        user_id: user,
                        post_id: post,
                    },
                );
                Ok(g.call(|n| async move { n.engage.clone().like(req).await })
                    .await?
                    .into_inner()
                    .changed)
            }
            _ => Err(OpError("likes are not part of this peer design".into())),
        }
    }

    /// `user` comments on `post`.
    pub async fn comment(&self, user: u64, post: u64) -> R<()> {
        const TEXT: &str = "load generator comment";
        match self {
            Target::InProcess(e) => {
                let e = e.clone();
                blocking(move || e.comment(user, post, None, TEXT).map(|_| ())).await
            }
            Target::Grpc(g) => {
                let req = Self::req(
                    &g.auth,
                    pb::AddCommentRequest {
                        user_id: user,
                        post_id: post,
                        parent_id: 0,
                        text: TEXT.into(),
                    },
                );
                g.call(|n| async move { n.engage.clone().add_comment(req).await })
                    .await?;
                Ok(())
            }
            _ => Err(OpError("comments are not part of this peer design".into())),
        }
    }
}
