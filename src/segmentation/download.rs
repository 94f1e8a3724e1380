//! Fetches a catalog model that is not on disk yet, for users with internet: checksum-verified
//! and written atomically, so a download cut off half-way never leaves a file that looks like a
//! model.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::catalog::{CatalogEntry, Checksum};

/// Replaces rembg's release URL prefix (for mirrors, and for tests against a local server).
pub const BASE_URL_ENV: &str = "NEURALFX_MODEL_BASE_URL";
/// Seconds a stalled download waits for data before giving up (default 30); also the window
/// over which the minimum rate is measured.
pub const TIMEOUT_ENV: &str = "NEURALFX_DOWNLOAD_TIMEOUT";
/// Seconds a whole download may take (default 3600).
pub const DEADLINE_ENV: &str = "NEURALFX_DOWNLOAD_DEADLINE";
/// Bytes per second a download must keep up over each timeout window (default 1024), so a
/// server that trickles bytes fails instead of holding the element's start for hours.
pub const MIN_RATE_ENV: &str = "NEURALFX_DOWNLOAD_MIN_RATE";
/// A partial file older than this is removed whoever wrote it.
const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DownloadError {
    #[error("downloading {url} failed: {reason}")]
    Transfer { url: String, reason: String },
    #[error(
        "downloading {url} gave a file with {algorithm} {found}, not {expected}; nothing was kept"
    )]
    Checksum {
        url: String,
        algorithm: &'static str,
        expected: String,
        found: String,
    },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// The checksum of a download, computed as its bytes arrive.
enum RunningDigest {
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
}

impl RunningDigest {
    fn new(checksum: &Checksum) -> Self {
        match checksum {
            Checksum::Md5(_) => Self::Md5(<md5::Md5 as md5::Digest>::new()),
            Checksum::Sha256(_) => Self::Sha256(<sha2::Sha256 as sha2::Digest>::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Md5(digest) => md5::Digest::update(digest, bytes),
            Self::Sha256(digest) => sha2::Digest::update(digest, bytes),
        }
    }

    /// Lowercase hex, as the catalog writes checksums.
    fn finish(self) -> String {
        let bytes: Vec<u8> = match self {
            Self::Md5(digest) => md5::Digest::finalize(digest).to_vec(),
            Self::Sha256(digest) => sha2::Digest::finalize(digest).to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Where `entry` is downloaded from: its release file name under `BASE_URL_ENV`, or its own URL.
pub fn source_url(entry: &CatalogEntry) -> Option<String> {
    match std::env::var(BASE_URL_ENV) {
        Ok(base) if !base.is_empty() => Some(format!(
            "{}/{}",
            base.trim_end_matches('/'),
            release_file_name(entry)
        )),
        _ => entry.url.map(str::to_string),
    }
}

/// The name a mirror of rembg's releases keeps for `entry`: the last part of its URL
/// (bria-rmbg-2.0.onnx, BiRefNet-general-epoch_244.onnx...), which is not always the name it is
/// installed under; the installed name for models without a URL.
fn release_file_name(entry: &CatalogEntry) -> &'static str {
    entry
        .url
        .and_then(|url| url.rsplit('/').next())
        .unwrap_or(entry.file_name)
}

/// A positive number from the environment, else `default`.
fn setting(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(default)
}

fn timeout() -> Duration {
    Duration::from_secs_f64(setting(TIMEOUT_ENV, 30.0).clamp(0.1, 1e6))
}

fn deadline() -> Duration {
    Duration::from_secs_f64(setting(DEADLINE_ENV, 3600.0).clamp(0.1, 1e7))
}

/// The partial file of one download: unique per process and per call, so two elements (or two
/// processes) fetching the same model never write into one file.
fn partial_name(file_name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        ".{file_name}.{}-{}.part",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes partial files of `file_name` left by downloads that died: their process is gone, or
/// they are older than a day.
fn remove_stale_parts(folder: &Path, file_name: &str) {
    let prefix = format!(".{file_name}.");
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(writer) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".part"))
        else {
            continue;
        };
        let pid = writer.split('-').next().unwrap_or_default();
        let writer_gone = pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
        });
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if writer_gone || old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What a download reports while it runs, for an element to post as `progress` messages.
#[derive(Debug, Clone, PartialEq)]
pub enum DownloadEvent {
    /// The server answered; `total` is its Content-Length, when it gave one.
    Started { url: String, total: Option<u64> },
    /// Bytes received so far: at most twice a second, and once at the end.
    Received { bytes: u64, total: Option<u64> },
    /// Received whole and verified.
    Finished { bytes: u64 },
    /// A download that had started did not end in a verified file (the error says why).
    Failed,
}

impl DownloadEvent {
    /// One line for the user about `model`'s download: where from and how big, how far, done.
    pub fn describe(&self, model: &str) -> String {
        let megabytes = |bytes: u64| bytes as f64 / 1e6;
        match *self {
            DownloadEvent::Started {
                ref url,
                total: Some(total),
            } => format!(
                "downloading {model} ({:.1} MB) from {url}",
                megabytes(total)
            ),
            DownloadEvent::Started { ref url, .. } => format!("downloading {model} from {url}"),
            DownloadEvent::Received {
                bytes,
                total: Some(total),
            } if total > 0 => format!(
                "{model}: {:.1} of {:.1} MB ({:.0}%)",
                megabytes(bytes),
                megabytes(total),
                bytes as f64 * 100.0 / total as f64
            ),
            DownloadEvent::Received { bytes, .. } => format!("{model}: {:.1} MB", megabytes(bytes)),
            DownloadEvent::Finished { bytes } => format!(
                "{model}: {:.1} MB downloaded and verified",
                megabytes(bytes)
            ),
            DownloadEvent::Failed => format!("{model}: download failed"),
        }
    }
}

/// How often [`DownloadEvent::Received`] is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Downloads `entry` into `folder` and returns the model's path; `progress` hears how it goes.
pub fn download(
    entry: &CatalogEntry,
    folder: &Path,
    progress: &mut dyn FnMut(DownloadEvent),
) -> Result<PathBuf, DownloadError> {
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
    remove_stale_parts(folder, entry.file_name);
    let (window, deadline) = (timeout(), deadline());
    let min_rate = setting(MIN_RATE_ENV, 1024.0);
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(window)
        .timeout_read(window)
        .build();
    let started = Instant::now();
    let response = agent.get(&url).call().map_err(|e| match e {
        ureq::Error::Status(code, response) => {
            transfer(format!("HTTP {code} {}", response.status_text()))
        }
        other => transfer(other.to_string()),
    })?;
    // Written beside the target under a name no model lookup matches, then renamed into place.
    let partial = folder.join(partial_name(entry.file_name));
    let expected_len = response
        .header("Content-Length")
        .and_then(|v| v.parse::<u64>().ok());
    progress(DownloadEvent::Started {
        url: url.clone(),
        total: expected_len,
    });
    // A model inside an archive is taken out of the whole download into a second partial file.
    let extracted = entry
        .archive_member
        .map(|_| folder.join(partial_name(entry.file_name)));
    let result = (|| {
        let mut file = std::fs::File::create(&partial).map_err(|e| write_error(e.to_string()))?;
        let mut reported = Instant::now();
        let mut body = response.into_reader();
        let mut hasher = RunningDigest::new(&entry.checksum);
        let mut chunk = vec![0u8; 1 << 16];
        let (mut total, mut window_start, mut window_bytes) = (0u64, Instant::now(), 0u64);
        loop {
            let of_expected = |total: u64| {
                format!(
                    "{total} of {} bytes",
                    expected_len.map_or("?".into(), |n| n.to_string())
                )
            };
            let read = body.read(&mut chunk).map_err(|e| {
                transfer(format!(
                    "{e} after {} (no data for {} s ends a download)",
                    of_expected(total),
                    window.as_secs_f64()
                ))
            })?;
            if read == 0 {
                break;
            }
            // Reads block at most one stall timeout, so this is looked at often enough.
            if started.elapsed() > deadline {
                return Err(transfer(format!(
                    "not finished within the {} s in all that a download may take \
                     (${DEADLINE_ENV}); {} arrived",
                    deadline.as_secs_f64(),
                    of_expected(total + read as u64)
                )));
            }
            total += read as u64;
            window_bytes += read as u64;
            let elapsed = window_start.elapsed();
            if elapsed >= window {
                let rate = window_bytes as f64 / elapsed.as_secs_f64();
                if rate < min_rate {
                    return Err(transfer(format!(
                        "too slow: {rate:.0} bytes/s over the last {:.1} s, below the minimum of \
                         {min_rate:.0} bytes/s (${MIN_RATE_ENV}); {} arrived",
                        elapsed.as_secs_f64(),
                        of_expected(total)
                    )));
                }
                (window_start, window_bytes) = (Instant::now(), 0);
            }
            hasher.update(&chunk[..read]);
            file.write_all(&chunk[..read])
                .map_err(|e| write_error(e.to_string()))?;
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                progress(DownloadEvent::Received {
                    bytes: total,
                    total: expected_len,
                });
            }
        }
        progress(DownloadEvent::Received {
            bytes: total,
            total: expected_len,
        });
        file.sync_all().map_err(|e| write_error(e.to_string()))?;
        let (found, model) = match (entry.archive_member, &extracted) {
            (Some(member), Some(extracted)) => {
                let found =
                    take_out(&partial, member, extracted, &entry.checksum).map_err(|reason| {
                        transfer(format!("the archive of {total} bytes: {reason}"))
                    })?;
                (found, extracted)
            }
            _ => (hasher.finish(), &partial),
        };
        if found != entry.checksum.hex() {
            return Err(DownloadError::Checksum {
                url: url.clone(),
                algorithm: entry.checksum.algorithm(),
                expected: entry.checksum.hex().to_string(),
                found,
            });
        }
        std::fs::rename(model, &target).map_err(|e| write_error(e.to_string()))?;
        Ok(total)
    })();
    if let Ok(bytes) = result {
        progress(DownloadEvent::Finished { bytes });
    }
    // Whatever is left: the archive once its model is out, everything after a failure.
    for leftover in std::iter::once(&partial).chain(&extracted) {
        let _ = std::fs::remove_file(leftover);
    }
    result.map(|_| target)
}

/// The largest model taken out of an archive: more than any model in the catalog, and what the
/// archive's directory says is checked against it before anything is written.
const LARGEST_MEMBER: u64 = 4 << 30;

/// Writes `member` of the zip archive at `archive` to `out`; returns its checksum.
fn take_out(
    archive: &Path,
    member: &str,
    out: &Path,
    checksum: &Checksum,
) -> Result<String, String> {
    struct Hashing {
        file: std::fs::File,
        hasher: RunningDigest,
    }
    impl Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let written = self.file.write(bytes)?;
            self.hasher.update(&bytes[..written]);
            Ok(written)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.file.flush()
        }
    }
    let mut source = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    let mut sink = Hashing {
        file: std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?,
        hasher: RunningDigest::new(checksum),
    };
    super::zip_member::extract(&mut source, member, LARGEST_MEMBER, &mut sink)?;
    sink.file.sync_all().map_err(|e| e.to_string())?;
    Ok(sink.hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(checksum: Checksum, pieces: &[&[u8]]) -> String {
        let mut digest = RunningDigest::new(&checksum);
        for piece in pieces {
            digest.update(piece);
        }
        digest.finish()
    }

    #[test]
    fn checksums_are_computed_by_the_entry_s_algorithm_over_all_pieces() {
        // The standard test vectors of "abc" (RFC 1321, FIPS 180-2), fed in two pieces.
        assert_eq!(
            digest_of(Checksum::Md5(""), &[b"a", b"bc"]),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            digest_of(Checksum::Sha256(""), &[b"ab", b"c"]),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_mirror_is_asked_for_the_release_file_name() {
        let find = |name| crate::segmentation::catalog::find(name).unwrap();
        assert_eq!(release_file_name(find("u2netp")), "u2netp.onnx");
        assert_eq!(release_file_name(find("bria-rmbg")), "bria-rmbg-2.0.onnx");
        assert_eq!(
            release_file_name(find("birefnet-general")),
            "BiRefNet-general-epoch_244.onnx"
        );
        assert_eq!(release_file_name(find("selfie")), "selfie.onnx");
    }

    #[test]
    fn every_catalog_checksum_is_lowercase_hex_of_its_algorithm_s_length() {
        for entry in crate::segmentation::catalog::CATALOG {
            let expected_len = match entry.checksum {
                Checksum::Md5(_) => 32,
                Checksum::Sha256(_) => 64,
            };
            let hex = entry.checksum.hex();
            assert_eq!(hex.len(), expected_len, "{}", entry.name);
            assert!(
                hex.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{}",
                entry.name
            );
        }
    }

    #[test]
    fn download_events_read_as_one_line_each() {
        let started = DownloadEvent::Started {
            url: "https://example.org/u2netp.onnx".into(),
            total: Some(4_574_861),
        };
        assert_eq!(
            started.describe("u2netp"),
            "downloading u2netp (4.6 MB) from https://example.org/u2netp.onnx"
        );
        let halfway = DownloadEvent::Received {
            bytes: 2_000_000,
            total: Some(4_000_000),
        };
        assert_eq!(halfway.describe("u2netp"), "u2netp: 2.0 of 4.0 MB (50%)");
        let unknown = DownloadEvent::Received {
            bytes: 1_500_000,
            total: None,
        };
        assert_eq!(unknown.describe("u2netp"), "u2netp: 1.5 MB");
        let done = DownloadEvent::Finished { bytes: 4_574_861 };
        assert_eq!(
            done.describe("u2netp"),
            "u2netp: 4.6 MB downloaded and verified"
        );
        assert_eq!(
            DownloadEvent::Failed.describe("u2netp"),
            "u2netp: download failed"
        );
    }
}
