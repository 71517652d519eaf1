//! Generates the etcd v3 API types and gRPC services from `proto/` with protox (a pure-Rust protobuf compiler),
//! so building needs no system `protoc`, and protobuf's JSON mapping for them with pbjson-build (serde impls, for
//! the JSON gateway): the original proto field names, as etcd's gateway writes them (grpc-gateway's `OrigName`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(
        ["etcdserverpb/rpc.proto", "v3lockpb/v3lock.proto", "v3electionpb/v3election.proto"],
        ["proto"],
    )?;
    let descriptors = prost::Message::encode_to_vec(&fds);
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        // etcd 3.4's gateway accepts (and ignores) fields a message does not have.
        .ignore_unknown_fields()
        .build(&[".etcdserverpb", ".mvccpb", ".authpb", ".v3lockpb", ".v3electionpb"])?;
    Ok(())
}
