//! Starts a real Triton server (tests/reference/triton_server.py: pytriton's tritonserver on
//! 127.0.0.1) and waits until every model is loaded. Shared by the tests and the benchmarks. The
//! server stops by itself when the process that started it ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TritonServer {
    /// `127.0.0.1:PORT` of the HTTP endpoint.
    pub http: String,
    /// `127.0.0.1:PORT` of the gRPC endpoint.
    pub grpc: String,
    /// The `triton-access-token` of its statistics and other restricted endpoints.
    pub access_token: String,
    /// Where its log and ready file are, and room for the caller's files.
    pub dir: PathBuf,
    /// The server script; it stops by itself when its holder's process ends.
    process: Mutex<Child>,
}

/// Serves each `(name, model.onnx)` (plus the script's 'slow' and 'failing' models) with the
/// Python of the Triton venv; `dir` gets the log. Panics with the log if it does not start.
pub fn start(python: &Path, script: &Path, dir: &Path, models: &[(&str, &Path)]) -> TritonServer {
    start_with_options(python, script, dir, &[], models)
}

/// As [`start`], with the script's `options` (`--restrict-inference`).
pub fn start_with_options(
    python: &Path,
    script: &Path,
    dir: &Path,
    options: &[&str],
    models: &[(&str, &Path)],
) -> TritonServer {
    std::fs::create_dir_all(dir).unwrap();
    let ready = dir.join("ready");
    let _ = std::fs::remove_file(&ready);
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = Command::new(python);
    command.arg(script).args(options).arg(&ready);
    for (name, model) in models {
        command.arg(format!("{name}={}", model.display()));
    }
    let process = command
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("start tests/reference/triton_server.py");
    let process = Mutex::new(process);
    let deadline = Instant::now() + Duration::from_secs(240);
    let ports = loop {
        if let Ok(ports) = std::fs::read_to_string(&ready) {
            break ports;
        }
        if let Ok(Some(status)) = process.lock().unwrap().try_wait() {
            panic!(
                "the Triton server ended ({status}): {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the Triton server did not start in 240 s: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut fields = ports.split_whitespace();
    let http_port = fields.next().expect("ports in the ready file");
    let grpc_port = fields.next().expect("ports in the ready file");
    let access_token = fields.next().unwrap_or_default().to_string();
    TritonServer {
        http: format!("127.0.0.1:{http_port}"),
        grpc: format!("127.0.0.1:{grpc_port}"),
        access_token,
        dir: dir.to_path_buf(),
        process,
    }
}

impl TritonServer {
    /// Stops the server now (SIGTERM: it shuts tritonserver down on its way out), as a server
    /// that goes away mid-stream does.
    pub fn stop(&self) {
        let process = self.process.lock().unwrap();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(process.id().to_string())
            .status();
    }
}
