//! Finds and loads the ONNX Runtime shared library, once per process.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use std::sync::OnceLock;

static PLUGIN_PATH: OnceLock<PathBuf> = OnceLock::new();
static ENVIRONMENT: OnceLock<(ort::environment::Environment, PathBuf)> = OnceLock::new();
// Serialises attempts, so two elements starting together do not race to load two libraries.
static LOAD_LOCK: Mutex<()> = Mutex::new(());

/// Records the path of the plugin's own shared object, so ONNX Runtime can be found beside it.
pub fn set_plugin_path(path: PathBuf) {
    let _ = PLUGIN_PATH.set(path);
}

/// The plugin's own shared object, when neuralfx was loaded as a plugin.
pub fn plugin_path() -> Option<&'static Path> {
    PLUGIN_PATH.get().map(PathBuf::as_path)
}

#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "could not load the ONNX Runtime library (version 1.{} or newer needed); tried:\n{}\n{}",
    ort::MINOR_VERSION,
    .attempts.join("\n"),
    .hint
)]
pub struct RuntimeError {
    pub attempts: Vec<String>,
    /// What to do about it, for a plugin or for an application that links neuralfx.
    pub hint: String,
}

/// What a user can do when no library loads: a plugin looks beside its own `.so`; an
/// application that links the crate (`plugin_register_static`) has no such folder and needs
/// `ORT_DYLIB_PATH`.
pub fn missing_library_hint(plugin_path: Option<&Path>) -> String {
    match plugin_path.and_then(Path::parent) {
        Some(folder) => format!(
            "Set ORT_DYLIB_PATH to the absolute path of libonnxruntime.so, or put it beside \
             the plugin in {}",
            folder.display()
        ),
        None => "This program links neuralfx itself (plugin_register_static), so there is no \
                 plugin folder to look in: set ORT_DYLIB_PATH to the absolute path of \
                 libonnxruntime.so (./scripts/setup.sh installs one as \
                 ~/.cache/neuralfx/onnxruntime/libonnxruntime.so.1.31.1), or install it where \
                 the system loader finds it"
            .into(),
    }
}

/// The places to look, in order: `ORT_DYLIB_PATH`, a `libonnxruntime.so*` beside the plugin,
/// then the system loader.
pub fn candidate_paths(env_path: Option<&str>, plugin_path: Option<&Path>) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = env_path.filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(path));
    }
    if let Some(dir) = plugin_path.and_then(Path::parent) {
        let mut beside: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            })
            .collect();
        // Newest version first, comparing "1.31.1" and "1.9.0" as numbers.
        beside.sort_by_key(|path| std::cmp::Reverse(library_version(path)));
        candidates.extend(beside);
    }
    candidates.push(PathBuf::from("libonnxruntime.so.1"));
    candidates.push(PathBuf::from("libonnxruntime.so"));
    candidates
}

/// The numeric version in a file name like `libonnxruntime.so.1.31.1`; empty when it has none.
fn library_version(path: &Path) -> Vec<u32> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("libonnxruntime.so"))
        .map(|rest| {
            rest.split('.')
                .filter_map(|part| part.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Loads ONNX Runtime if it is not loaded yet and returns the process-wide environment.
pub fn environment() -> Result<&'static ort::environment::Environment, RuntimeError> {
    if let Some((env, _)) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let _guard = LOAD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((env, _)) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let env_path = std::env::var("ORT_DYLIB_PATH").ok();
    let mut attempts = Vec::new();
    for candidate in candidate_paths(env_path.as_deref(), PLUGIN_PATH.get().map(PathBuf::as_path)) {
        match ort::init_from(&candidate) {
            Ok(builder) => match builder.with_name("neuralfx").build() {
                Ok(env) => {
                    let _ = ENVIRONMENT.set((env, candidate));
                    return Ok(&ENVIRONMENT.get().expect("just set").0);
                }
                Err(e) => attempts.push(format!("  {}: {e}", candidate.display())),
            },
            Err(e) => attempts.push(format!("  {}: {e}", candidate.display())),
        }
    }
    Err(RuntimeError {
        attempts,
        hint: missing_library_hint(PLUGIN_PATH.get().map(PathBuf::as_path)),
    })
}

/// The library that was loaded, if any.
pub fn loaded_library() -> Option<&'static Path> {
    ENVIRONMENT.get().map(|(_, path)| path.as_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_path_comes_first_then_plugin_folder_then_system() {
        let dir = std::env::temp_dir().join(format!("neuralfx-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libonnxruntime.so.1.9.0"), b"").unwrap();
        std::fs::write(dir.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        std::fs::write(dir.join("libgstother.so"), b"").unwrap();
        let found = candidate_paths(
            Some("/opt/ort/libonnxruntime.so"),
            Some(&dir.join("libgstneuralfx.so")),
        );
        assert_eq!(
            found,
            vec![
                PathBuf::from("/opt/ort/libonnxruntime.so"),
                dir.join("libonnxruntime.so.1.31.1"),
                dir.join("libonnxruntime.so.1.9.0"),
                PathBuf::from("libonnxruntime.so.1"),
                PathBuf::from("libonnxruntime.so"),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn empty_env_path_is_ignored() {
        let found = candidate_paths(Some(""), None);
        assert_eq!(
            found,
            vec![
                PathBuf::from("libonnxruntime.so.1"),
                PathBuf::from("libonnxruntime.so")
            ]
        );
    }

    #[test]
    fn the_hint_fits_a_plugin_and_an_application() {
        let plugin =
            missing_library_hint(Some(Path::new("/usr/lib/gstreamer-1.0/libgstneuralfx.so")));
        assert!(
            plugin.contains("beside the plugin in /usr/lib/gstreamer-1.0"),
            "{plugin}"
        );
        let application = missing_library_hint(None);
        assert!(
            application.contains("ORT_DYLIB_PATH")
                && application.contains("plugin_register_static"),
            "{application}"
        );
        assert!(!application.contains("beside the plugin"));
    }
}
