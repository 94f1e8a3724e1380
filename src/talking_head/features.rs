//! Audio features per output frame: `.npy` or raw `.bin` + `.bin.json`, per-frame or already
//! windowed, and SyncTalk_2D's 16-row window around each frame.

use std::path::{Path, PathBuf};

/// Which audio encoder made the features; it fixes their size and the U-Net's audio input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Ave,
    Hubert,
    Wenet,
}

/// Rows in the window around each frame.
pub const WINDOW_ROWS: usize = 16;

impl Mode {
    /// The U-Net's audio input shape without the batch dimension.
    pub fn window_shape(self) -> [usize; 3] {
        match self {
            Mode::Ave => [32, 16, 16],
            Mode::Hubert => [32, 32, 32],
            Mode::Wenet => [256, 16, 32],
        }
    }

    pub fn window_len(self) -> usize {
        self.window_shape().iter().product()
    }

    /// Values per frame before windowing.
    pub fn frame_len(self) -> usize {
        self.window_len() / WINDOW_ROWS
    }

    /// Output frames per second.
    pub fn fps(self) -> u32 {
        match self {
            Mode::Ave | Mode::Hubert => 25,
            Mode::Wenet => 20,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Ave => "ave",
            Mode::Hubert => "hubert",
            Mode::Wenet => "wenet",
        }
    }

    fn accepted(self) -> String {
        let [a, b, c] = self.window_shape();
        format!(
            "mode {} takes {} values per frame (windowed here) or {} = {a}x{b}x{c} (already windowed)",
            self.name(),
            self.frame_len(),
            self.window_len()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("features file {0}: {1}")]
    Read(PathBuf, String),
    #[error("features file {path} has {found} values per frame; {accepted}")]
    Shape {
        path: PathBuf,
        found: usize,
        accepted: String,
    },
    #[error("features file {0} holds no frames")]
    Empty(PathBuf),
}

/// All features of one utterance, one row per output frame.
#[derive(Debug, Clone)]
pub struct AudioFeatures {
    mode: Mode,
    frames: usize,
    windowed: bool,
    data: Vec<f32>,
}

impl AudioFeatures {
    /// Reads `.npy` (float32) or `.bin` (little-endian float32, with `<file>.json` beside it).
    pub fn load(path: &Path, mode: Mode) -> Result<Self, FeatureError> {
        let read_error = |reason: String| FeatureError::Read(path.to_path_buf(), reason);
        if path.is_dir() {
            return Err(read_error(
                "is a folder; expected a .npy or .bin features file".into(),
            ));
        }
        if !path.is_file() {
            return Err(read_error("does not exist".into()));
        }
        let (shape, data) = if path.extension().is_some_and(|e| e == "npy") {
            // The header's shape is checked against the file's length before ndarray-npy
            // allocates what it declares.
            check_npy_size(path).map_err(read_error)?;
            let array: ndarray::ArrayD<f32> = ndarray_npy::read_npy(path)
                .map_err(|e| read_error(format!("not a float32 .npy array ({e})")))?;
            let shape = array.shape().to_vec();
            let data = array.as_standard_layout().iter().copied().collect();
            (shape, data)
        } else {
            Self::read_bin(path).map_err(read_error)?
        };
        let frames = shape.first().copied().unwrap_or(0);
        if frames == 0 {
            return Err(FeatureError::Empty(path.to_path_buf()));
        }
        let per_frame: usize = shape[1..].iter().product();
        let windowed = if per_frame == mode.frame_len() {
            false
        } else if per_frame == mode.window_len() {
            true
        } else {
            return Err(FeatureError::Shape {
                path: path.to_path_buf(),
                found: per_frame,
                accepted: mode.accepted(),
            });
        };
        Ok(Self {
            mode,
            frames,
            windowed,
            data,
        })
    }

    /// Per-frame features computed in this process (the speech side), `mode.frame_len()` values
    /// per frame.
    pub fn from_rows(mode: Mode, data: Vec<f32>) -> Self {
        let frames = data.len() / mode.frame_len();
        Self {
            mode,
            frames,
            windowed: false,
            data,
        }
    }

    fn read_bin(path: &Path) -> Result<(Vec<usize>, Vec<f32>), String> {
        let mut json_path = path.as_os_str().to_owned();
        json_path.push(".json");
        let json_path = PathBuf::from(json_path);
        let json = std::fs::read_to_string(&json_path)
            .map_err(|e| format!("cannot read {}: {e}", json_path.display()))?;
        let file_len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        let (frames, feature_size) = bin_layout(&json, &json_path.display().to_string(), file_len)?;
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let data = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok((vec![frames, feature_size], data))
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Output frames: one per feature row.
    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn is_windowed(&self) -> bool {
        self.windowed
    }

    /// The U-Net's audio input for `frame`: rows `frame-8 .. frame+7`, zeros past either end.
    pub fn window(&self, frame: usize, out: &mut Vec<f32>) {
        let len = self.mode.window_len();
        out.clear();
        if self.windowed {
            out.extend_from_slice(&self.data[frame * len..(frame + 1) * len]);
            return;
        }
        let row = self.mode.frame_len();
        out.resize(len, 0.0);
        for (slot, source) in (frame as isize - 8..frame as isize + 8).enumerate() {
            if source >= 0 && (source as usize) < self.frames {
                let source = source as usize;
                out[slot * row..(slot + 1) * row]
                    .copy_from_slice(&self.data[source * row..(source + 1) * row]);
            }
        }
    }
}

/// Frames and values per frame of a raw `.bin` of `file_len` bytes, from its `.json` (named
/// `json_name` in errors): `num_frames` and `feature_size`, whose product must be the file's
/// float32 count, and `shape` if present, which must agree with them.
pub fn bin_layout(json: &str, json_name: &str, file_len: u64) -> Result<(usize, usize), String> {
    let meta: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("{json_name} is not JSON: {e}"))?;
    let field = |name: &str| {
        meta.get(name)
            .and_then(serde_json::Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| format!("{json_name} lacks a number '{name}'"))
    };
    let (frames, feature_size) = (field("num_frames")?, field("feature_size")?);
    if let Some(shape) = meta.get("shape") {
        let dims: Option<Vec<u64>> = shape
            .as_array()
            .map(|dims| dims.iter().map(serde_json::Value::as_u64).collect())
            .unwrap_or(None);
        let agrees = dims.as_deref().is_some_and(|dims| {
            let rest = dims
                .get(1..)
                .map(|rest| rest.iter().try_fold(1u64, |n, &d| n.checked_mul(d)));
            dims.first() == Some(&(frames as u64)) && rest == Some(Some(feature_size as u64))
        });
        if !agrees {
            return Err(format!(
                "{json_name}: 'shape' {shape} disagrees with num_frames {frames} and feature_size \
                 {feature_size} (expected [{frames}, ...] with the rest multiplying to {feature_size})"
            ));
        }
    }
    let expected = frames
        .checked_mul(feature_size)
        .and_then(|values| values.checked_mul(4));
    if expected.is_none_or(|expected| expected as u64 != file_len) {
        return Err(format!(
            "has {file_len} bytes but {json_name} says {frames} frames x {feature_size} float32 \
             values = {} bytes",
            expected.map_or("more than can be addressed".into(), |e| e.to_string())
        ));
    }
    Ok((frames, feature_size))
}

/// Reads a `.npy` header and checks that the data it declares (shape times item size) is what
/// the file holds after it, so that no allocation is made from a header alone.
fn check_npy_size(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    check_npy_header(std::io::BufReader::new(file), file_len)
}

/// [`check_npy_size`] on any reader positioned at the start of a `.npy` of `file_len` bytes.
pub fn check_npy_header(mut reader: impl std::io::Read, file_len: u64) -> Result<(), String> {
    let too_short = |_| "not a .npy file: shorter than its header".to_string();
    let mut start = [0u8; 10];
    reader.read_exact(&mut start).map_err(too_short)?;
    if &start[..6] != b"\x93NUMPY" {
        return Err("not a .npy file: no NUMPY magic".into());
    }
    let (header_len, header_start) = match start[6] {
        1 => (u64::from(u16::from_le_bytes([start[8], start[9]])), 10u64),
        2 | 3 => {
            let mut high = [0u8; 2];
            reader.read_exact(&mut high).map_err(too_short)?;
            let len = u32::from_le_bytes([start[8], start[9], high[0], high[1]]);
            (u64::from(len), 12)
        }
        version => return Err(format!("unknown .npy format version {version}")),
    };
    let data_start = header_start + header_len;
    if header_len > 1 << 20 || data_start > file_len {
        return Err(format!(
            "not a .npy file: its header claims {header_len} bytes of a {file_len}-byte file"
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    reader.read_exact(&mut header).map_err(too_short)?;
    let header = String::from_utf8_lossy(&header);
    let item_size = field_after(&header, "'descr'")
        .and_then(|descr| {
            descr
                .trim_matches(|c| c == '\'' || c == '"')
                .get(2..)?
                .parse()
                .ok()
        })
        .ok_or_else(|| format!("not a .npy file: no readable 'descr' in {header:?}"))?;
    let shape_text = header
        .find("'shape'")
        .and_then(|at| {
            let rest = &header[at..];
            Some(&rest[rest.find('(')? + 1..rest.find(')')?])
        })
        .ok_or_else(|| format!("not a .npy file: no readable 'shape' in {header:?}"))?;
    let mut bytes: Option<u64> = Some(item_size);
    for dim in shape_text
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let dim: u64 = dim
            .parse()
            .map_err(|_| format!("'shape' ({shape_text}) holds '{dim}', not a size"))?;
        bytes = bytes.and_then(|b| b.checked_mul(dim));
    }
    let held = file_len - data_start;
    if bytes != Some(held) {
        return Err(format!(
            "header declares shape ({shape_text}) of {item_size}-byte values, {} bytes, but the file \
             holds {held} bytes of data",
            bytes.map_or("more than can be addressed".into(), |b| b.to_string())
        ));
    }
    Ok(())
}

/// The value text after `key:` in a Python dict literal, up to the next comma.
fn field_after<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let rest = &header[header.find(key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    Some(rest[..rest.find(',')?].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_pads_with_zero_rows_at_both_ends() {
        let frames = 20;
        let data: Vec<f32> = (0..frames * 512).map(|i| (i / 512 + 1) as f32).collect();
        let features = AudioFeatures {
            mode: Mode::Ave,
            frames,
            windowed: false,
            data,
        };
        let mut window = Vec::new();
        features.window(2, &mut window);
        let rows: Vec<f32> = window.chunks(512).map(|r| r[0]).collect();
        let expected: Vec<f32> = (-6..10)
            .map(|r: i32| if r >= 0 { (r + 1) as f32 } else { 0.0 })
            .collect();
        assert_eq!(rows, expected);
        features.window(19, &mut window);
        let rows: Vec<f32> = window.chunks(512).map(|r| r[0]).collect();
        let expected: Vec<f32> = (11..27)
            .map(|r| if r < 20 { (r + 1) as f32 } else { 0.0 })
            .collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn sizes_per_mode() {
        assert_eq!((Mode::Ave.frame_len(), Mode::Ave.window_len()), (512, 8192));
        assert_eq!(
            (Mode::Hubert.frame_len(), Mode::Hubert.window_len()),
            (2048, 32768)
        );
        assert_eq!(
            (Mode::Wenet.frame_len(), Mode::Wenet.window_len()),
            (8192, 131072)
        );
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("neuralfx-features-{}-{name}", std::process::id()))
    }

    /// A version-1 `.npy` with this header dict and `data_len` bytes of data.
    fn write_npy(path: &Path, dict: &str, data_len: usize) {
        let mut header = dict.to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(vec![0u8; data_len]);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn an_npy_header_declaring_more_than_the_file_holds_is_refused_before_allocating() {
        let path = temp("huge.npy");
        write_npy(
            &path,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (100000000000,), }",
            64,
        );
        let err = AudioFeatures::load(&path, Mode::Ave)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("(100000000000,)") && err.contains("64 bytes"),
            "{err}"
        );
        write_npy(
            &path,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }",
            64,
        );
        let err = AudioFeatures::load(&path, Mode::Ave)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than can be addressed"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn an_npy_whose_header_fits_its_data_loads() {
        let path = temp("fits.npy");
        write_npy(
            &path,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 512), }",
            3 * 512 * 4,
        );
        let features = AudioFeatures::load(&path, Mode::Ave).unwrap();
        assert_eq!((features.frames(), features.is_windowed()), (3, false));
        std::fs::remove_file(&path).unwrap();
    }

    fn write_bin(name: &str, json: &str, values: usize) -> PathBuf {
        let path = temp(name);
        std::fs::write(&path, vec![0u8; values * 4]).unwrap();
        std::fs::write(format!("{}.json", path.display()), json).unwrap();
        path
    }

    #[test]
    fn a_bin_json_whose_sizes_overflow_or_disagree_is_refused() {
        let path = write_bin(
            "overflow.bin",
            r#"{"num_frames": 4611686018427387904, "feature_size": 512}"#,
            512,
        );
        let err = AudioFeatures::load(&path, Mode::Ave)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than can be addressed"), "{err}");
        let path = write_bin(
            "shape.bin",
            r#"{"num_frames": 2, "feature_size": 512, "shape": [2, 16, 16]}"#,
            1024,
        );
        let err = AudioFeatures::load(&path, Mode::Ave)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'shape' [2,16,16] disagrees"), "{err}");
        let path = write_bin(
            "agrees.bin",
            r#"{"num_frames": 2, "feature_size": 512, "shape": [2, 32, 16]}"#,
            1024,
        );
        assert_eq!(AudioFeatures::load(&path, Mode::Ave).unwrap().frames(), 2);
        for name in ["overflow.bin", "shape.bin", "agrees.bin"] {
            let path = temp(name);
            std::fs::remove_file(format!("{}.json", path.display())).unwrap();
            std::fs::remove_file(path).unwrap();
        }
    }
}
