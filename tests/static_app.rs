//! An application that links neuralfx itself: examples/static_app.rs, compiled into this test
//! program and run in a child process of it, with ORT_DYLIB_PATH (it cuts out frames) and
//! without it (it fails saying to set it, not pointing at a plugin folder it does not have).

use std::process::Command;

#[path = "../examples/static_app.rs"]
mod static_app;

/// Set in the child: run the example itself.
const CHILD: &str = "NEURALFX_STATIC_APP_CHILD";

fn run_child(with_ort_dylib_path: bool) -> std::process::Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(CHILD, "1");
    if !with_ort_dylib_path {
        command
            .env_remove("ORT_DYLIB_PATH")
            .env_remove("LD_LIBRARY_PATH");
    }
    command.output().unwrap()
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        if let Err(err) = static_app::main() {
            eprintln!("{err}");
            std::process::exit(1);
        }
        return;
    }

    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        // A bare clone: no ONNX Runtime was installed for the application to use.
        println!(
            "test a_statically_linked_application_cuts_out_with_ort_dylib_path ... skipped: it \
             needs ./scripts/test.sh's ONNX Runtime (ORT_DYLIB_PATH)"
        );
        return;
    }
    let output = run_child(true);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("3 frames"),
        "with ORT_DYLIB_PATH: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("test a_statically_linked_application_cuts_out_with_ort_dylib_path ... ok");

    let output = run_child(false);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        println!(
            "test without_ort_dylib_path_the_application_is_told_to_set_it ... skipped: the \\
             system loader finds an ONNX Runtime of its own here"
        );
        return;
    }
    assert!(
        stderr.contains("ORT_DYLIB_PATH") && stderr.contains("plugin_register_static"),
        "without ORT_DYLIB_PATH: {stderr}"
    );
    assert!(!stderr.contains("beside the plugin"), "{stderr}");
    println!("test without_ort_dylib_path_the_application_is_told_to_set_it ... ok");
}
