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

/// A file beside the plugin that names the ONNX Runtime library to use (one absolute path):
/// `scripts/setup.sh --cuda` writes it to point at the GPU build in its venv, whose CUDA provider
/// libraries end in ".so" and so cannot sit in GStreamer's plugin folder.
pub const POINTER_FILE: &str = "neuralfx-onnxruntime.path";

/// The places to look, in order: `ORT_DYLIB_PATH`, the library [`POINTER_FILE`] names, a
/// `libonnxruntime.so*` beside the plugin, then the system loader.
pub fn candidate_paths(env_path: Option<&str>, plugin_path: Option<&Path>) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = env_path.filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(path));
    }
    candidates.extend(
        plugin_path
            .and_then(Path::parent)
            .and_then(|dir| read_pointer_file(&dir.join(POINTER_FILE))),
    );
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

/// The path in a [`POINTER_FILE`], read with a bound (anything longer than a path is not one).
fn read_pointer_file(file: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut named = Vec::new();
    std::fs::File::open(file)
        .ok()?
        .take(4096)
        .read_to_end(&mut named)
        .ok()?;
    let path = std::str::from_utf8(&named).ok()?.trim();
    (!path.is_empty()).then(|| PathBuf::from(path))
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

/// The CUDA and cuDNN libraries ONNX Runtime's CUDA provider opens by name, by file-name prefix.
/// Only these: NVIDIA's wheels also hold libraries (nvblas) that would take over other symbols.
const CUDA_LIBRARY_PREFIXES: [&str; 8] = [
    "libcudart.so.",
    "libcublasLt.so.",
    "libcublas.so.",
    "libnvJitLink.so.",
    "libnvrtc.so.",
    "libcufft.so.",
    "libcurand.so.",
    "libcudnn",
];

/// The `lib` folders of NVIDIA's runtime wheels installed beside an ONNX Runtime library from
/// the `onnxruntime-gpu` wheel (`site-packages/onnxruntime/capi/libonnxruntime.so.*` and
/// `site-packages/nvidia/*/lib`); none for a library installed any other way.
pub fn nvidia_wheel_folders(onnxruntime: &Path) -> Vec<PathBuf> {
    let site_packages = onnxruntime
        .canonicalize()
        .ok()
        .and_then(|path| Some(path.parent()?.parent()?.parent()?.to_path_buf()));
    let Some(nvidia) = site_packages.map(|dir| dir.join("nvidia")) else {
        return Vec::new();
    };
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&nvidia)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("lib"))
        .filter(|lib| lib.is_dir())
        .collect();
    folders.sort();
    folders
}

/// The CUDA libraries in `folders` that ONNX Runtime's CUDA provider needs.
pub fn cuda_libraries(folders: &[PathBuf]) -> Vec<PathBuf> {
    let mut libraries: Vec<PathBuf> = folders
        .iter()
        .flat_map(|folder| std::fs::read_dir(folder).into_iter().flatten().flatten())
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|name| {
                    name.contains(".so")
                        && CUDA_LIBRARY_PREFIXES
                            .iter()
                            .any(|prefix| name.starts_with(prefix))
                })
        })
        .collect();
    libraries.sort();
    libraries
}

static CUDA_PRELOAD: OnceLock<Result<usize, String>> = OnceLock::new();

/// Loads, once per process and for every later `dlopen` to find, the CUDA and cuDNN libraries
/// of NVIDIA's wheels beside the loaded ONNX Runtime (what `onnxruntime.preload_dlls()` does in
/// Python), so a GPU build installed by `setup.sh --cuda` needs no `LD_LIBRARY_PATH`. Returns how
/// many were loaded (0 where ONNX Runtime did not come from the wheel: the system's CUDA is then
/// used), or which ones would not load.
pub fn preload_cuda_libraries() -> Result<usize, String> {
    CUDA_PRELOAD
        .get_or_init(|| {
            let Some(onnxruntime) = loaded_library() else {
                return Ok(0);
            };
            let mut pending = cuda_libraries(&nvidia_wheel_folders(onnxruntime));
            let mut loaded = 0;
            // A library whose dependencies are not loaded yet fails; another round after the
            // rest have loaded takes it, whatever order the files are listed in.
            loop {
                let mut failures = Vec::new();
                let before = pending.len();
                pending.retain(|path| {
                    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
                    // SAFETY: NVIDIA's runtime libraries have no initialisers with preconditions;
                    // they stay loaded for the life of the process, as CUDA expects.
                    match unsafe { libloading::os::unix::Library::open(Some(path), flags) } {
                        Ok(library) => {
                            std::mem::forget(library);
                            loaded += 1;
                            false
                        }
                        Err(e) => {
                            // libloading's own text is only "dlopen failed"; the loader's
                            // reason is its source.
                            let reason = std::error::Error::source(&e)
                                .map_or_else(|| e.to_string(), |source| source.to_string());
                            failures.push(format!("{}: {reason}", path.display()));
                            true
                        }
                    }
                });
                if pending.is_empty() {
                    return Ok(loaded);
                }
                if pending.len() == before {
                    return Err(failures.join("; "));
                }
            }
        })
        .clone()
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
        // setup.sh --cuda's pointer to the GPU build comes after the variable, before the rest.
        std::fs::write(
            dir.join(POINTER_FILE),
            b"/venv/onnxruntime/capi/libonnxruntime.so.1.31.1\n",
        )
        .unwrap();
        let found = candidate_paths(None, Some(&dir.join("libgstneuralfx.so")));
        assert_eq!(
            found[..2],
            [
                PathBuf::from("/venv/onnxruntime/capi/libonnxruntime.so.1.31.1"),
                dir.join("libonnxruntime.so.1.31.1"),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cuda_libraries_are_found_beside_a_wheels_onnxruntime() {
        let dir = std::env::temp_dir().join(format!("neuralfx-cuda-{}", std::process::id()));
        let capi = dir.join("site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(capi.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        for (folder, files) in [
            (
                "cu13/lib",
                &[
                    "libcudart.so.13",
                    "libcublas.so.13",
                    "libnvblas.so.13",
                    "libcudart_static.a",
                ][..],
            ),
            ("cudnn/lib", &["libcudnn.so.9", "libcudnn_ops.so.9"][..]),
        ] {
            let lib = dir.join("site-packages/nvidia").join(folder);
            std::fs::create_dir_all(&lib).unwrap();
            for file in files {
                std::fs::write(lib.join(file), b"").unwrap();
            }
        }
        let folders = nvidia_wheel_folders(&capi.join("libonnxruntime.so.1.31.1"));
        assert_eq!(folders.len(), 2);
        let names: Vec<String> = cuda_libraries(&folders)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        // nvblas would take over BLAS symbols process-wide; static archives are not libraries.
        assert_eq!(
            names,
            [
                "libcublas.so.13",
                "libcudart.so.13",
                "libcudnn.so.9",
                "libcudnn_ops.so.9"
            ]
        );
        // An ONNX Runtime installed any other way has no wheel folders.
        assert!(nvidia_wheel_folders(Path::new("/usr/lib/libonnxruntime.so")).is_empty());
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
