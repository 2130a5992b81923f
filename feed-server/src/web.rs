//! The browser's way in: gRPC-Web on the gRPC port (HTTP/1.1 accepted beside HTTP/2), a CORS
//! policy from config — loopback origins always, others only when listed — and, behind `--web`,
//! a small demo page (plain HTML and JavaScript, embedded in the binary) at `/`, served by a
//! layer in front of gRPC-Web's translation.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, header};
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Browser access (kebab-case TOML under `[web]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct WebConfig {
    /// Origins besides loopback ones (`http://127.0.0.1:*`, `http://localhost:*`, `[::1]`)
    /// whose pages may call the API, exactly as browsers send them (`https://app.example.com`).
    pub cors_allowed_origins: Vec<String>,
    /// Serve the demo page at `/` of the gRPC port (`--web`).
    pub page: bool,
}

const INDEX: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");

/// Whether `origin` (`scheme://host[:port]`) is a page on this machine.
fn is_loopback_origin(origin: &str) -> bool {
    let Some((_, rest)) = origin.split_once("://") else {
        return false;
    };
    let host = match rest.rsplit_once(':') {
        // `[::1]:8080`, `localhost:8080`; a bare `[::1]` has its colons inside the brackets.
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.is_empty() => h,
        _ => rest,
    };
    crate::tls::is_loopback_host(host)
}

/// The CORS policy: preflights answered for allowed origins, gRPC-Web's headers allowed in and
/// the status headers exposed, nothing for anyone else.
pub fn cors(cfg: &WebConfig) -> CorsLayer {
    let listed = cfg.cors_allowed_origins.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin
                .to_str()
                .is_ok_and(|o| is_loopback_origin(o) || listed.iter().any(|l| l == o))
        }))
        .allow_methods([Method::POST, Method::GET, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-grpc-web"),
            HeaderName::from_static("x-user-agent"),
            HeaderName::from_static("grpc-timeout"),
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
        ])
        .max_age(Duration::from_secs(3600))
}

/// Serves the demo page's two files (`GET /`, `GET /app.js`) when enabled, before gRPC-Web's
/// translation (which refuses any other HTTP/1.1 request); everything else goes on inward.
#[derive(Debug, Clone, Copy)]
pub struct PageLayer {
    /// Whether the page is served (`--web`).
    pub enabled: bool,
}

impl<S> tower::Layer<S> for PageLayer {
    type Service = Page<S>;

    fn layer(&self, inner: S) -> Page<S> {
        Page {
            inner,
            enabled: self.enabled,
        }
    }
}

/// The service of [`PageLayer`].
#[derive(Debug, Clone)]
pub struct Page<S> {
    inner: S,
    enabled: bool,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Page<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let file = match (self.enabled && req.method() == Method::GET, req.uri().path()) {
            (true, "/") => Some(("text/html; charset=utf-8", INDEX)),
            (true, "/app.js") => Some(("text/javascript; charset=utf-8", APP_JS)),
            _ => None,
        };
        if let Some((ty, body)) = file {
            let resp = http::Response::builder()
                .header(header::CONTENT_TYPE, ty)
                .header(header::CACHE_CONTROL, "no-cache")
                .body(tonic::body::Body::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(body.as_bytes()),
                )))
                .expect("a static response is well-formed");
            return Box::pin(async move { Ok(resp) });
        }
        let fut = self.inner.call(req);
        Box::pin(async move { Ok(fut.await?.map(tonic::body::Body::new)) })
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback_origin;

    #[test]
    fn loopback_origins() {
        for o in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "https://localhost:3000",
            "http://[::1]:80",
        ] {
            assert!(is_loopback_origin(o), "{o}");
        }
        for o in [
            "http://example.com",
            "https://127.0.0.1.example.com",
            "null",
            "http://10.0.0.1:80",
            "",
        ] {
            assert!(!is_loopback_origin(o), "{o}");
        }
    }
}
