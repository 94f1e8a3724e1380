//! The remote backend against a real Triton server (pytriton's tritonserver, started here on
//! 127.0.0.1 by tests/reference/triton_server.py, stopped when this test process ends): the same
//! masks and frames as ONNX Runtime in-process, several requests in flight with frames in order,
//! and every fault with a clear message within seconds.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::held_request::*;
use common::*;
use gst::prelude::*;

struct Server {
    http: String,
    grpc: String,
    unet: PathBuf,
    /// u2netp with float16 inputs and outputs (served as FLOAT16_MODEL).
    float16_io: PathBuf,
    server: triton_server::TritonServer,
}

/// The shared server's u2netp that takes and gives FP16 tensors, as TensorRT plans often do.
const FLOAT16_MODEL: &str = "u2netp-float16-io";

/// The shared server's u2netp that takes uint8 pixels and gives uint8 masks, its normalisation
/// inside (tests/reference/pixels_io.py), as exports with their processing built in do.
const UINT8_MODEL: &str = "u2netp-uint8-io";

/// A test model (64x64 in, the mean of its channels out) on the shared server and on a second
/// one, answering each request after PAIRED_DELAY: the two-server test counts its runs, and the
/// delay, which no machine goes under, keeps its frames coming when it stops one server.
const PAIRED: &str = "tiny-paired";
const PAIRED_DELAY: &str = "0.2";

/// The same test model, answering at once: for the tests of the transport, where what the model
/// computes does not matter and u2netp's runs would only load the machine.
const TINY: &str = "tiny";

/// A copy of u2netp on the shared server whose runs one test counts (no other test uses it).
const COUNTED: &str = "u2netp-counted";

/// The models of the shared server that the unload tests unload while playing, by protocol.
const UNLOADED: [(&str, &str); 2] = [
    ("triton-http", "u2netp-unload-http"),
    ("triton", "u2netp-unload-grpc"),
];

impl Server {
    /// Each protocol's `backend` value with this server's address for it.
    fn endpoints(&self) -> [(&'static str, &str); 2] {
        [("triton-http", &self.http), ("triton", &self.grpc)]
    }
}

fn u2netp() -> PathBuf {
    let home = std::env::var("U2NET_HOME")
        .unwrap_or_else(|_| format!("{}/.u2net", std::env::var("HOME").unwrap()));
    Path::new(&home).join("u2netp.onnx")
}

/// The served PAIRED model: the test model, with its delay.
fn paired_model() -> PathBuf {
    let mut argument = test_model("brightness.onnx").into_os_string();
    argument.push(format!("@{PAIRED_DELAY}"));
    argument.into()
}

/// The Triton server, started once for this test binary with u2netp, MediaPipe's selfie model
/// (NHWC in, a probability out), a U-Net-328-shaped lipsync model, copies of u2netp for each
/// protocol's test to unload and for counting runs, a test model at once and with a delay (and
/// the script's 'slow', 'slow-once' and 'failing' test models).
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        // Earlier runs' models and logs go once their test process is gone.
        let dir = temp_dir_of("triton", "");
        let unet = dir.join("unet_ave.onnx");
        run_reference(
            "make_unet328.py",
            &["ave", unet.to_str().unwrap(), "--narrow"],
        );
        let float16_io = dir.join("u2netp_float16_io.onnx");
        run_reference(
            "float16_io.py",
            &[u2netp().to_str().unwrap(), float16_io.to_str().unwrap()],
        );
        let uint8_io = dir.join("u2netp_uint8_io.onnx");
        run_reference(
            "pixels_io.py",
            &[u2netp().to_str().unwrap(), uint8_io.to_str().unwrap()],
        );
        let server = triton_server::start(
            &python_in("NEURALFX_TRITON_VENV"),
            &reference_script("triton_server.py"),
            &dir,
            &[
                ("u2netp", &u2netp()),
                (FLOAT16_MODEL, &float16_io),
                (UINT8_MODEL, &uint8_io),
                ("selfie", &u2netp().with_file_name("selfie.onnx")),
                ("unet", &unet),
                (UNLOADED[0].1, &u2netp()),
                (UNLOADED[1].1, &u2netp()),
                (COUNTED, &u2netp()),
                (PAIRED, &paired_model()),
                (TINY, &test_model("brightness.onnx")),
            ],
        );
        Server {
            http: server.http.clone(),
            grpc: server.grpc.clone(),
            unet,
            float16_io,
            server,
        }
    })
}

/// One output frame: its PTS and its alpha plane.
type AlphaFrame = (Option<gst::ClockTime>, Vec<u8>);

/// Alpha planes of `description` (ending in an appsink named "sink"), with each frame's PTS.
fn alphas(description: &str) -> Result<Vec<AlphaFrame>, String> {
    Ok(collect_samples(description)?
        .iter()
        .map(|sample| {
            let pts = sample.buffer().unwrap().pts();
            (pts, alpha_of(&packed_pixels(sample).1))
        })
        .collect())
}

fn photo_pipeline(name: &str, rembgfilter: &str) -> String {
    format!(
        "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format=RGB \
         ! {rembgfilter} ! video/x-raw,format=RGBA ! appsink name=sink",
        sample(name).display()
    )
}

#[test]
fn alpha_through_triton_grpc_and_http_matches_onnx_runtime_on_the_three_photos() {
    if without_set_up() {
        return;
    }
    let server = server();
    for name in ["astronaut", "chelsea", "coffee"] {
        let local = alphas(&photo_pipeline(name, "rembgfilter model=u2netp")).unwrap();
        assert_eq!(local.len(), 1);
        for (backend, address) in server.endpoints() {
            let remote = alphas(&photo_pipeline(
                name,
                &format!("rembgfilter backend={backend} server={address} model=u2netp"),
            ))
            .unwrap();
            assert_eq!(remote.len(), 1);
            let largest = largest_difference(&local[0].1, &remote[0].1);
            assert!(
                largest <= 1,
                "{name} over {backend}: alpha differs by up to {largest}"
            );
        }
    }
}

#[test]
fn the_selfie_model_through_triton_gives_the_alpha_of_onnx_runtime() {
    if without_set_up() {
        return;
    }
    // The catalog's selfie entry (NHWC input, probability output) gives the served model its
    // processing, as it gives the local file.
    let server = server();
    let local = alphas(&photo_pipeline("astronaut", "rembgfilter model=selfie")).unwrap();
    for (backend, address) in server.endpoints() {
        let remote = alphas(&photo_pipeline(
            "astronaut",
            &format!("rembgfilter backend={backend} server={address} model=selfie"),
        ))
        .unwrap();
        let largest = largest_difference(&local[0].1, &remote[0].1);
        assert!(largest <= 1, "{backend}: alpha differs by up to {largest}");
        assert!(
            remote[0].1.iter().any(|&a| a > 200) && remote[0].1.iter().any(|&a| a < 50),
            "{backend}: a real mask, not a constant"
        );
    }
}

/// How many requests Triton has answered for `model` (its statistics endpoint).
fn inferences_of(server: &Server, model: &str) -> u64 {
    inference_count(&server.server, model)
}

/// Requests of the test itself to Triton's HTTP endpoint: a server that stops answering fails the
/// test within seconds instead of holding it.
fn triton_http() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build()
}

fn inference_count(server: &triton_server::TritonServer, model: &str) -> u64 {
    let body = triton_http()
        .get(&format!("http://{}/v2/models/{model}/stats", server.http))
        .set("triton-access-token", &server.access_token)
        .call()
        .expect("Triton's statistics")
        .into_string()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    stats["model_stats"][0]["inference_count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no inference_count in {body}"))
}

#[test]
fn the_model_runs_once_a_frame_and_once_more_to_measure_a_live_streams_latency() {
    if without_set_up() {
        return;
    }
    // Counted by the server, so the measure run is seen: a file or still reports no latency
    // and pays nothing for it; a live stream measures one run before its first frame. Every frame
    // waits for its own mask (asynchronous=false) and the sink does not sync, so no live frame
    // leaves with an earlier mask or is dropped as late.
    let server = server();
    for (live, frames, measure) in [(false, 3, 0), (true, 2, 1)] {
        let before = inferences_of(server, COUNTED);
        let samples = collect_samples(&format!(
            "videotestsrc is-live={live} num-buffers={frames} \
             ! video/x-raw,format=RGB,width=64,height=48 \
             ! rembgfilter backend=triton-http server={} model={COUNTED} asynchronous=false \
             ! appsink name=sink sync=false",
            server.http
        ))
        .unwrap();
        assert_eq!(samples.len(), frames as usize, "live={live}");
        // The server may count an answer just after sending it: give it a moment to catch up.
        let expected = frames + measure;
        let mut runs = inferences_of(server, COUNTED) - before;
        for _ in 0..50 {
            if runs >= expected {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            runs = inferences_of(server, COUNTED) - before;
        }
        assert_eq!(runs, expected, "live={live}: {runs} model runs");
    }
}

#[test]
fn requests_in_flight_keep_every_frame_in_order_with_its_timestamps() {
    if without_set_up() {
        return;
    }
    let server = server();
    let video = |rembgfilter: &str| {
        format!(
            "videotestsrc num-buffers=10 pattern=ball ! video/x-raw,format=RGB,width=96,height=72 \
             ! {rembgfilter} ! appsink name=sink"
        )
    };
    // The order and timestamps are what is judged: the test model's mask (each pixel's mean
    // of its channels) follows the moving ball, so each frame's is its own, at no cost to the
    // machine.
    let local = alphas(&video(&format!(
        "rembgfilter model={}",
        test_model("brightness.onnx").display()
    )))
    .unwrap();
    for ((backend, address), in_flight) in server
        .endpoints()
        .into_iter()
        .flat_map(|endpoint| [(endpoint, 1), (endpoint, 3)])
    {
        let remote = alphas(&video(&format!(
            "rembgfilter backend={backend} server={address} model={TINY} requests-in-flight={in_flight}"
        )))
        .unwrap();
        assert_eq!(remote.len(), 10, "every frame comes out");
        for (i, ((local_pts, local_alpha), (pts, alpha))) in local.iter().zip(&remote).enumerate() {
            assert_eq!(pts, local_pts, "frame {i} keeps its timestamp");
            let largest = largest_difference(local_alpha, alpha);
            assert!(
                largest <= 1,
                "frame {i} ({backend}, {in_flight} in flight): differs by {largest}"
            );
        }
    }
}

#[test]
fn connections_are_kept_for_the_requests_in_flight_not_dialled_per_request() {
    if without_set_up() {
        return;
    }
    // Each HTTP request in flight needs a connection of its own; gRPC multiplexes them all on
    // one. Kept between frames, a connection is opened once, not once a round, even when the
    // answers come back together (as from a server that batches) and all go idle at once.
    const IN_FLIGHT: usize = 4;
    let server = server();
    for (backend, address) in server.endpoints() {
        init();
        let proxy = tcp_proxy::TcpProxy::start(address);
        proxy.answers_together(IN_FLIGHT);
        let frames = collect_samples(&format!(
            "videotestsrc num-buffers=24 ! video/x-raw,format=RGB,width=64,height=48 \
             ! rembgfilter backend={backend} server={} model={TINY} request-timeout=60000 \
               requests-in-flight={IN_FLIGHT} ! appsink name=sink",
            proxy.address
        ))
        .unwrap();
        assert_eq!(frames.len(), 24, "{backend}");
        let opened = proxy.connections_opened();
        eprintln!("{backend}: {opened} connections opened for 24 frames, {IN_FLIGHT} in flight");
        let most = if backend == "triton" { 1 } else { IN_FLIGHT };
        assert!(
            (1..=most).contains(&opened),
            "{backend}: {opened} connections opened for 24 frames, {IN_FLIGHT} in flight"
        );
    }
}

#[test]
fn a_server_that_is_not_there_is_named_within_seconds() {
    if without_set_up() {
        return;
    }
    // Port 9 (discard) on loopback: nothing listens there.
    let (err, took) = rembgfilter_error("backend=triton-http server=127.0.0.1:9 model=u2netp");
    assert!(
        err.contains("127.0.0.1:9") && err.contains("not live"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let (err, took) = rembgfilter_error("backend=triton server=127.0.0.1:9 model=u2netp");
    assert!(
        err.contains("127.0.0.1:9") && err.contains("cannot connect"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    for backend in ["triton-http", "triton"] {
        // The server is what to change, whether it is unset or not there.
        let (err, _) = rembgfilter_error(&format!("backend={backend} model=u2netp"));
        assert!(err.contains("property 'server'"), "{err}");
        let (err, _) = rembgfilter_error(&format!(
            "backend={backend} server=127.0.0.1:9 model=u2netp"
        ));
        assert!(
            err.starts_with("property 'server': ") && !err.contains("property 'model'"),
            "{err}"
        );
    }
}

#[test]
fn the_server_and_its_protocol_are_said_once_as_what_runs() {
    if without_set_up() {
        return;
    }
    let server = server();
    for ((backend, address), protocol) in server.endpoints().into_iter().zip(["HTTP", "gRPC"]) {
        let (runs_on, infos) = active_backend_and_infos(&format!(
            "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=64,height=48 \
             ! rembgfilter name=nf backend={backend} server={address} model=u2netp ! fakesink"
        ));
        assert_eq!(runs_on, format!("Triton at {address} ({protocol})"));
        let texts: Vec<&str> = infos.iter().map(|(text, _)| text.as_str()).collect();
        assert_eq!(texts, [format!("'u2netp' runs on {runs_on}")]);
        assert_eq!(infos[0].1, infos[0].0, "gst-launch prints the debug string");
    }
}

#[test]
fn an_unknown_model_is_named_with_the_servers_own_message() {
    if without_set_up() {
        return;
    }
    let server = server();
    for (backend, address) in server.endpoints() {
        let (err, _) = rembgfilter_error(&format!(
            "backend={backend} server={address} model=no-such-model"
        ));
        // Triton's own words for it, over either protocol.
        assert!(
            err.contains("'no-such-model'")
                && err.contains(address)
                && err.contains("is not found"),
            "{err}"
        );
    }
}

#[test]
fn a_request_past_its_timeout_stops_the_element_naming_it() {
    if without_set_up() {
        return;
    }
    let server = server();
    for (backend, address) in server.endpoints() {
        let (err, took) = rembgfilter_error(&format!(
            "backend={backend} server={address} model=slow request-timeout=1000"
        ));
        let lower = err.to_lowercase();
        assert!(
            err.contains("'slow'")
                && (lower.contains("timed out") || lower.contains("no answer within 1s")),
            "{err}"
        );
        assert!(took < Duration::from_secs(10), "took {took:?}");
    }
}

#[test]
fn a_frame_past_its_deadline_stops_the_element_naming_it() {
    if without_set_up() {
        return;
    }
    // 'slow' answers after 3 s; each try may take a minute, but the frame only a second.
    let server = server();
    for (backend, address) in server.endpoints() {
        let (err, _) = rembgfilter_error(&format!(
            "backend={backend} server={address} model=slow request-timeout=60000 retries=5 \
             frame-deadline=1000"
        ));
        assert!(
            err.contains("'slow'")
                && err.contains("no answer within the frame's deadline of 1000 ms")
                && err.contains("property 'frame-deadline'"),
            "{backend}: {err}"
        );
    }
}

#[test]
fn a_listed_server_that_cannot_be_reached_at_start_is_set_aside_with_a_warning() {
    if without_set_up() {
        return;
    }
    let unused_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = server();
    for (backend, address) in server.endpoints() {
        let absent = format!("127.0.0.1:{unused_port}");
        let (frames, warnings) = collect_samples_and_warnings(&format!(
            "videotestsrc num-buffers=3 ! video/x-raw,format=RGB,width=64,height=48 \
             ! rembgfilter backend={backend} server=\"{absent}, {address}\" model=u2netp \
               request-timeout=60000 ! appsink name=sink"
        ))
        .unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert_eq!(frames.len(), 3, "{backend}");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(&absent) && w.contains("set aside")),
            "{backend}: {warnings:?}"
        );
    }
}

#[test]
fn a_briefly_overloaded_server_is_retried_when_retries_ask_for_it() {
    if without_set_up() {
        return;
    }
    // 'slow-once-a' and '-b' answer their first request after 4 s, then at once: with a 3 s
    // timeout the first request fails and, with retries, the next one goes through (it waits
    // for the first to finish, which leaves it 2 s for the model on a busy machine). One
    // request at a time: with several, each retry would also queue behind the others' frames.
    let server = server();
    for ((backend, address), model) in server
        .endpoints()
        .into_iter()
        .zip(["slow-once-a", "slow-once-b"])
    {
        let (frames, warnings) = collect_samples_and_warnings(&format!(
            "videotestsrc num-buffers=3 ! video/x-raw,format=RGB,width=64,height=48 \
             ! rembgfilter backend={backend} server={address} model={model} \
               request-timeout=3000 retries=3 requests-in-flight=1 ! appsink name=sink"
        ))
        .unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert_eq!(frames.len(), 3, "{backend}");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(&format!("'{model}'")) && w.contains("retry 1 of 3")),
            "{backend}: {warnings:?}"
        );
    }
}

#[test]
fn a_servers_retry_after_is_waited_before_the_retry() {
    if without_set_up() {
        return;
    }
    // A gateway in front of the server answers the first inference with 503 and
    // `Retry-After: 2`: the retry waits the 2 s (its own pause would be 0.05-0.1 s), says so
    // on the bus, and the frame comes through.
    let server = server();
    let dir = temp_dir_of("triton", "-retry-after");
    let requests = dir.join("requests.jsonl");
    let proxy = start_reference_server(
        &python_in("NEURALFX_TRITON_VENV"),
        "unavailable_proxy.py",
        &[
            server.http.as_ref(),
            "1".as_ref(),
            "2".as_ref(),
            requests.as_os_str(),
        ],
        &dir,
        "unavailable-proxy",
    );
    let (frames, warnings) = collect_samples_and_warnings(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=64,height=48 \
         ! rembgfilter backend=triton-http server=127.0.0.1:{} model=u2netp \
           request-timeout=60000 retries=2 requests-in-flight=1 ! appsink name=sink",
        proxy.port
    ))
    .unwrap();
    assert_eq!(frames.len(), 2);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("HTTP 503")
                && w.contains("retry 1 of 2 in 2.0 s, as the server asked")),
        "{warnings:?}"
    );
    let logged: Vec<(f64, String)> = std::fs::read_to_string(&requests)
        .unwrap()
        .lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                entry["at"].as_f64().unwrap(),
                entry["answer"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let answers: Vec<&str> = logged.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(answers, ["refused", "forwarded", "forwarded"]);
    let waited = logged[1].0 - logged[0].0;
    assert!(waited >= 2.0, "retried {waited:.2} s after the refusal");
}

#[test]
fn the_servers_error_reaches_the_bus() {
    if without_set_up() {
        return;
    }
    let server = server();
    for (backend, address) in server.endpoints() {
        let (err, _) = rembgfilter_error(&format!(
            "backend={backend} server={address} model=failing retries=3"
        ));
        // The model's own failure is not retried: it would fail again.
        assert!(
            err.contains("'failing'") && err.contains("deliberate failure"),
            "{err}"
        );
    }
}

#[test]
fn lipsyncsrc_through_triton_gives_the_frames_of_onnx_runtime() {
    if without_set_up() {
        return;
    }
    let server = server();
    let frames =
        lipsync_frames_on_test_data(&server.unet.parent().unwrap().join("lipsync-data"), 4);
    let local = frames(&format!("model={}", server.unet.display()));
    assert_eq!(local.len(), 4);
    for (backend, address) in server.endpoints() {
        let remote = frames(&format!("backend={backend} server={address} model=unet"));
        assert_eq!(remote.len(), 4);
        for (i, (a, b)) in local.iter().zip(&remote).enumerate() {
            let psnr = psnr(a, b);
            assert!(psnr >= 50.0, "frame {i} over {backend}: {psnr:.1} dB");
        }
    }
}

fn run_pipeline_script(name: &str, args: &[&str], env: &[(&str, &str)]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines")
        .join(name);
    let output = Command::new(script)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{name} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn remote_cutout_script_writes_video_with_alpha_from_the_server() {
    if without_set_up() {
        return;
    }
    let server = server();
    let dir = server.unet.parent().unwrap();
    let (input, output) = (dir.join("input.mkv"), dir.join("remote-alpha.mkv"));
    write_astronaut_video(&input, 4, 160);
    run_pipeline_script(
        "remote-cutout.sh",
        &[
            &format!("grpc://{}", server.grpc),
            input.to_str().unwrap(),
            output.to_str().unwrap(),
            "requests-in-flight=2",
        ],
        &[],
    );
    let frames = collect_samples(&format!(
        "filesrc location={} ! matroskademux ! avdec_ffv1 ! videoconvert ! video/x-raw,format=RGBA \
         ! appsink name=sink",
        output.display()
    ))
    .unwrap();
    assert_eq!(frames.len(), 4);
    for frame in &frames {
        let alpha = alpha_of(&packed_pixels(frame).1);
        let clear = alpha.iter().filter(|&&a| a < 10).count();
        assert!(
            clear > alpha.len() / 10 && clear < alpha.len() * 9 / 10,
            "{clear} clear"
        );
    }
}

#[test]
fn webcam_remote_script_runs_live_on_the_server() {
    if without_set_up() {
        return;
    }
    let server = server();
    run_pipeline_script(
        "webcam-remote.sh",
        &[&server.http, "/dev/null", "model=u2netp"],
        &[
            ("SOURCE", "videotestsrc is-live=true num-buffers=10"),
            ("SINK", "fakesink sync=true"),
        ],
    );
    run_pipeline_script(
        "webcam-remote.sh",
        &[
            &format!("grpc://{}", server.grpc),
            "/dev/null",
            "model=u2netp",
            "asynchronous=false",
        ],
        &[
            ("SOURCE", "videotestsrc is-live=true num-buffers=10"),
            ("SINK", "fakesink sync=true"),
        ],
    );
}

/// A long remote rembgfilter stream of `model` on `address`, playing, three frames out.
fn stream_on(backend: &str, address: &str, model: &str) -> gst::Pipeline {
    let (pipeline, sink) = playing(&format!(
        "videotestsrc num-buffers=200 ! video/x-raw,format=RGB,width=64,height=48 \
         ! rembgfilter backend={backend} server={address} model={model} request-timeout=5000 \
         ! appsink name=sink"
    ));
    for _ in 0..3 {
        assert!(
            sink.try_pull_sample(gst::ClockTime::from_seconds(60))
                .is_some(),
            "{backend}: three frames of {model}"
        );
    }
    pipeline
}

/// The error that ends `pipeline` (within 30 s), and how long after `since` it was seen.
fn error_of(pipeline: gst::Pipeline, since: Instant) -> (String, Duration) {
    let error = pipeline
        .bus()
        .unwrap()
        .iter_timed(gst::ClockTime::from_seconds(30))
        .find_map(|message| match message.view() {
            gst::MessageView::Error(err) => Some(err.error().to_string()),
            gst::MessageView::Eos(..) => Some("EOS".into()),
            _ => None,
        })
        .expect("an error within 30 s");
    let took = since.elapsed();
    pipeline.set_state(gst::State::Null).unwrap();
    (error, took)
}

#[test]
fn a_server_that_goes_away_mid_stream_stops_the_element_naming_it() {
    if without_set_up() {
        return;
    }
    // A server of its own, stopped under a stream of each protocol.
    let server = triton_server::start(
        &python_in("NEURALFX_TRITON_VENV"),
        &reference_script("triton_server.py"),
        &temp_dir_of("triton", "-dying"),
        &[("u2netp", &u2netp())],
    );
    let streams = [("triton-http", &server.http), ("triton", &server.grpc)]
        .map(|(backend, address)| (backend, address, stream_on(backend, address, "u2netp")));
    server.stop();
    let stopped = Instant::now();
    for (backend, address, pipeline) in streams {
        let (error, took) = error_of(pipeline, stopped);
        assert!(error.contains(address.as_str()), "{backend}: {error}");
        // Within the request timeout (5 s) and a margin.
        assert!(
            took < Duration::from_secs(15),
            "{backend}: the error came after {took:?}"
        );
    }
}

/// Plays frames of the shared server's model for `backend` to unload, unloads the model while
/// no request is at the server, and returns the error that the next request ends the stream
/// with. (What Triton does with a request it holds while it unloads the model depends on how
/// busy the machine is: under load such a request can outlive its deadline. The test is of the
/// element, not of that race.)
fn error_after_unloading(backend: &str) -> String {
    let server = server();
    let (_, model) = UNLOADED.iter().find(|(b, _)| *b == backend).unwrap();
    let address = if backend == "triton" {
        &server.grpc
    } else {
        &server.http
    };
    // Every second frame has a request (frames 0 and 2 of the four pushed first); a frame
    // leaves once a later request needs its place, so frames 2 and 3 stay held.
    let (pipeline, sink) = playing(&format!(
        "appsrc name=src format=time \
           caps=video/x-raw,format=RGB,width=64,height=48,framerate=10/1 \
         ! rembgfilter backend={backend} server={address} model={model} request-timeout=5000 \
           requests-in-flight=1 mask-interval=2 ! appsink name=sink"
    ));
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let push = |index: u64| {
        let mut frame = gst::Buffer::from_mut_slice(vec![(index * 40) as u8; 64 * 48 * 3]);
        let frame_mut = frame.get_mut().unwrap();
        frame_mut.set_pts(gst::ClockTime::from_mseconds(100 * index));
        frame_mut.set_duration(gst::ClockTime::from_mseconds(100));
        src.push_buffer(frame).expect("appsrc takes the frame");
    };
    for index in 0..4 {
        push(index);
    }
    for index in 0..2 {
        assert!(
            sink.try_pull_sample(gst::ClockTime::from_seconds(60))
                .is_some(),
            "{backend}: frame {index} of {model}"
        );
    }
    // Both requests answered: none is at the server while it unloads the model.
    let waited = Instant::now();
    while inferences_of(server, model) < 2 {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "{backend}: Triton answered {} of 2 requests within a minute",
            inferences_of(server, model)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    triton_http()
        .post(&format!(
            "http://{}/v2/repository/models/{model}/unload",
            server.http
        ))
        .set("triton-access-token", &server.server.access_token)
        .send_string("{}")
        .expect("Triton unloads the model");
    let unloaded = Instant::now();
    let ready = || match triton_http()
        .get(&format!("http://{}/v2/models/{model}/ready", server.http))
        .call()
    {
        Ok(_) => true,
        // Triton answers an HTTP error status for a model that is not ready.
        Err(ureq::Error::Status(..)) => false,
        Err(e) => panic!("Triton's readiness of '{model}': {e}"),
    };
    while ready() {
        assert!(
            unloaded.elapsed() < Duration::from_secs(60),
            "Triton still calls '{model}' ready a minute after unloading it"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Instant::now();
    push(4);
    src.end_of_stream()
        .expect("appsrc takes the end of the stream");
    for index in 2..4 {
        assert!(
            sink.try_pull_sample(gst::ClockTime::from_seconds(60))
                .is_some(),
            "{backend}: frame {index}, answered before the unload"
        );
    }
    let (error, took) = error_of(pipeline, sent);
    assert!(error.contains(&format!("'{model}'")), "{backend}: {error}");
    assert!(
        took < Duration::from_secs(15),
        "{backend}: the error came after {took:?}"
    );
    // Triton now calls the whole server not ready (strict readiness counts every model), yet
    // its other models still serve: a new stream of u2netp starts and gets its frames.
    assert!(
        triton_http()
            .get(&format!("http://{}/v2/health/ready", server.http))
            .call()
            .is_err(),
        "a server with a model unloaded is not ready"
    );
    let frames = collect_samples(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=64,height=48 \
         ! rembgfilter backend={backend} server={address} model=u2netp ! appsink name=sink"
    ))
    .unwrap_or_else(|e| panic!("{backend}: {e}"));
    assert_eq!(frames.len(), 2, "{backend}");
    error
}

#[test]
fn a_model_unloaded_while_playing_over_grpc_stops_the_element_with_the_servers_message() {
    if without_set_up() {
        return;
    }
    let error = error_after_unloading("triton");
    assert!(error.contains("server answered"), "{error}");
}

#[test]
fn a_model_unloaded_while_playing_stops_the_element_with_the_servers_message() {
    if without_set_up() {
        return;
    }
    let error = error_after_unloading("triton-http");
    assert!(error.contains("HTTP 4"), "{error}");
}

#[test]
fn a_live_stream_through_grpc_gives_every_frame_its_own_mask_and_reports_the_latency() {
    if without_set_up() {
        return;
    }
    let server = server();
    let video = |live: bool, rembgfilter: &str| {
        format!(
            "videotestsrc is-live={live} num-buffers=8 pattern=ball \
             ! video/x-raw,format=RGB,width=96,height=72,framerate=10/1 \
             ! {rembgfilter} ! appsink name=sink"
        )
    };
    let local = alphas(&video(false, "rembgfilter model=u2netp")).unwrap();
    init();
    let (pipeline, sink) = playing(&video(
        true,
        &format!(
            "rembgfilter backend=triton server={} model=u2netp asynchronous=false \
             requests-in-flight=3",
            server.grpc
        ),
    ));
    let mut remote = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
        if remote.is_empty() {
            // Asked upstream of the sink (a sink that does not sync reports none itself).
            let mut query = gst::query::Latency::new();
            assert!(sink.static_pad("sink").unwrap().peer_query(&mut query));
            let (live, min, _) = query.result();
            // One request (measured at start) plus one frame time (100 ms at 10 fps).
            assert!(live && min >= gst::ClockTime::from_mseconds(100), "{min}");
        }
        remote.push(alpha_of(&packed_pixels(&sample).1));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(remote.len(), 8, "every live frame comes out");
    for (i, ((_, local), remote)) in local.iter().zip(&remote).enumerate() {
        let largest = largest_difference(local, remote);
        assert!(
            largest <= 1,
            "frame {i} has its own mask: differs by {largest}"
        );
    }
}

#[test]
fn the_readme_commands_for_a_triton_server_run_as_written_against_this_one() {
    if without_set_up() {
        return;
    }
    let server = server();
    // The README's example server, 10.0.0.5, is this one: gRPC on 8001, HTTP on 8000.
    let commands = readme::commands_naming(
        "10.0.0.5",
        &[
            ("10.0.0.5:8001", &server.grpc),
            ("10.0.0.5:8000", &server.http),
        ],
    );
    assert!(commands.len() >= 4, "{commands:?}");
    let dir = readme::workspace("readme-triton", false);
    for command in &commands {
        readme::run_command(command, &dir);
    }
}

/// The rembgfilter pipeline of the held-request tests: `backend` on the server at `address`.
fn u2netp_stream(backend: &str) -> impl FnOnce(&str) -> String {
    move |address| {
        format!(
            "videotestsrc num-buffers=200 ! video/x-raw,format=RGB,width=64,height=48 \
             ! rembgfilter backend={backend} server={address} model=u2netp \
               request-timeout=600000 requests-in-flight=1 ! appsink name=sink"
        )
    }
}

#[test]
fn stopping_does_not_wait_for_a_request_the_server_never_answers() {
    if without_set_up() {
        return;
    }
    let server = server();
    for (backend, address) in server.endpoints() {
        let (pipeline, _sink, _proxy) =
            stream_with_a_held_request(address, u2netp_stream(backend), backend);
        // Before requests were cancelled, this waited out the request timeout: 10 minutes.
        assert_stops_at_once(pipeline, backend);
    }
}

#[test]
fn a_flushing_seek_does_not_wait_for_a_held_request_and_frames_go_on_after_it() {
    if without_set_up() {
        return;
    }
    let server = server();
    for (backend, address) in server.endpoints() {
        let (pipeline, sink, _proxy) =
            stream_with_a_held_request(address, u2netp_stream(backend), backend);
        assert_seeks_at_once(&pipeline, backend);
        if backend == "triton-http" {
            // New requests take new connections, which pass: the first frame comes again,
            // without waiting behind the abandoned request. (gRPC's one connection is the
            // frozen one, so its frames stay held.)
            let sample = sink
                .try_pull_sample(gst::ClockTime::from_seconds(60))
                .expect("a frame after the seek");
            assert_eq!(sample.buffer().unwrap().pts(), Some(gst::ClockTime::ZERO));
        }
        assert_stops_at_once(pipeline, backend);
    }
}

#[test]
fn the_talking_head_elements_seek_and_stop_without_waiting_for_a_held_request() {
    if without_set_up() {
        return;
    }
    let server = server();
    let dir = temp_dir_of("triton", "-held-talking-head");
    let template = talking_head::template_set(&dir.join("data"), 200);
    let features = dir.join("data/features/ave.npy");
    let encoder = talking_head::encoder_model(&dir, "encoder.onnx", &[]);
    // lipsyncsrc over gRPC, the live lipsync over HTTP: each registers its requests' cancellation.
    let streams = [
        (
            "lipsyncsrc",
            &server.grpc,
            format!(
                "lipsyncsrc backend=triton model=unet template={} features={}",
                template.display(),
                features.display()
            ),
        ),
        (
            "lipsync",
            &server.http,
            format!(
                "audiotestsrc wave=sine num-buffers=200 samplesperbuffer=1600 \
                 ! audio/x-raw,rate=16000,channels=1 \
                 ! lipsync backend=triton-http model=unet template={} audio-encoder={}",
                template.display(),
                encoder.display()
            ),
        ),
    ];
    for (element, address, description) in streams {
        let (pipeline, _sink, _proxy) = stream_with_a_held_request(
            address,
            |proxy| {
                format!(
                    "{description} server={proxy} request-timeout=600000 requests-in-flight=1 \
                     ! video/x-raw,format=BGR ! appsink name=sink"
                )
            },
            element,
        );
        assert_seeks_at_once(&pipeline, element);
        assert_stops_at_once(pipeline, element);
    }
}

#[test]
fn a_model_with_float16_inputs_and_outputs_is_served_as_it_runs_here() {
    if without_set_up() {
        return;
    }
    // Converted at the wire as the local runtime converts at the model's edge.
    let server = server();
    let local = alphas(&photo_pipeline(
        "astronaut",
        &format!(
            "rembgfilter backend=onnxruntime model={}",
            server.float16_io.display()
        ),
    ))
    .unwrap();
    for (backend, address) in server.endpoints() {
        let remote = alphas(&photo_pipeline(
            "astronaut",
            &format!("rembgfilter backend={backend} server={address} model={FLOAT16_MODEL}"),
        ))
        .unwrap();
        let most = largest_difference(&local[0].1, &remote[0].1);
        assert!(most <= 1, "{backend}: alpha differs by {most}");
    }
}

#[test]
fn a_model_with_uint8_pixels_in_and_a_uint8_mask_out_gives_the_float_models_alpha() {
    if without_set_up() {
        return;
    }
    // The pixels go out rounded to bytes (input-mean 0, input-std 1/255: the 0..1 input times
    // 255) and the mask comes back in 1/255 steps; the float u2netp here is the reference.
    let server = server();
    for photo in ["astronaut", "coffee"] {
        let local = alphas(&photo_pipeline(photo, "rembgfilter model=u2netp")).unwrap();
        for (backend, address) in server.endpoints() {
            let remote = alphas(&photo_pipeline(
                photo,
                &format!(
                    "rembgfilter backend={backend} server={address} model={UINT8_MODEL} \
                     input-mean=0 input-std=0.003921569"
                ),
            ))
            .unwrap();
            let ((mean, iou), most) = (
                compare_masks(&remote[0].1, &local[0].1),
                largest_difference(&local[0].1, &remote[0].1),
            );
            eprintln!(
                "{photo} over {backend}: alpha differs by {mean:.3} on average, {most} at most, IoU {iou:.4}"
            );
            assert!(
                mean <= 1.0 && most <= 6,
                "{photo} over {backend}: {mean:.3}, {most}"
            );
        }
    }
}

#[test]
fn the_output_property_picks_the_tensor_here_and_on_the_server_alike() {
    if without_set_up() {
        return;
    }
    let server = server();
    // u2netp's fourth side output, a coarser mask than its first.
    let alpha = |rembgfilter: &str| {
        alphas(&photo_pipeline("astronaut", rembgfilter))
            .unwrap()
            .remove(0)
            .1
    };
    let first = alpha("rembgfilter backend=onnxruntime model=u2netp");
    let local = alpha("rembgfilter backend=onnxruntime model=u2netp output=1962");
    assert!(
        largest_difference(&first, &local) > 8,
        "output=1962 changed nothing"
    );
    for (backend, address) in server.endpoints() {
        let remote = alpha(&format!(
            "rembgfilter backend={backend} server={address} model=u2netp output=1962"
        ));
        let most = largest_difference(&local, &remote);
        assert!(most <= 1, "{backend}: alpha differs by {most}");
        let (err, _) = rembgfilter_error(&format!(
            "backend={backend} server={address} model=u2netp output=mask"
        ));
        assert!(
            err.contains("property 'output'")
                && err.contains("no output 'mask'")
                && err.contains("'1959'"),
            "{backend}: {err}"
        );
    }
}

#[test]
fn two_servers_share_the_frames_and_one_stopped_mid_stream_loses_none() {
    if without_set_up() {
        return;
    }
    // A server of its own, stopped mid-stream, and the shared one, which takes over; a model
    // that no other test uses on each, so that each one's runs can be counted.
    let a = triton_server::start(
        &python_in("NEURALFX_TRITON_VENV"),
        &reference_script("triton_server.py"),
        &temp_dir_of("triton", "-pair"),
        &[(PAIRED, &paired_model())],
    );
    let b = &server().server;
    const FRAMES: usize = 60;
    let streams = [
        ("triton-http", &a.http, &b.http),
        ("triton", &a.grpc, &b.grpc),
    ]
    .map(|(backend, first, second)| {
        let (pipeline, sink) = playing(&format!(
            "videotestsrc num-buffers={FRAMES} ! video/x-raw,format=RGB,width=64,height=48 \
                 ! rembgfilter backend={backend} server=\"{first}, {second}\" model={PAIRED} \
                   request-timeout=60000 requests-in-flight=2 ! appsink name=sink"
        ));
        let mut timestamps = Vec::new();
        for _ in 0..10 {
            let sample = sink
                .try_pull_sample(gst::ClockTime::from_seconds(60))
                .unwrap_or_else(|| panic!("{backend}: ten frames before the stop"));
            timestamps.push(sample.buffer().unwrap().pts().unwrap());
        }
        (backend, first.clone(), pipeline, sink, timestamps)
    });
    // Each protocol's two requests in flight went to both servers.
    let (served_a, served_b) = (inference_count(&a, PAIRED), inference_count(b, PAIRED));
    assert!(served_a > 0 && served_b > 0, "a {served_a}, b {served_b}");
    a.stop();
    for (backend, stopped, pipeline, sink, mut timestamps) in streams {
        while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
            timestamps.push(sample.buffer().unwrap().pts().unwrap());
        }
        let said: Vec<String> = pipeline
            .bus()
            .unwrap()
            .iter()
            .filter_map(|message| match message.view() {
                gst::MessageView::Error(m) => Some(format!("error: {}", m.error())),
                gst::MessageView::Warning(m) => Some(format!("warning: {}", m.error())),
                _ => None,
            })
            .collect();
        pipeline.set_state(gst::State::Null).unwrap();
        assert_eq!(timestamps.len(), FRAMES, "{backend}: {said:#?}");
        assert!(
            timestamps.windows(2).all(|pair| pair[0] < pair[1]),
            "{backend}: frames out of order"
        );
        assert!(
            said.iter().all(|s| !s.starts_with("error")),
            "{backend}: {said:#?}"
        );
        assert!(
            said.iter()
                .any(|s| s.contains(&format!("{stopped} set aside"))),
            "{backend}: {said:#?}"
        );
    }
    // B took over: it answered the rest.
    assert!(inference_count(b, PAIRED) > served_b);
}

#[test]
fn a_server_list_with_an_empty_entry_or_a_duplicate_is_refused_at_start() {
    if without_set_up() {
        return;
    }
    let server = server();
    for (list, words) in [
        (
            format!("{0},,{0}", server.http),
            "address 2 of the list is empty",
        ),
        (format!("{0},{0}", server.http), "is listed twice"),
    ] {
        let (err, _) = rembgfilter_error(&format!(
            "backend=triton-http server=\"{list}\" model=u2netp"
        ));
        assert!(
            err.contains("property 'server'") && err.contains(words),
            "{err}"
        );
    }
}

#[test]
fn a_connection_dropped_mid_answer_is_an_error_naming_the_server_not_a_hang() {
    if without_set_up() {
        return;
    }
    let server = server();
    for (backend, address) in server.endpoints() {
        let (pipeline, _sink, proxy) =
            stream_through_a_proxy(address, u2netp_stream(backend), backend);
        proxy.cut_answers();
        // Within 30 s, though the request timeout is 10 minutes: a cut answer is no wait.
        let (error, _) = error_of(pipeline, Instant::now());
        assert!(
            error.contains(&proxy.address) && error != "EOS",
            "{backend}: {error}"
        );
    }
}
