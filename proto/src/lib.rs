//! The `feedline.v1` gRPC contract: message types, client stubs and server traits generated
//! from `proto/feedline/v1/feedline.proto`, and the descriptor set that server reflection serves.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

pub mod codec;

/// Package `feedline.v1`.
pub mod v1 {
    tonic::include_proto!("feedline.v1");
}

/// The encoded `FileDescriptorSet` of the contract, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("feedline_descriptor");
