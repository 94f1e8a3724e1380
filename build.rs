fn main() {
    gst_plugin_version_helper::info();
    #[cfg(feature = "triton-grpc")]
    generate_kserve_client();
}

/// The KServe v2 gRPC client, generated from the proto kept in the source tree. protoc comes
/// from the protoc-bin-vendored crate, so building needs no system protobuf compiler.
#[cfg(feature = "triton-grpc")]
fn generate_kserve_client() {
    let proto = "src/inference/triton/grpc_predict_v2.proto";
    println!("cargo:rerun-if-changed={proto}");
    let protoc = protoc_bin_vendored::protoc_bin_path()
        .expect("protoc-bin-vendored has a protoc for this platform");
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&[proto], &["src/inference/triton"])
        .expect("generating the KServe v2 gRPC client");
}
