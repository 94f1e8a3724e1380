//! Turns the `model` property (a catalog name or a path) into a file on disk.

use std::path::{Path, PathBuf};

use super::catalog::{self, CatalogEntry};

/// A model file and, when it is a catalog model, its catalog entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel {
    pub path: PathBuf,
    pub entry: Option<&'static CatalogEntry>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LocateError {
    #[error("model file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("model {0} is a folder; expected an .onnx file")]
    Folder(PathBuf),
    #[error(
        "catalog model '{name}' ({file}) is in none of these folders: {}; \
         put it there (./scripts/setup.sh installs u2netp, u2netp-int8 and the selfie models, \
         with --test the ISNet ones), set U2NET_HOME, or set download=true for the models rembg \
         publishes",
        .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotDownloaded {
        name: String,
        file: String,
        searched: Vec<PathBuf>,
    },
    #[error(transparent)]
    Download(#[from] super::download::DownloadError),
    #[error("'{0}' is neither a catalog model ({names}) nor a path to an .onnx file", names = catalog::names().join(", "))]
    Unknown(String),
}

/// The folders rembg reads models from, in the order it reads them: `U2NET_HOME` (or
/// `~/.u2net`), then rembg's per-model folder under `REMBG_HOME` (or `~/.rembg`).
pub fn model_folders(model_name: &str) -> Vec<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = var("HOME").unwrap_or_else(|| PathBuf::from("."));
    let mut folders = Vec::new();
    match var("U2NET_HOME") {
        Some(dir) => folders.push(dir),
        None => folders.push(home.join(".u2net")),
    }
    let rembg_home = var("REMBG_HOME")
        .or_else(|| var("XDG_DATA_HOME").map(|d| d.join("rembg")))
        .unwrap_or_else(|| home.join(".rembg"));
    folders.push(rembg_home.join("models").join(model_name));
    folders
}

/// Resolves a catalog name or a file path; with `download`, a catalog model found in no folder
/// is fetched into the first one.
pub fn resolve(model: &str, download: bool) -> Result<ResolvedModel, LocateError> {
    resolve_reporting(model, download, &mut |_| {})
}

/// [`resolve`], with a download's progress reported to `progress`; a download that started
/// and failed ends with [`DownloadEvent::Failed`](super::download::DownloadEvent::Failed).
pub fn resolve_reporting(
    model: &str,
    download: bool,
    progress: &mut dyn FnMut(super::download::DownloadEvent),
) -> Result<ResolvedModel, LocateError> {
    if let Some(entry) = catalog::find(model) {
        let folders = model_folders(entry.name);
        if let Some(path) = folders
            .iter()
            .map(|folder| folder.join(entry.file_name))
            .find(|p| p.is_file())
        {
            return Ok(ResolvedModel {
                path,
                entry: Some(entry),
            });
        }
        if !download {
            return Err(LocateError::NotDownloaded {
                name: entry.name.to_string(),
                file: entry.file_name.to_string(),
                searched: folders,
            });
        }
        let mut started = false;
        let downloaded = super::download::download(entry, &folders[0], &mut |event| {
            started = true;
            progress(event)
        });
        if downloaded.is_err() && started {
            progress(super::download::DownloadEvent::Failed);
        }
        let path = downloaded.map_err(LocateError::Download)?;
        return Ok(ResolvedModel {
            path,
            entry: Some(entry),
        });
    }
    if !crate::location::names_a_file(model) {
        return Err(LocateError::Unknown(model.to_string()));
    }
    let path = Path::new(model);
    if path.is_dir() {
        return Err(LocateError::Folder(path.to_path_buf()));
    }
    if !path.exists() {
        return Err(LocateError::MissingFile(path.to_path_buf()));
    }
    // A renamed copy of a catalog model keeps its catalog profile: users export "u2net.onnx".
    let entry = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| catalog::CATALOG.iter().find(|e| e.file_name == n));
    Ok(ResolvedModel {
        path: path.to_path_buf(),
        entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_lists_the_catalog() {
        let err = resolve("u3net", false).unwrap_err();
        assert!(err.to_string().contains("u2netp, u2net"), "{err}");
    }

    #[test]
    fn missing_path_names_the_file() {
        let err = resolve("/nonexistent/model.onnx", false).unwrap_err();
        assert_eq!(
            err,
            LocateError::MissingFile("/nonexistent/model.onnx".into())
        );
    }

    #[test]
    fn custom_file_has_no_catalog_entry_unless_named_like_one() {
        let dir = std::env::temp_dir().join(format!("neuralfx-locate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let custom = dir.join("mine.onnx");
        let renamed = dir.join("silueta.onnx");
        std::fs::write(&custom, b"x").unwrap();
        std::fs::write(&renamed, b"x").unwrap();
        assert_eq!(
            resolve(custom.to_str().unwrap(), false).unwrap().entry,
            None
        );
        assert_eq!(
            resolve(renamed.to_str().unwrap(), false)
                .unwrap()
                .entry
                .unwrap()
                .name,
            "silueta"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
