//! Reflection for clients of the older protocol (`grpc.reflection.v1alpha`, what grpcurl 1.8,
//! Python's grpcio-reflection and Postman speak): list the services, fetch the file that defines
//! one, find a method in it, and call that method by the path reflection gave — as a generic
//! tool does, with no generated client.

mod common;

use common::{channel, start};
use feedline_proto::v1 as pb;
use prost::Message;
use tokio_stream::StreamExt;
use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

async fn ask(refl: &mut ServerReflectionClient<tonic::transport::Channel>, q: MessageRequest) -> MessageResponse {
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(q),
    };
    let mut resp = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("v1alpha reflection is served")
        .into_inner();
    resp.next().await.unwrap().unwrap().message_response.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_protocol_client_lists_describes_and_calls() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let ch = channel(&s).await;
    let mut refl = ServerReflectionClient::new(ch.clone());

    let MessageResponse::ListServicesResponse(list) = ask(&mut refl, MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "feedline.v1.UserService",
        "feedline.v1.PostService",
        "feedline.v1.FeedService",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }

    let MessageResponse::FileDescriptorResponse(files) = ask(
        &mut refl,
        MessageRequest::FileContainingSymbol("feedline.v1.UserService".into()),
    )
    .await
    else {
        panic!("expected file descriptors")
    };
    let file = files
        .file_descriptor_proto
        .iter()
        .map(|b| prost_types::FileDescriptorProto::decode(b.as_slice()).unwrap())
        .find(|f| f.package() == "feedline.v1")
        .expect("the feedline.v1 file");
    let service = file.service.iter().find(|s| s.name() == "UserService").unwrap();
    let method = service.method.iter().find(|m| m.name() == "CreateUser").unwrap();
    assert_eq!(method.input_type(), ".feedline.v1.CreateUserRequest");

    // Call it as a generic tool would: the path from the descriptor, bytes on the wire.
    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    let r: tonic::Response<pb::CreateUserResponse> = grpc
        .unary(
            tonic::Request::new(pb::CreateUserRequest {
                handle: "via_reflection".into(),
                private: false,
            }),
            path.parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect("the method reflection described answers");
    assert_eq!(r.into_inner().user.unwrap().handle, "via_reflection");
    s.shutdown().await.unwrap();
}
