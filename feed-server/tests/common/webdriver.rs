//! Just enough of the W3C WebDriver protocol to drive chromedriver from a test: a session, go to
//! a URL, find by CSS, type, click, read text and attributes. (The WebDriver client crates pull
//! in proc-macro features that would make cargo compile RocksDB's C++ a second time; these eight
//! JSON calls over the HTTP client tonic already ships do not.)

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session.
pub struct Session {
    http: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

async fn call(
    http: &Client<HttpConnector, Full<Bytes>>,
    method: http::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = http.request(req).await.map_err(|e| format!("{url}: {e}"))?;
    let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    match value.get("error") {
        Some(err) => Err(format!("{url}: {err}: {}", value["message"])),
        None => Ok(value),
    }
}

impl Session {
    /// A new session on the chromedriver at `port` with `capabilities`.
    pub async fn new(port: u16, capabilities: Value) -> Session {
        let http = Client::builder(TokioExecutor::new()).build_http();
        let v = call(
            &http,
            http::Method::POST,
            &format!("http://127.0.0.1:{port}/session"),
            Some(json!({ "capabilities": { "alwaysMatch": capabilities } })),
        )
        .await
        .expect("a browser session");
        let id = v["sessionId"].as_str().expect("a session id").to_string();
        Session {
            http,
            base: format!("http://127.0.0.1:{port}/session/{id}"),
        }
    }

    async fn cmd(&self, method: http::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        call(&self.http, method, &format!("{}{path}", self.base), body).await
    }

    /// Navigates to `url`.
    pub async fn goto(&self, url: &str) {
        self.cmd(http::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .expect("navigate");
    }

    /// The first element matching `css`.
    pub async fn find(&self, css: &str) -> Result<String, String> {
        let v = self
            .cmd(
                http::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        v[ELEMENT]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no element reference for {css}"))
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> Result<String, String> {
        let e = self.find(css).await?;
        let v = self.cmd(http::Method::GET, &format!("/element/{e}/text"), None).await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// An attribute of the first element matching `css`.
    pub async fn attr(&self, css: &str, name: &str) -> Result<Option<String>, String> {
        let e = self.find(css).await?;
        let v = self
            .cmd(http::Method::GET, &format!("/element/{e}/attribute/{name}"), None)
            .await?;
        Ok(v.as_str().map(str::to_string))
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) -> Result<(), String> {
        let e = self.find(css).await?;
        self.cmd(http::Method::POST, &format!("/element/{e}/click"), Some(json!({})))
            .await
            .map(drop)
    }

    /// Replaces the text of the input matching `css` with `text`.
    pub async fn type_into(&self, css: &str, text: &str) -> Result<(), String> {
        let e = self.find(css).await?;
        self.cmd(http::Method::POST, &format!("/element/{e}/clear"), Some(json!({})))
            .await?;
        self.cmd(
            http::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .map(drop)
    }

    /// Ends the session (the browser exits).
    pub async fn close(self) {
        let _ = self.cmd(http::Method::DELETE, "", None).await;
    }
}
