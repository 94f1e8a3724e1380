//! The SageMaker backend through the official AWS SDK against a SageMaker runtime stand-in on
//! 127.0.0.1 (tests/reference/sagemaker_server.py: it checks each request's SigV4 signature with
//! botocore and forwards tensors to a real Triton server, as a Triton-based endpoint does): the
//! same masks and frames as ONNX Runtime in process, and every fault with AWS's own words.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::held_request::*;
use common::*;
use gst::prelude::*;

const ACCESS_KEY: &str = "AKIDNEURALFXTEST";
const SECRET_KEY: &str = "neuralfx-test-secret-key";
const REGION: &str = "eu-test-1";

struct Servers {
    /// `http://127.0.0.1:PORT` of the SageMaker stand-in with the test credentials.
    sagemaker: String,
    /// The same stand-in, expecting another secret: every request's signature is wrong there.
    wrong_secret: String,
    unet: PathBuf,
    _triton: triton_server::TritonServer,
    _processes: Vec<Mutex<Child>>,
}

fn u2netp() -> PathBuf {
    let home = std::env::var("U2NET_HOME")
        .unwrap_or_else(|_| format!("{}/.u2net", std::env::var("HOME").unwrap()));
    Path::new(&home).join("u2netp.onnx")
}

/// The AWS SDK reads credentials from the standard chain: here, the test credentials in the
/// environment and nothing from the user's own AWS files, instance role or region.
fn use_test_credentials() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: every test calls this first and waits for it here, before any thread of this
        // process reads the environment through the AWS SDK or GStreamer.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
            std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/neuralfx-aws-config");
            std::env::set_var(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/neuralfx-aws-credentials",
            );
            for name in [
                "AWS_SESSION_TOKEN",
                "AWS_PROFILE",
                "AWS_REGION",
                "AWS_DEFAULT_REGION",
                "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
            ] {
                std::env::remove_var(name);
            }
        }
    });
}

/// Starts the stand-in expecting `secret`, in front of the Triton at `triton`.
fn start_stand_in(dir: &Path, name: &str, triton: &str, secret: &str) -> (String, Child) {
    let ready = dir.join(format!("{name}.ready"));
    let _ = std::fs::remove_file(&ready);
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let mut child = Command::new(venv_python())
        .arg(reference_script("sagemaker_server.py"))
        .args([ready.to_str().unwrap(), triton, ACCESS_KEY, secret, REGION])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("start tests/reference/sagemaker_server.py");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(port) = std::fs::read_to_string(&ready) {
            return (format!("http://127.0.0.1:{}", port.trim()), child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the SageMaker stand-in ended ({status}): {}",
                std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the SageMaker stand-in did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn servers() -> &'static Servers {
    use_test_credentials();
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let dir = temp_dir_of("sagemaker", "");
        let unet = dir.join("unet_ave.onnx");
        run_reference(
            "make_unet328.py",
            &["ave", unet.to_str().unwrap(), "--narrow"],
        );
        let triton = triton_server::start(
            &python_in("NEURALFX_TRITON_VENV"),
            &reference_script("triton_server.py"),
            &dir,
            &[("u2netp", &u2netp()), ("unet", &unet)],
        );
        let (sagemaker, right) = start_stand_in(&dir, "sagemaker", &triton.http, SECRET_KEY);
        let (wrong_secret, wrong) =
            start_stand_in(&dir, "wrong-secret", &triton.http, "another-secret");
        Servers {
            sagemaker,
            wrong_secret,
            unet,
            _triton: triton,
            _processes: vec![Mutex::new(right), Mutex::new(wrong)],
        }
    })
}

impl Drop for Servers {
    fn drop(&mut self) {
        for process in &self._processes {
            let _ = process.lock().unwrap().kill();
        }
    }
}

/// rembgfilter properties for `endpoint` on the stand-in at `url`.
fn on(url: &str, endpoint: &str) -> String {
    format!("backend=sagemaker endpoint={endpoint} endpoint-url={url} region={REGION}")
}

fn alpha_of_photo(name: &str, rembgfilter: &str) -> Vec<u8> {
    let samples = collect_samples(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format=RGB \
         ! rembgfilter {rembgfilter} ! video/x-raw,format=RGBA ! appsink name=sink",
        sample(name).display()
    ))
    .unwrap();
    assert_eq!(samples.len(), 1);
    alpha_of(&packed_pixels(&samples[0]).1)
}

#[test]
fn alpha_through_a_sagemaker_endpoint_matches_onnx_runtime_on_the_three_photos() {
    if without_set_up() {
        return;
    }
    let servers = servers();
    for name in ["astronaut", "chelsea", "coffee"] {
        let local = alpha_of_photo(name, "model=u2netp");
        let remote = alpha_of_photo(
            name,
            &format!("model=u2netp {}", on(&servers.sagemaker, "u2netp")),
        );
        let largest = largest_difference(&local, &remote);
        assert!(largest <= 1, "{name}: alpha differs by up to {largest}");
    }
}

#[test]
fn the_endpoint_is_said_once_as_what_runs_not_the_local_file_read_for_its_shapes() {
    if without_set_up() {
        return;
    }
    let servers = servers();
    for (endpoint, payload) in [("u2netp", "tensor"), ("rembg-u2netp", "png")] {
        let (runs_on, infos) = active_backend_and_infos(&format!(
            "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=64,height=48 \
             ! rembgfilter name=nf model=u2netp {} payload={payload} ! fakesink",
            on(&servers.sagemaker, endpoint)
        ));
        assert_eq!(
            runs_on,
            format!("the SageMaker endpoint {endpoint} ({payload} payload)")
        );
        let texts: Vec<&str> = infos.iter().map(|(text, _)| text.as_str()).collect();
        assert_eq!(texts, [format!("the model runs on {runs_on}")]);
    }
}

#[test]
fn requests_in_flight_to_sagemaker_keep_every_frame_in_order() {
    if without_set_up() {
        return;
    }
    let servers = servers();
    let video = |properties: &str| {
        collect_samples(&format!(
            "videotestsrc num-buffers=8 pattern=ball ! video/x-raw,format=RGB,width=96,height=72 \
             ! rembgfilter model=u2netp {properties} ! appsink name=sink"
        ))
        .unwrap()
    };
    let local = video("");
    let remote = video(&format!(
        "{} requests-in-flight=3",
        on(&servers.sagemaker, "u2netp")
    ));
    assert_eq!(remote.len(), 8, "every frame comes out");
    for (i, (a, b)) in local.iter().zip(&remote).enumerate() {
        assert_eq!(a.buffer().unwrap().pts(), b.buffer().unwrap().pts());
        let largest = largest_difference(
            &alpha_of(&packed_pixels(a).1),
            &alpha_of(&packed_pixels(b).1),
        );
        assert!(largest <= 1, "frame {i}: differs by {largest}");
    }
}

#[test]
fn lipsyncsrc_through_sagemaker_gives_the_frames_of_onnx_runtime() {
    if without_set_up() {
        return;
    }
    let servers = servers();
    let frames =
        lipsync_frames_on_test_data(&servers.unet.parent().unwrap().join("lipsync-data"), 3);
    let model = format!("model={}", servers.unet.display());
    let local = frames(&model);
    let remote = frames(&format!("{model} {}", on(&servers.sagemaker, "unet")));
    assert_eq!(local.len(), 3);
    assert_eq!(remote.len(), 3);
    for (i, (a, b)) in local.iter().zip(&remote).enumerate() {
        let psnr = psnr(a, b);
        assert!(psnr >= 50.0, "frame {i}: {psnr:.1} dB");
    }
}

fn rembg_error(properties: &str) -> (String, Duration) {
    use_test_credentials();
    rembgfilter_error(&format!("model=u2netp {properties}"))
}

#[test]
fn a_wrong_signature_is_refused_with_awss_own_words() {
    if without_set_up() {
        return;
    }
    let servers = servers();
    let (err, _) = rembg_error(&on(&servers.wrong_secret, "u2netp"));
    assert!(
        err.contains("InvalidSignatureException") && err.contains("'u2netp'"),
        "{err}"
    );
}

#[test]
fn the_containers_error_reaches_the_bus_as_a_model_error() {
    if without_set_up() {
        return;
    }
    let servers = servers();
    // Triton's 'failing' model raises; SageMaker reports that as ModelError with the
    // container's status and message. It is not retried.
    let (err, _) = rembg_error(&format!("{} retries=2", on(&servers.sagemaker, "failing")));
    assert!(
        err.contains("ModelError") && err.contains("deliberate failure"),
        "{err}"
    );
}

#[test]
fn an_unknown_endpoint_is_a_validation_error_naming_it() {
    if without_set_up() {
        return;
    }
    let servers = servers();
    let (err, _) = rembg_error(&on(&servers.sagemaker, "no-such-endpoint"));
    assert!(
        err.contains("ValidationError")
            && err.contains("no-such-endpoint")
            && !err.contains("property 'model'"),
        "{err}"
    );
}

#[test]
fn throttling_is_retried_when_retries_ask_for_it_and_an_error_otherwise() {
    if without_set_up() {
        return;
    }
    let servers = servers();
    let (err, _) = rembg_error(&on(&servers.sagemaker, "throttled-once-a"));
    assert!(err.contains("ThrottlingException"), "{err}");

    let (samples, warnings) = collect_samples_and_warnings(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=64,height=48 \
         ! rembgfilter model=u2netp {} retries=2 ! appsink name=sink",
        on(&servers.sagemaker, "throttled-once-b")
    ))
    .unwrap();
    assert_eq!(samples.len(), 2);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("ThrottlingException") && w.contains("retry 1 of 2")),
        "{warnings:?}"
    );
}

#[test]
fn stopping_and_seeking_do_not_wait_for_a_request_the_endpoint_never_answers() {
    if without_set_up() {
        return;
    }
    let servers = servers();
    let stand_in = servers.sagemaker.trim_start_matches("http://");
    let (pipeline, _sink, _proxy) = stream_with_a_held_request(
        stand_in,
        |proxy| {
            format!(
                "videotestsrc num-buffers=200 ! video/x-raw,format=RGB,width=64,height=48 \
                 ! rembgfilter model=u2netp {} request-timeout=600000 requests-in-flight=1 \
                 ! appsink name=sink",
                on(&format!("http://{proxy}"), "u2netp")
            )
        },
        "sagemaker",
    );
    // The SDK's call is dropped, not waited for: before cancellation, 10 minutes each.
    assert_seeks_at_once(&pipeline, "sagemaker");
    assert_stops_at_once(pipeline, "sagemaker");
}

#[test]
fn no_aws_secret_or_session_token_appears_in_messages_or_the_debug_log() {
    if without_set_up() {
        return;
    }
    // gst-launch-1.0 with every debug category at LOG and every bus message printed, the
    // credentials (a session token too) in its environment: served, refused, retried.
    const SESSION_TOKEN: &str = "neuralfx-test-session-token-7e1d";
    let servers = servers();
    let runs = [
        (on(&servers.sagemaker, "u2netp"), "Got EOS"),
        (
            on(&servers.wrong_secret, "u2netp"),
            "InvalidSignatureException",
        ),
        (
            format!(
                "{} retries=1",
                on(&servers.sagemaker, "throttled-once-secrets")
            ),
            "retry 1 of 1",
        ),
    ];
    for (properties, expected) in runs {
        let (_, printed) = gst_launch(
            &format!(
                "-m videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=64,height=48 \
                 ! rembgfilter model=u2netp {properties} ! fakesink"
            ),
            &[
                ("AWS_SESSION_TOKEN", SESSION_TOKEN.as_ref()),
                ("GST_DEBUG", "*:6".as_ref()),
                ("GST_DEBUG_NO_COLOR", "1".as_ref()),
            ],
        );
        assert!(
            printed.contains(expected) && printed.contains("rembgfilter"),
            "{properties}: no '{expected}' in {} bytes printed",
            printed.len()
        );
        for secret in [SECRET_KEY, SESSION_TOKEN] {
            let leaks: Vec<&str> = printed.lines().filter(|l| l.contains(secret)).collect();
            assert!(leaks.is_empty(), "{properties}: {leaks:#?}");
        }
    }
}

#[test]
fn a_request_past_its_timeout_is_named() {
    if without_set_up() {
        return;
    }
    let servers = servers();
    let (err, took) = rembg_error(&format!(
        "{} request-timeout=1000",
        on(&servers.sagemaker, "slow")
    ));
    assert!(
        err.contains("'slow'") && err.contains("no answer within 1s"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn missing_settings_and_an_absent_service_are_named_within_seconds() {
    if without_set_up() {
        return;
    }
    use_test_credentials();
    // Nothing listens on port 9 of loopback.
    let (err, took) = rembg_error(&on("http://127.0.0.1:9", "u2netp"));
    assert!(err.contains("http://127.0.0.1:9"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let (err, _) = rembg_error("backend=sagemaker region=eu-test-1");
    assert!(err.contains("property 'endpoint'"), "{err}");
    let (err, _) = rembg_error("backend=sagemaker endpoint=u2netp endpoint-url=http://127.0.0.1:9");
    assert!(err.contains("no AWS region"), "{err}");
}

#[test]
fn a_recurrent_model_is_refused_on_a_server_at_start() {
    if without_set_up() {
        return;
    }
    use_test_credentials();
    // Its state would have to travel with every request: refused before any is sent (the
    // endpoint's address is a port nothing listens on).
    let stand_in = test_model("recurrent_matting.onnx");
    let (err, took) = rembgfilter_error(&format!(
        "model={} {}",
        stand_in.display(),
        on("http://127.0.0.1:9", "rvm")
    ));
    assert!(
        err.contains("property 'backend'") && err.contains("recurrent model"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_tensor_request_over_the_endpoints_limit_is_refused_at_start() {
    if without_set_up() {
        return;
    }
    use_test_credentials();
    // A 1024x1024 float32 input (rembg's 1024 models) is 12.6 MB a request; a real-time
    // endpoint takes 6 MiB. Found at start, with what to do, not by the first frame failing.
    let model = test_model("rembg_1024.onnx");
    let properties = format!(
        "model={} {}",
        model.display(),
        on("http://127.0.0.1:9", "isnet")
    );
    let (err, took) = rembgfilter_error(&properties);
    assert!(
        err.contains("property 'max-request-bytes'")
            && err.contains("12.6 MB")
            && err.contains("[1,3,1024,1024]")
            && err.contains("payload=jpeg"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Raised for an endpoint that takes more, the start goes on to the endpoint itself.
    let (err, _) = rembgfilter_error(&format!("{properties} max-request-bytes=20000000"));
    assert!(!err.contains("max-request-bytes"), "{err}");
    // u2netp's 1.2 MB requests pass the default.
    let (err, _) = rembg_error(&on("http://127.0.0.1:9", "u2netp"));
    assert!(!err.contains("max-request-bytes"), "{err}");
    // The tensors come from the file itself (no runtime opens it): a file that is no model is
    // named as such.
    let not_onnx = test_model("not_onnx.onnx");
    let (err, _) = rembgfilter_error(&format!(
        "model={} {}",
        not_onnx.display(),
        on("http://127.0.0.1:9", "isnet")
    ));
    assert!(
        err.contains("not_onnx.onnx") && err.contains("not an ONNX model"),
        "{err}"
    );
}

/// rembgfilter properties for a picture endpoint of the stand-in (Python rembg behind it).
fn picture_endpoint(payload: &str, endpoint: &str) -> String {
    format!("{} payload={payload}", on(&servers().sagemaker, endpoint))
}

#[test]
fn cutouts_from_a_png_picture_endpoint_match_python_rembg_on_the_three_photos() {
    if without_set_up() {
        return;
    }
    // The endpoint runs Python rembg on the PNG it gets; rembgfilter's own u2netp matches
    // Python rembg within 1, so the two agree within 1.
    for name in ["astronaut", "chelsea", "coffee"] {
        let local = alpha_of_photo(name, "model=u2netp");
        let remote = alpha_of_photo(name, &picture_endpoint("png", "rembg-u2netp"));
        let largest = largest_difference(&local, &remote);
        assert!(largest <= 1, "{name}: alpha differs by up to {largest}");
    }
}

#[test]
fn every_form_of_mask_answer_gives_the_same_alpha() {
    if without_set_up() {
        return;
    }
    // A grey PNG, an RGBA cutout (its alpha), raw uint8 and raw float32: the same mask.
    let grey = alpha_of_photo("chelsea", &picture_endpoint("png", "rembg-u2netp"));
    for form in [
        "rembg-u2netp-cutout",
        "rembg-u2netp-raw8",
        "rembg-u2netp-raw32",
    ] {
        let other = alpha_of_photo("chelsea", &picture_endpoint("png", form));
        assert_eq!(largest_difference(&grey, &other), 0, "{form}");
    }
}

#[test]
fn a_jpeg_picture_endpoint_gives_nearly_the_same_mask() {
    if without_set_up() {
        return;
    }
    let local = alpha_of_photo("astronaut", "model=u2netp");
    let remote = alpha_of_photo("astronaut", &picture_endpoint("jpeg", "rembg-u2netp"));
    let (mean, iou) = compare_masks(&remote, &local);
    assert!(mean < 3.0 && iou > 0.97, "mean |d| {mean:.2}, IoU {iou:.3}");
}

#[test]
fn mask_controls_and_modes_apply_to_an_endpoints_mask() {
    if without_set_up() {
        return;
    }
    // threshold=128 turns the endpoint's soft mask into 0 / 255, as it does a model's.
    let hard = alpha_of_photo(
        "coffee",
        &format!("{} threshold=128", picture_endpoint("png", "rembg-u2netp")),
    );
    assert!(hard.iter().all(|&a| a == 0 || a == 255));
    assert!(hard.contains(&0) && hard.contains(&255));
    // mode=mask gives the mask itself, at the frame's size.
    let samples = collect_samples(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format=RGB \
         ! rembgfilter mode=mask {} ! video/x-raw,format=GRAY8 ! appsink name=sink",
        sample("coffee").display(),
        picture_endpoint("png", "rembg-u2netp")
    ))
    .unwrap();
    let (info, mask) = packed_pixels(&samples[0]);
    let soft = alpha_of_photo("coffee", &picture_endpoint("png", "rembg-u2netp"));
    assert_eq!(mask.len(), (info.width() * info.height()) as usize);
    assert_eq!(largest_difference(&mask, &soft), 0);
}

#[test]
fn an_answer_that_is_no_mask_is_named() {
    if without_set_up() {
        return;
    }
    // A container that answers JSON: the element says what came instead of a mask.
    let (err, _) = rembg_error(&picture_endpoint("png", "rembg-u2netp-json"));
    assert!(
        err.contains("application/json") && err.contains("neither a PNG or JPEG mask"),
        "{err}"
    );
    let (err, _) = rembg_error(&picture_endpoint("png", "rembg-no-such"));
    assert!(err.contains("ValidationError"), "{err}");
    // The talking heads send tensors only: they have no payload to choose.
    for factory in ["lipsyncsrc", "lipsync"] {
        let element = gst::ElementFactory::make(factory).build().unwrap();
        assert!(element.find_property("payload").is_none(), "{factory}");
        assert!(element.find_property("endpoint").is_some(), "{factory}");
    }
}

#[test]
fn the_readme_command_for_a_sagemaker_endpoint_runs_as_written_against_the_stand_in() {
    if without_set_up() {
        return;
    }
    let servers = servers();
    // The README's endpoint, in its region, is the stand-in's u2netp: the SDK reaches it through
    // AWS_ENDPOINT_URL, as a user would reach a private endpoint.
    let commands = readme::commands_naming(
        "my-u2netp",
        &[("my-u2netp", "u2netp"), ("eu-west-1", REGION)],
    );
    assert_eq!(commands.len(), 1, "{commands:?}");
    let dir = readme::workspace("readme-sagemaker", false);
    readme::run_command_with(
        &commands[0],
        &dir,
        &[("AWS_ENDPOINT_URL", &servers.sagemaker)],
    );
}

#[test]
fn target_model_variant_component_and_custom_attributes_route_each_request() {
    if without_set_up() {
        return;
    }
    let servers = servers();
    let expected = alpha_of_photo("astronaut", &on(&servers.sagemaker, "u2netp"));
    // Each endpoint of the stand-in answers only when its header arrived as set.
    for (endpoint, routing) in [
        ("multi-model", "target-model=u2netp.tar.gz"),
        ("components", "inference-component=u2netp"),
        ("needs-attributes", "custom-attributes=\"tenant=acme\""),
        ("u2netp", "target-variant=AllTraffic"),
    ] {
        let alpha = alpha_of_photo(
            "astronaut",
            &format!("{} {routing}", on(&servers.sagemaker, endpoint)),
        );
        assert!(alpha == expected, "{endpoint} {routing}");
    }
    // Without them, or with another value, SageMaker's own refusal names what is wrong.
    for (endpoint, routing, words) in [
        ("multi-model", "", &["TargetModel is required"][..]),
        ("components", "", &["Inference Component Name"]),
        (
            "needs-attributes",
            "custom-attributes=\"tenant=other\"",
            &["ModelError", "unknown tenant: tenant=other"],
        ),
        (
            "u2netp",
            "target-variant=blue",
            &["ValidationError", "variant blue", "variant 'blue'"],
        ),
    ] {
        let (err, _) = rembg_error(&format!("{} {routing}", on(&servers.sagemaker, endpoint)));
        assert!(
            words.iter().all(|w| err.contains(w)),
            "{endpoint} {routing}: {err}"
        );
    }
}
