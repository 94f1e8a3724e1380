//! Remote inference on this machine: rembgfilter (u2netp, 640x480) with ONNX Runtime in process
//! against real Triton servers over gRPC and HTTP (pytriton's tritonserver, u2netp run by
//! onnxruntime in its Python backend), one server and two (`server=a,b`), with 1, 2, 4 and 8
//! requests in flight: frames per second, each request's round trip as the element measures it,
//! the time the request spent in the server (Triton's statistics extension: queue and compute),
//! and the difference, what the client and the transport add to each request; all measured in
//! this one run; then one of two servers stopped mid-stream: the frame rate before, the longest
//! gap, and the rate after. Servers and element share the two cores, so the figures show overheads and overlap,
//! not a remote GPU's speed.
//!
//! `scripts/bench.sh remote`; BENCH_FRAMES=N (default 20).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{ms, reference, run_pipeline, triton_server};
use gst::prelude::*;

/// Triton's count of u2netp requests so far and the nanoseconds they spent in the server in
/// all (queue, input, compute, output: its `success` statistic).
fn server_stats(server: &triton_server::TritonServer) -> (u64, u64) {
    let body = ureq::get(&format!("http://{}/v2/models/u2netp/stats", server.http))
        .set("triton-access-token", &server.access_token)
        .call()
        .expect("Triton's statistics")
        .into_string()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    let success = &stats["model_stats"][0]["inference_stats"]["success"];
    (
        success["count"].as_u64().unwrap_or(0),
        success["ns"].as_u64().unwrap_or(0),
    )
}

/// The element's model runs and the time inside them (for a server: each request's round trip).
fn round_trips(element: &gst::Element) -> (u64, u64) {
    let stats = element.property::<gst::Structure>("stats");
    (
        stats.get::<u64>("model-runs").unwrap_or(0),
        stats.get::<u64>("model-time").unwrap_or(0),
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
            let (c, n) = server_stats(server);
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
        "{:>34} {:>7} {:>9} {:>13} {:>13} {:>15} {:>9}",
        "backend",
        "fps",
        "ms/frame",
        "round trip ms",
        "in server ms",
        "client added ms",
        "vs local"
    );
    let local = run_pipeline(&pipeline("rembgfilter model=u2netp"));
    let local_ms = ms(local.per_frame);
    println!(
        "{:>34} {:>7.2} {:>9.1} {:>13} {:>13} {:>15} {:>9.3}",
        "onnxruntime",
        1000.0 / local_ms,
        local_ms,
        "-",
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
        let pipeline = gst::parse::launch(&pipeline(&format!(
            "rembgfilter name=nf backend={backend} server=\"{address}\" model=u2netp requests-in-flight={in_flight}"
        )))
        .unwrap();
        let run = common::time_pipeline(&pipeline, |_| {});
        let (count_after, ns_after) = stats_of_both();
        let element = pipeline
            .downcast_ref::<gst::Bin>()
            .unwrap()
            .by_name("nf")
            .unwrap();
        let (runs, round_trip_ns) = round_trips(&element);
        let round_trip = ms(Duration::from_nanos(round_trip_ns / runs.max(1)));
        let requests = (count_after - count_before).max(1);
        let in_server = ms(Duration::from_nanos((ns_after - ns_before) / requests));
        let per_frame = ms(run.per_frame);
        let servers = if count == 1 { "1 server" } else { "2 servers" };
        println!(
            "{:>34} {:>7.2} {:>9.1} {:>13.1} {:>13.1} {:>15.1} {:>9.3}",
            format!("{backend}, {servers}, {in_flight} in flight"),
            1000.0 / per_frame,
            per_frame,
            round_trip,
            in_server,
            round_trip - in_server,
            local_ms / per_frame
        );
    }
    // A server that goes away mid-stream: two servers, 4 requests in flight, one stopped after
    // `frames` frames. The frames keep coming from the other; how fast, right after and later.
    println!(
        "\none of two servers stopped after {frames} frames (4 in flight, {} frames in all):",
        3 * frames
    );
    println!(
        "{:>12} {:>12} {:>18} {:>16} {:>22}",
        "backend", "fps before", "longest gap ms", "fps after", "fps after, 2nd half"
    );
    let third = start("c");
    for (backend, survivor, stopped) in [
        ("triton", &server.grpc, (&second, &second.grpc)),
        ("triton-http", &server.http, (&third, &third.http)),
    ] {
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc num-buffers={} pattern=ball ! video/x-raw,format=RGB,width=640,height=480 \
             ! rembgfilter backend={backend} server=\"{survivor},{}\" model=u2netp \
               requests-in-flight=4 ! fakesink name=sink",
            3 * frames,
            stopped.1
        ))
        .unwrap();
        let stopped_at = std::sync::Arc::new(std::sync::Mutex::new(None));
        let (at, to_stop) = (stopped_at.clone(), stopped.0);
        let run = std::thread::scope(|scope| {
            let (tell, told) = std::sync::mpsc::channel();
            let stopping = scope.spawn(move || {
                if told.recv().is_ok() {
                    to_stop.stop();
                }
            });
            let run = common::time_pipeline(&pipeline, move |index| {
                if index + 1 == frames {
                    *at.lock().unwrap() = Some(std::time::Instant::now());
                    let _ = tell.send(());
                }
            });
            stopping.join().unwrap();
            run
        });
        let stop = stopped_at.lock().unwrap().expect("the stop came");
        let (before, after): (Vec<_>, Vec<_>) = run.arrived.iter().partition(|at| **at <= stop);
        let fps = |arrived: &[&std::time::Instant], from: std::time::Instant| {
            arrived.len() as f64 / (**arrived.last().unwrap() - from).as_secs_f64()
        };
        let longest_gap = run
            .arrived
            .windows(2)
            .filter(|pair| pair[1] > stop)
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or_default();
        let second_half = &after[after.len() / 2..];
        println!(
            "{:>12} {:>12.2} {:>18.1} {:>16.2} {:>22.2}",
            backend,
            fps(&before[1..], *before[0]),
            ms(longest_gap),
            fps(&after, stop),
            fps(&second_half[1..], *second_half[0]),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
