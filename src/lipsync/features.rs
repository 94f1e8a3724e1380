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
        if !path.is_file() {
            return Err(read_error("does not exist".into()));
        }
        let (shape, data) = if path.extension().is_some_and(|e| e == "npy") {
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

    fn read_bin(path: &Path) -> Result<(Vec<usize>, Vec<f32>), String> {
        let mut json_path = path.as_os_str().to_owned();
        json_path.push(".json");
        let json_path = PathBuf::from(json_path);
        let json = std::fs::read_to_string(&json_path)
            .map_err(|e| format!("cannot read {}: {e}", json_path.display()))?;
        let meta: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| format!("{} is not JSON: {e}", json_path.display()))?;
        let field = |name: &str| {
            meta.get(name)
                .and_then(serde_json::Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| format!("{} lacks a number '{name}'", json_path.display()))
        };
        let (frames, feature_size) = (field("num_frames")?, field("feature_size")?);
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let expected = frames * feature_size * 4;
        if bytes.len() != expected {
            return Err(format!(
                "has {} bytes but {} says {frames} frames x {feature_size} float32 values = {expected} bytes",
                bytes.len(),
                json_path.display()
            ));
        }
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
}
