//! `/metrics` as an operator scrapes it: latencies are histograms with buckets (no summaries,
//! whose per-process quantiles cannot be added up across a cluster), and every RPC is counted
//! by service, method and status code in the usual gRPC server shape.

mod common;

use std::time::{Duration, Instant};

use common::{channel, scrape, signup, start, with_token};
use feedline_proto::v1 as pb;
use feedline_proto::v1::feed_service_client::FeedServiceClient;
use feedline_proto::v1::user_service_client::UserServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latencies_are_histograms_and_rpcs_are_counted_by_code() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let s = start(dir.path(), |c| c.metrics_listen = Some(port)).await;
    let ch = channel(&s).await;
    let (a, tok) = signup(&ch, "ada").await;
    FeedServiceClient::new(ch.clone())
        .get_home_feed(with_token(
            pb::GetHomeFeedRequest {
                reader_id: a,
                page_size: 10,
                cursor: String::new(),
                ..Default::default()
            },
            &tok,
        ))
        .await
        .unwrap();
    let e = UserServiceClient::new(ch)
        .get_user(with_token(pb::GetUserRequest { user_id: 424_242 }, &tok))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    let want = [
        r#"grpc_server_handled_total{grpc_type="unary",grpc_service="feedline.v1.UserService",grpc_method="CreateUser",grpc_code="OK"} 1"#,
        r#"grpc_server_handled_total{grpc_type="unary",grpc_service="feedline.v1.UserService",grpc_method="GetUser",grpc_code="NotFound"} 1"#,
        r#"grpc_server_started_total{grpc_type="unary",grpc_service="feedline.v1.FeedService",grpc_method="GetHomeFeed"} 1"#,
        r#"grpc_server_handling_seconds_bucket{grpc_type="unary",grpc_service="feedline.v1.FeedService",grpc_method="GetHomeFeed",le="0.1"} 1"#,
        r#"feedline_feed_read_seconds_bucket{path="discovery",le="+Inf"} 1"#,
    ];
    // The exporter renders what was recorded up to the scrape; wait for the last call's record.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(port);
        if want.iter().all(|w| text.contains(w)) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "missing from /metrics: {:?}\n{text}",
            want.iter().filter(|w| !text.contains(*w)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!text.contains("quantile="), "a summary is exported:\n{text}");
    s.shutdown().await.unwrap();
}
