//! The demo page in a real browser: headless Chromium (Debian's package, which
//! `scripts/bootstrap` installs) driven over WebDriver by chromedriver. Two browser sessions
//! sign up over gRPC-Web; one follows the other; a post published in the first appears in the
//! second's feed through the live stream (the page does not poll), and "mark read" sets the
//! reader's marker. Also: a CORS preflight from a listed origin is allowed and one from
//! elsewhere is not.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::start;
use common::webdriver::Session;

/// chromedriver, killed when the test ends (pass or panic).
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Driver {
    let bin = std::env::var("FEEDLINE_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    assert!(
        std::path::Path::new(&bin).exists(),
        "{bin} not found: ./scripts/bootstrap installs chromium and chromium-driver (./scripts/test runs it)"
    );
    let port = common::cluster::free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let d = Driver(child, port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

async fn browser(d: &Driver, profile: &std::path::Path) -> Session {
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": std::env::var("FEEDLINE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ],
        }
    });
    Session::new(d.1, caps).await
}

/// Waits until the element's text contains `want`.
async fn wait_text(c: &Session, css: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if c.text(css).await.is_ok_and(|t| t.contains(want)) {
            return;
        }
        if Instant::now() > deadline {
            let status = c.text("#status").await.unwrap_or_default();
            panic!("{css} never showed {want:?} (status: {status:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fill_and_submit(c: &Session, input: &str, text: &str) {
    c.type_into(input, text).await.unwrap();
    c.click(&format!("form:has({input}) button")).await.unwrap();
}

async fn sign_up(c: &Session, addr: SocketAddr, handle: &str) {
    c.goto(&format!("http://{addr}/")).await;
    fill_and_submit(c, "#handle", handle).await;
    wait_text(c, "#who", &format!("@{handle}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_made_in_one_tab_appears_live_in_a_followers_tab() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |c| c.web.page = true).await;
    let driver = chromedriver();
    let alice = browser(&driver, &dir.path().join("profile-a")).await;
    let bob = browser(&driver, &dir.path().join("profile-b")).await;

    sign_up(&alice, s.addr, "alice").await;
    sign_up(&bob, s.addr, "bob").await;
    fill_and_submit(&bob, "#followee", "alice").await;
    wait_text(&bob, "#status", "following @alice").await;
    wait_text(&bob, "#live", "live").await;

    fill_and_submit(&alice, "#text", "hello from the browser").await;
    wait_text(&alice, "#status", "published post").await;
    // Bob's page only hears of it through SubscribeHomeFeed over gRPC-Web.
    wait_text(&bob, "#feed", "hello from the browser").await;

    let bob_id = s.engine().user_by_handle("bob").unwrap().id;
    let post = bob.attr("#feed li", "data-post").await.unwrap().unwrap();
    bob.click("#feed li button").await.unwrap();
    wait_text(&bob, "#status", "read up to post").await;
    assert_eq!(
        s.engine().read_marker(bob_id).unwrap().map(|p| p.to_string()),
        Some(post)
    );

    alice.close().await;
    bob.close().await;
    drop(driver);
    s.shutdown().await.unwrap();
}

/// A CORS preflight for a gRPC-Web call from `origin`: the Access-Control-Allow-Origin it got.
fn preflight(addr: SocketAddr, origin: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "OPTIONS /feedline.v1.FeedService/GetHomeFeed HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type,x-grpc-web,authorization\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("access-control-allow-origin:")
            .map(|v| v.trim().to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_loopback_and_listed_origins_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |c| {
        c.web.cors_allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let allowed = |o: &str| preflight(s.addr, o);
    assert_eq!(
        allowed("http://127.0.0.1:8080").as_deref(),
        Some("http://127.0.0.1:8080")
    );
    assert_eq!(
        allowed("https://app.example.com").as_deref(),
        Some("https://app.example.com")
    );
    assert_eq!(allowed("https://evil.example.com"), None, "an unlisted origin");
    s.shutdown().await.unwrap();
}
