//! gRPC server metrics in the shape Prometheus users know from go-grpc-prometheus: calls started,
//! calls handled by status code, and a handling-time histogram, each labelled with
//! `grpc_type`, `grpc_service` and `grpc_method`. One tower layer around every service, so no
//! handler has to remember them; the status is read where gRPC puts it (the headers of a
//! trailers-only answer, or the trailers at the end of the body), so streams are counted when
//! they end.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

/// Counter: calls started.
pub const STARTED: &str = "grpc_server_started_total";
/// Counter: calls finished, by `grpc_code`.
pub const HANDLED: &str = "grpc_server_handled_total";
/// Histogram: seconds from the request to the last byte of the answer.
pub const HANDLING_SECONDS: &str = "grpc_server_handling_seconds";

/// Bucket bounds (seconds) of every latency histogram the server exports: 50 µs to 10 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The layer: wraps a service in [`GrpcMetrics`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// A service that records the gRPC metrics of every call through it.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

/// The labels of one call and when it started; records itself once.
#[derive(Debug)]
struct Call {
    kind: &'static str,
    service: String,
    method: String,
    started: Instant,
    done: bool,
}

impl Call {
    fn new(path: &str) -> Call {
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("unknown", "unknown"));
        let kind = match method {
            "SubscribeHomeFeed" | "Watch" => "server_stream",
            "ServerReflectionInfo" => "bidi_stream",
            _ => "unary",
        };
        let call = Call {
            kind,
            service: service.to_string(),
            method: method.to_string(),
            started: Instant::now(),
            done: false,
        };
        metrics::counter!(STARTED, "grpc_type" => kind, "grpc_service" => call.service.clone(), "grpc_method" => call.method.clone())
            .increment(1);
        call
    }

    fn finish(&mut self, code: &'static str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let labels = [
            ("grpc_type", self.kind.to_string()),
            ("grpc_service", self.service.clone()),
            ("grpc_method", self.method.clone()),
        ];
        metrics::histogram!(HANDLING_SECONDS, &labels).record(self.started.elapsed().as_secs_f64());
        let mut labels = labels.to_vec();
        labels.push(("grpc_code", code.to_string()));
        metrics::counter!(HANDLED, &labels).increment(1);
    }

    /// Records the status in `headers`, if they carry one.
    fn finish_from(&mut self, headers: &http::HeaderMap) -> bool {
        match headers.get("grpc-status") {
            Some(v) => {
                self.finish(code_name(v.as_bytes()));
                true
            }
            None => false,
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The body was dropped before its trailers: the client went away or the call was cut.
        self.finish("Canceled");
    }
}

/// gRPC's name for a status code, as go-grpc-prometheus labels it.
fn code_name(v: &[u8]) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .and_then(|i| NAMES.get(i).copied())
        .unwrap_or("Unknown")
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<MetricsBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Only gRPC calls are counted (gRPC-Web arrives here already translated); the demo
        // page's files and CORS preflights are not RPCs.
        let grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let mut call = grpc.then(|| Call::new(req.uri().path()));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            // A trailers-only answer (every error a handler returns) has its status here.
            if let Some(c) = call.as_mut() {
                c.finish_from(res.headers());
            }
            Ok(res.map(|inner| MetricsBody { inner, call }))
        })
    }
}

/// An answer's body that records the call's status from its trailers.
#[derive(Debug)]
pub struct MetricsBody<B> {
    inner: B,
    call: Option<Call>,
}

impl<B: Body + Unpin> Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Some(call) = self.call.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(t) = frame.trailers_ref() {
                        call.finish_from(t);
                    }
                }
                Poll::Ready(Some(Err(_))) => call.finish("Internal"),
                Poll::Ready(None) => call.finish("Unknown"),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::code_name;

    #[test]
    fn status_codes_have_their_grpc_names() {
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"5"), "NotFound");
        assert_eq!(code_name(b"16"), "Unauthenticated");
        assert_eq!(code_name(b"17"), "Unknown");
        assert_eq!(code_name(b"x"), "Unknown");
    }
}
