//! Models loaded once per process: elements that open the same file with the same options share
//! one loaded model (an ONNX Runtime session, an OpenVINO compiled model), held weakly so it lives
//! exactly as long as some element uses it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use super::InferenceError;

/// A model file (canonical) and the options it was loaded with.
type Key<Options> = (PathBuf, Options);

/// The loaded models of one kind, by canonical file and load options.
pub struct SharedModels<Options, Model> {
    loaded: Mutex<Vec<(Key<Options>, Weak<Model>)>>,
}

impl<Options: PartialEq + Clone, Model> SharedModels<Options, Model> {
    pub const fn new() -> Self {
        Self {
            loaded: Mutex::new(Vec::new()),
        }
    }

    /// The model of `path` with `options` that some element holds, or a new one from `load`
    /// (given the canonical path and the path as the user wrote it, for messages). The file must
    /// exist and be a regular file; two spellings of one path share one model.
    pub fn get_or_load(
        &self,
        path: &Path,
        options: Options,
        load: impl FnOnce(&Path, &str) -> Result<Model, InferenceError>,
    ) -> Result<Arc<Model>, InferenceError> {
        let display = path.display().to_string();
        let load_error = |reason: String| InferenceError::ModelLoad {
            path: display.clone(),
            reason,
        };
        let canonical = path.canonicalize().map_err(|e| load_error(e.to_string()))?;
        if !canonical.is_file() {
            return Err(load_error("not a regular file".into()));
        }
        let key = (canonical, options);
        // Loading happens under the lock: two elements starting together load once.
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(model) = loaded
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(model);
        }
        loaded.retain(|(_, weak)| weak.strong_count() > 0);
        let model = Arc::new(load(&key.0, &display)?);
        loaded.push((key, Arc::downgrade(&model)));
        Ok(model)
    }
}

impl<Options: PartialEq + Clone, Model> Default for SharedModels<Options, Model> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn one_model_per_file_and_options_while_held() {
        let dir = std::env::temp_dir().join(format!("neuralfx-shared-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("model.onnx");
        std::fs::write(&file, b"x").unwrap();
        let models = SharedModels::<u32, usize>::new();
        let loads = AtomicUsize::new(0);
        let load = |_: &Path, _: &str| Ok(loads.fetch_add(1, Ordering::SeqCst));
        let first = models.get_or_load(&file, 1, load).unwrap();
        // Another spelling of the same file, same options: the same model.
        let again = models
            .get_or_load(&dir.join("./model.onnx"), 1, load)
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let other_options = models.get_or_load(&file, 2, load).unwrap();
        assert!(!Arc::ptr_eq(&first, &other_options));
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        // Let go by everyone: loaded afresh.
        drop((first, again));
        models.get_or_load(&file, 1, load).unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 3);
        // Missing files and folders are named.
        let missing = models.get_or_load(&dir.join("none.onnx"), 1, load);
        assert!(
            matches!(missing, Err(InferenceError::ModelLoad { path, .. }) if path.ends_with("none.onnx"))
        );
        let folder = models.get_or_load(&dir, 1, load).unwrap_err().to_string();
        assert!(folder.contains("not a regular file"), "{folder}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
