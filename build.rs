fn main() {
    gst_plugin_version_helper::info();
    rerun_when_the_commit_changes();
    #[cfg(feature = "triton-grpc")]
    generate_kserve_client();
}

/// The version gst-inspect-1.0 shows names the commit, but any `rerun-if-changed` line (the
/// proto's below) stops cargo from rerunning this script for other changes: watch the files
/// that move when a commit is made or checked out.
fn rerun_when_the_commit_changes() {
    let git = std::path::Path::new(".git");
    if !git.is_dir() {
        return;
    }
    println!("cargo:rerun-if-changed=.git/HEAD");
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
        && let Some(branch) = head.trim().strip_prefix("ref: ")
    {
        println!("cargo:rerun-if-changed=.git/{branch}");
    }
    if git.join("packed-refs").exists() {
        println!("cargo:rerun-if-changed=.git/packed-refs");
    }
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
