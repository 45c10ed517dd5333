//! Compiles the gRPC app's own lab.proto (crates/server/proto) with protox, as the server's
//! build does, into a client (the load of `protolab-bench grpc`) and a server (the plain tonic
//! peer `bench-peer-tonic`), so all three speak exactly the lab's service.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "../server/proto";
    let proto = "../server/proto/protolab/lab/v1/lab.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], [root])?;
    tonic_prost_build::configure()
        // No `connect` over tonic's transport Channel: the client runs over hyper directly.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
