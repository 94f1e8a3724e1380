//! Remote inference on this machine: rembgfilter (u2netp, 640x480) with ONNX Runtime in process
//! against real Triton servers over gRPC and HTTP (pytriton's tritonserver, u2netp run by
//! onnxruntime in its Python backend), one server and two (`server=a,b`), with 1, 2, 4 and 8
//! requests in flight: frames per second, and the time per frame the element and the transport
//! add over the servers' own compute time (Triton's statistics extension), all measured in this
//! one run. Servers and element share the two cores, so the figures show overheads and overlap,
//! not a remote GPU's speed.
//!
//! `scripts/bench.sh remote`; BENCH_FRAMES=N (default 20).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{ms, reference, run_pipeline, triton_server};

/// Triton's count of u2netp inferences and nanoseconds of compute so far.
fn compute_stats(server: &triton_server::TritonServer) -> (u64, u64) {
    let body = ureq::get(&format!("http://{}/v2/models/u2netp/stats", server.http))
        .set("triton-access-token", &server.access_token)
        .call()
        .expect("Triton's statistics")
        .into_string()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    let compute = &stats["model_stats"][0]["inference_stats"]["compute_infer"];
    (
        compute["count"].as_u64().unwrap_or(0),
        compute["ns"].as_u64().unwrap_or(0),
    )
}

fn main() {
    gst::init().unwrap();
    gstneuralfx::plugin_register_static().unwrap();
    let frames = common::bench_frames(20);
    let home = std::env::var("U2NET_HOME").expect("U2NET_HOME (set by scripts/env.sh)");
    let model = Path::new(&home).join("u2netp.onnx");
    let venv = std::env::var("NEURALFX_TRITON_VENV").expect("NEURALFX_TRITON_VENV");
    let dir = std::env::temp_dir().join(format!("neuralfx-remote-bench-{}", std::process::id()));
    let start = |name: &str| {
        triton_server::start(
            &Path::new(&venv).join("bin/python"),
            &reference("triton_server.py"),
            &dir.join(name),
            &[("u2netp", &model)],
        )
    };
    let (server, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| start("a"));
        let second = scope.spawn(|| start("b"));
        (first.join().unwrap(), second.join().unwrap())
    });
    let servers = [&server, &second];
    let stats_of_both = || {
        servers.iter().fold((0, 0), |(count, ns), server| {
            let (c, n) = compute_stats(server);
            (count + c, ns + n)
        })
    };
    let pipeline = |rembgfilter: &str| {
        format!(
            "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,format=RGB,width=640,height=480 \
             ! {rembgfilter} ! fakesink name=sink"
        )
    };
    println!(
        "remote benchmark: u2netp at 640x480, {frames} frames per row, servers {} and {}",
        server.http, second.http
    );
    println!(
        "{:>34} {:>8} {:>10} {:>14} {:>14} {:>12}",
        "backend", "fps", "ms/frame", "server ms/run", "added ms/frame", "vs local"
    );
    let local = run_pipeline(&pipeline("rembgfilter model=u2netp"));
    let local_ms = ms(local.per_frame);
    println!(
        "{:>34} {:>8.2} {:>10.1} {:>14} {:>14} {:>12.3}",
        "onnxruntime",
        1000.0 / local_ms,
        local_ms,
        "-",
        "-",
        1.0
    );
    let endpoints = [
        ("triton", server.grpc.clone(), 1),
        ("triton", format!("{},{}", server.grpc, second.grpc), 2),
        ("triton-http", server.http.clone(), 1),
        ("triton-http", format!("{},{}", server.http, second.http), 2),
    ];
    for ((backend, address, count), in_flight) in endpoints
        .into_iter()
        .flat_map(|endpoint| [1, 2, 4, 8].map(|n| (endpoint.clone(), n)))
    {
        let (count_before, ns_before) = stats_of_both();
        let run = run_pipeline(&pipeline(&format!(
            "rembgfilter backend={backend} server=\"{address}\" model=u2netp requests-in-flight={in_flight}"
        )));
        let (count_after, ns_after) = stats_of_both();
        let runs = (count_after - count_before).max(1);
        let server_ms = ms(Duration::from_nanos((ns_after - ns_before) / runs));
        let per_frame = ms(run.per_frame);
        let servers = if count == 1 { "1 server" } else { "2 servers" };
        println!(
            "{:>34} {:>8.2} {:>10.1} {:>14.1} {:>14.1} {:>12.3}",
            format!("{backend}, {servers}, {in_flight} in flight"),
            1000.0 / per_frame,
            per_frame,
            server_ms,
            per_frame - server_ms,
            local_ms / per_frame
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
