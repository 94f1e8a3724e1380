//! The reference scripts of a test binary run in forks of one Python process per venv
//! (tests/reference/forkserver.py), which imports what the scripts before imported: rembg,
//! pymatting and librosa cost 1-1.5 s of CPU to import, paid once a binary instead of once a
//! script. Where the server cannot start, the scripts run as processes of their own.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// What a script run said: its exit status (negative: the signal that ended it; None: the server
/// itself did not answer), stdout and stderr.
pub struct Ran {
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

struct ForkServer {
    socket: PathBuf,
    dir: PathBuf,
    runs: AtomicUsize,
    /// Stopped and waited for as this process exits (`stop_servers`).
    process: Mutex<Child>,
}

/// Runs `script` with `args` as `python script args...` would, in a fork of `python`'s server
/// (started on first use); None where no server runs for `python`.
pub fn run(python: &Path, script: &Path, args: &[&str]) -> Option<Ran> {
    server_of(python).map(|server| server.run(script, args))
}

type Servers = Mutex<HashMap<PathBuf, Option<Arc<ForkServer>>>>;

static SERVERS: OnceLock<Servers> = OnceLock::new();

fn server_of(python: &Path) -> Option<Arc<ForkServer>> {
    let mut servers = SERVERS
        .get_or_init(|| {
            unsafe extern "C" {
                fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
            }
            // SAFETY: registers a plain function, run once as the process exits.
            unsafe { atexit(stop_servers) };
            Default::default()
        })
        .lock()
        .unwrap();
    servers
        .entry(python.to_path_buf())
        .or_insert_with(|| match ForkServer::start(python) {
            Ok(server) => Some(Arc::new(server)),
            Err(reason) => {
                super::tell(
                    "",
                    &format!("reference scripts run one process each: {reason}"),
                );
                None
            }
        })
        .clone()
}

/// Stops the servers and waits for them as the test binary exits, so that the CPU time of the
/// scripts they ran is counted with the binary's (scripts/lib/test_lanes.py prints it).
extern "C" fn stop_servers() {
    let Some(servers) = SERVERS.get() else {
        return;
    };
    let Ok(servers) = servers.lock() else {
        return;
    };
    for server in servers.values().flatten() {
        if let Ok(mut process) = server.process.lock() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl ForkServer {
    fn start(python: &Path) -> Result<ForkServer, String> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = super::temp_dir_of(
            "forkserver",
            &format!("-{}", STARTED.fetch_add(1, Ordering::Relaxed)),
        );
        let socket = dir.join("socket");
        let ready = dir.join("ready");
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let mut process = Command::new(python)
            .arg(super::reference_script("forkserver.py"))
            .arg(&ready)
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", python.display()))?;
        if let Err(e) =
            super::wait_until_ready(&mut process, &ready, &log_path, Duration::from_secs(30))
        {
            let _ = process.kill();
            let _ = process.wait();
            return Err(format!("forkserver.py {e}"));
        }
        Ok(ForkServer {
            socket,
            dir,
            runs: AtomicUsize::new(0),
            process: Mutex::new(process),
        })
    }

    fn run(&self, script: &Path, args: &[&str]) -> Ran {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let stdout = self.dir.join(format!("{run}.out"));
        let stderr = self.dir.join(format!("{run}.err"));
        let mut argv = vec![script.to_string_lossy().into_owned()];
        argv.extend(args.iter().map(|arg| arg.to_string()));
        let request = serde_json::json!({ "argv": argv, "stdout": stdout, "stderr": stderr });
        let status = (|| -> std::io::Result<Option<i32>> {
            let mut connection = UnixStream::connect(&self.socket)?;
            connection.write_all(format!("{request}\n").as_bytes())?;
            let mut answer = String::new();
            BufReader::new(connection).read_line(&mut answer)?;
            Ok(serde_json::from_str::<serde_json::Value>(&answer)
                .ok()
                .and_then(|answer| answer["status"].as_i64())
                .map(|status| status as i32))
        })()
        .unwrap_or_else(|e| panic!("the reference forkserver ({}): {e}", self.socket.display()));
        let ran = Ran {
            status,
            stdout: std::fs::read(&stdout).unwrap_or_default(),
            stderr: std::fs::read(&stderr).unwrap_or_default(),
        };
        let _ = std::fs::remove_file(&stdout);
        let _ = std::fs::remove_file(&stderr);
        ran
    }
}
