//! Read-your-writes on the node a client called. A write is applied by its user's node before it
//! is answered; when another node took the call and forwarded it, that node answers only once it
//! has applied the write too (every node applies the replicated ones), so the client's next call
//! there — a list, a profile, a post — sees it. The user's node says which log sequence the
//! write got in the `x-feedline-seq` response header: [`SeqLayer`] puts it there from what the
//! call's write recorded with [`note_write`], and [`super::Cluster::caught_up_with`] waits for it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tower::{Layer, Service};

use super::Cluster;

/// The response header carrying the sequence of the replicated write a call made.
pub const SEQ_HEADER: &str = "x-feedline-seq";

/// How long a forwarding node waits to apply a write its user's node applied (a bound: past it
/// the answer goes out anyway, and the write is applied moments later).
const CATCH_UP: Duration = Duration::from_secs(1);

tokio::task_local! {
    static WROTE_AT: Arc<AtomicU64>;
}

/// Records that the current call's write is at log sequence `seq` (ignored outside a call).
pub fn note_write(seq: u64) {
    let _ = WROTE_AT.try_with(|s| s.fetch_max(seq, Ordering::Relaxed));
}

impl Cluster {
    /// After a forwarded call: waits (up to a second) until this node has applied the write the
    /// answer's header names, if any.
    pub async fn caught_up_with(&self, md: &tonic::metadata::MetadataMap) {
        let Some(seq) = md.get(SEQ_HEADER).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) else {
            return;
        };
        let mut rx = self.applied.clone();
        let reached = tokio::time::timeout(CATCH_UP, rx.wait_for(|&at| at >= seq)).await;
        if !matches!(reached, Ok(Ok(_))) {
            tracing::debug!(seq, "answered a forwarded write before applying it here");
        }
    }
}

/// Puts the sequence of the write a call made in its response headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqLayer;

impl<S> Layer<S> for SeqLayer {
    type Service = SeqService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SeqService { inner }
    }
}

/// [`SeqLayer`]'s service.
#[derive(Debug, Clone)]
pub struct SeqService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SeqService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let slot = Arc::new(AtomicU64::new(0));
        let fut = WROTE_AT.scope(slot.clone(), self.inner.call(req));
        Box::pin(async move {
            let mut res = fut.await?;
            let seq = slot.load(Ordering::Relaxed);
            if seq > 0 {
                res.headers_mut().insert(SEQ_HEADER, http::HeaderValue::from(seq));
            }
            Ok(res)
        })
    }
}
