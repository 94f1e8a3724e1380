//! SyncTalk_2D's `ave` audio features from 16 kHz mono speech: the log-mel spectrogram of its
//! `data_utils/ave` (Wav2Lip's audio.py and hparams), the 16-frame mel windows of its AudDataset,
//! the AudioEncoder (an ONNX model the user exports) run over them, and the rows assembled as
//! `inference_328.py` does. No GStreamer types; decoding and resampling happen in the pipeline.

use std::sync::{Arc, OnceLock};

use realfft::RealFftPlanner;

use super::features::{AudioFeatures, Mode};
use crate::inference::{Backend, ElementType, InferenceError, ShapeDisplay, TensorView};

pub const SAMPLE_RATE: u32 = 16_000;
const N_FFT: usize = 800;
const HOP: usize = 200;
const BINS: usize = N_FFT / 2 + 1;
pub const MEL_BANDS: usize = 80;
const FMIN: f64 = 55.0;
const FMAX: f64 = 7600.0;
const PREEMPHASIS: f64 = 0.97;
const MIN_LEVEL_DB: f64 = -100.0;
const REF_LEVEL_DB: f64 = 20.0;
const MAX_ABS_VALUE: f64 = 4.0;
/// Mel frames in one encoder window, and mel frames per second of video (80 at 25 fps).
pub const WINDOW_FRAMES: usize = 16;
const MEL_FRAMES_PER_SECOND: f64 = 80.0;
const VIDEO_FPS: f64 = 25.0;
/// Values per encoder row.
pub const ENCODER_WIDTH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error(
        "{samples} samples of speech ({seconds:.3} s) make {frames} mel frames; at least {WINDOW_FRAMES} (0.2 s of 16 kHz audio) are needed for one window"
    )]
    TooShort {
        samples: usize,
        seconds: f64,
        frames: usize,
    },
    #[error(
        "audio encoder {model}: expected one float32 input [batch,1,{MEL_BANDS},{WINDOW_FRAMES}] (a mel window), found {found}"
    )]
    EncoderInput { model: String, found: String },
    #[error(
        "audio encoder {model}: expected {ENCODER_WIDTH} float32 values per window out ([batch,512] or [batch,512,1,1]), found {found}"
    )]
    EncoderOutput { model: String, found: String },
    #[error("audio encoder: {0}")]
    Run(#[from] InferenceError),
}

/// A log-mel spectrogram, frame-major: `frames` rows of [`MEL_BANDS`] values.
#[derive(Debug, Clone, PartialEq)]
pub struct MelSpectrogram {
    pub frames: usize,
    pub data: Vec<f32>,
}

/// librosa's Slaney mel scale (htk=False).
fn hz_to_mel(hz: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let min_log_mel = min_log_hz / f_sp;
    let log_step = 6.4f64.ln() / 27.0;
    if hz >= min_log_hz {
        min_log_mel + (hz / min_log_hz).ln() / log_step
    } else {
        hz / f_sp
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let min_log_mel = min_log_hz / f_sp;
    let log_step = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        min_log_hz * (log_step * (mel - min_log_mel)).exp()
    } else {
        f_sp * mel
    }
}

/// librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600): triangles on the
/// Slaney scale, area-normalised ("slaney"), band-major [80][401]. librosa returns them as
/// float32, and so are they here (then widened), so that the products match its own.
fn mel_basis() -> &'static [f64] {
    static BASIS: OnceLock<Vec<f64>> = OnceLock::new();
    BASIS.get_or_init(|| {
        let (low, high) = (hz_to_mel(FMIN), hz_to_mel(FMAX));
        let points: Vec<f64> = (0..MEL_BANDS + 2)
            .map(|i| mel_to_hz(low + (high - low) * i as f64 / (MEL_BANDS + 1) as f64))
            .collect();
        let bin_hz = |bin: usize| bin as f64 * f64::from(SAMPLE_RATE) / N_FFT as f64;
        let mut basis = vec![0.0; MEL_BANDS * BINS];
        for band in 0..MEL_BANDS {
            let (left, centre, right) = (points[band], points[band + 1], points[band + 2]);
            let area = 2.0 / (right - left);
            for bin in 0..BINS {
                let hz = bin_hz(bin);
                let rising = (hz - left) / (centre - left);
                let falling = (right - hz) / (right - centre);
                let weight = rising.min(falling).max(0.0) * area;
                basis[band * BINS + bin] = f64::from(weight as f32);
            }
        }
        basis
    })
}

/// The periodic Hann window of length [`N_FFT`] (scipy's `get_window("hann", 800)`).
fn hann() -> &'static [f64] {
    static WINDOW: OnceLock<Vec<f64>> = OnceLock::new();
    WINDOW.get_or_init(|| {
        (0..N_FFT)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos())
            .collect()
    })
}

/// The normalised log-mel spectrogram of 16 kHz mono `samples`: pre-emphasis 0.97, a centred
/// STFT (800-point Hann, hop 200, zero padding at both ends as librosa >= 0.10 does), magnitudes
/// through the mel basis, `20 log10(max(1e-5, x)) - 20`, then `clip(8 (S + 100) / 100 - 4, -4, 4)`.
/// Arithmetic in float64 as numpy does it; one frame per 200 samples, plus one.
pub fn mel_spectrogram(samples: &[f32]) -> MelSpectrogram {
    let emphasised: Vec<f64> = samples
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let previous = if i == 0 {
                0.0
            } else {
                f64::from(samples[i - 1])
            };
            f64::from(x) - PREEMPHASIS * previous
        })
        .collect();
    let frames = 1 + emphasised.len() / HOP;
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(N_FFT);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let mut magnitudes = vec![0.0f64; BINS];
    let (basis, window) = (mel_basis(), hann());
    let min_level = (MIN_LEVEL_DB / 20.0 * 10f64.ln()).exp();
    let mut data = Vec::with_capacity(frames * MEL_BANDS);
    for frame in 0..frames {
        // Sample index of the frame's first value: the centre minus half a window.
        let first = (frame * HOP) as isize - (N_FFT / 2) as isize;
        for (n, value) in input.iter_mut().enumerate() {
            let at = first + n as isize;
            let sample = if at >= 0 && (at as usize) < emphasised.len() {
                emphasised[at as usize]
            } else {
                0.0
            };
            *value = sample * window[n];
        }
        fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch)
            .expect("buffers made by the plan");
        for (magnitude, bin) in magnitudes.iter_mut().zip(&spectrum) {
            *magnitude = bin.norm();
        }
        for band in 0..MEL_BANDS {
            let weights = &basis[band * BINS..(band + 1) * BINS];
            let energy: f64 = weights.iter().zip(&magnitudes).map(|(w, m)| w * m).sum();
            let db = 20.0 * energy.max(min_level).log10() - REF_LEVEL_DB;
            let normalised =
                (2.0 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE;
            data.push(normalised.clamp(-MAX_ABS_VALUE, MAX_ABS_VALUE) as f32);
        }
    }
    MelSpectrogram { frames, data }
}

/// AudDataset's mel windows, one per video frame at 25 fps: `int((T - 16) / 80 * 25) + 2` of
/// them for T mel frames; window i takes the 16 frames from `int(80 * i / 25)`, moved back to end
/// at T where they would run past it; each laid out [80][16] (bands by frames), as the encoder
/// takes it. `samples` is only for the error message.
pub fn encoder_windows(mel: &MelSpectrogram, samples: usize) -> Result<Vec<f32>, SpeechError> {
    let frames = mel.frames;
    if frames < WINDOW_FRAMES {
        return Err(SpeechError::TooShort {
            samples,
            seconds: samples as f64 / f64::from(SAMPLE_RATE),
            frames,
        });
    }
    let count = ((frames - WINDOW_FRAMES) as f64 / MEL_FRAMES_PER_SECOND * VIDEO_FPS) as usize + 2;
    let window_len = MEL_BANDS * WINDOW_FRAMES;
    let mut windows = vec![0.0f32; count * window_len];
    for (index, window) in windows.chunks_exact_mut(window_len).enumerate() {
        let mut start = (MEL_FRAMES_PER_SECOND * (index as f64 / VIDEO_FPS)) as usize;
        if start + WINDOW_FRAMES > frames {
            start = frames - WINDOW_FRAMES;
        }
        for t in 0..WINDOW_FRAMES {
            let row = &mel.data[(start + t) * MEL_BANDS..(start + t + 1) * MEL_BANDS];
            for (band, &value) in row.iter().enumerate() {
                window[band * WINDOW_FRAMES + t] = value;
            }
        }
    }
    Ok(windows)
}

/// SyncTalk_2D's AudioEncoder as an ONNX model: a mel window in, 512 values out.
pub struct AudioEncoder {
    model: Arc<dyn Backend>,
    /// The input's batch dimension when the model fixes it.
    fixed_batch: Option<usize>,
}

impl AudioEncoder {
    /// Checks the model's tensors: one float32 input `[batch,1,80,16]` (batch fixed or dynamic),
    /// a float32 first output of 512 values per window when its shape says so.
    pub fn new(model: Arc<dyn Backend>) -> Result<Self, SpeechError> {
        let input_error = |found: String| SpeechError::EncoderInput {
            model: model.model_name().to_string(),
            found,
        };
        let [input] = model.inputs() else {
            return Err(input_error(format!("{} inputs", model.inputs().len())));
        };
        let window_dims = [Some(1), Some(MEL_BANDS), Some(WINDOW_FRAMES)];
        if input.element_type != ElementType::Float32
            || input.shape.len() != 4
            || input.shape[1..] != window_dims
        {
            return Err(input_error(input.to_string()));
        }
        let output_error = |found: String| SpeechError::EncoderOutput {
            model: model.model_name().to_string(),
            found,
        };
        let Some(output) = model.outputs().first() else {
            return Err(output_error("no outputs".into()));
        };
        let known: Option<usize> = output.shape.iter().skip(1).copied().product();
        if output.element_type != ElementType::Float32
            || output.shape.is_empty()
            || known.is_some_and(|values| values != ENCODER_WIDTH)
        {
            return Err(output_error(output.to_string()));
        }
        let fixed_batch = input.shape[0];
        Ok(Self { model, fixed_batch })
    }

    /// The encoder's rows for `windows` (from [`encoder_windows`]), [`ENCODER_WIDTH`] each, in
    /// order; batches of the model's fixed size (the last padded, its extra rows dropped), or
    /// of 64.
    pub fn encode(&self, windows: &[f32]) -> Result<Vec<f32>, SpeechError> {
        let window_len = MEL_BANDS * WINDOW_FRAMES;
        let count = windows.len() / window_len;
        let batch = self.fixed_batch.unwrap_or(64).max(1);
        let mut rows = Vec::with_capacity(count * ENCODER_WIDTH);
        let mut padded = Vec::new();
        for chunk in windows.chunks(batch * window_len) {
            let in_chunk = chunk.len() / window_len;
            let (data, size) = if self.fixed_batch.is_some() && in_chunk < batch {
                padded.clear();
                padded.extend_from_slice(chunk);
                padded.resize(batch * window_len, 0.0);
                (padded.as_slice(), batch)
            } else {
                (chunk, in_chunk)
            };
            let shape = [size, 1, MEL_BANDS, WINDOW_FRAMES];
            let output = self.model.run_first(&[TensorView {
                shape: &shape,
                data,
            }])?;
            if output.data.len() != size * ENCODER_WIDTH {
                return Err(SpeechError::EncoderOutput {
                    model: self.model.model_name().to_string(),
                    found: format!(
                        "{} values for {size} windows (shape {})",
                        output.data.len(),
                        ShapeDisplay(&output.shape.iter().map(|&d| Some(d)).collect::<Vec<_>>())
                    ),
                });
            }
            rows.extend_from_slice(&output.data[..in_chunk * ENCODER_WIDTH]);
        }
        Ok(rows)
    }
}

/// The `ave` features of `inference_328.py`: the encoder's rows with the first and the last
/// repeated once, one row per video frame.
pub fn ave_features(rows: &[f32]) -> AudioFeatures {
    let count = rows.len() / ENCODER_WIDTH;
    let mut data = Vec::with_capacity((count + 2) * ENCODER_WIDTH);
    if count > 0 {
        data.extend_from_slice(&rows[..ENCODER_WIDTH]);
        data.extend_from_slice(&rows[..count * ENCODER_WIDTH]);
        data.extend_from_slice(&rows[(count - 1) * ENCODER_WIDTH..count * ENCODER_WIDTH]);
    }
    AudioFeatures::from_rows(Mode::Ave, data)
}

/// Speech to `ave` features: mel, windows, encoder, assembly.
pub fn speech_features(
    samples: &[f32],
    encoder: &AudioEncoder,
) -> Result<AudioFeatures, SpeechError> {
    let mel = mel_spectrogram(samples);
    let windows = encoder_windows(&mel, samples.len())?;
    Ok(ave_features(&encoder.encode(&windows)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::testing::DeclaredModel;

    #[test]
    fn slaney_scale_round_trips_and_is_linear_below_1_khz() {
        for hz in [0.0, 55.0, 440.0, 999.0, 1000.0, 3000.0, 7600.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9, "{hz}");
        }
        assert!((hz_to_mel(200.0) - 3.0).abs() < 1e-12);
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
    }

    #[test]
    fn each_mel_band_has_unit_area_in_hz() {
        let basis = mel_basis();
        let bin_hz = f64::from(SAMPLE_RATE) / N_FFT as f64;
        for band in 0..MEL_BANDS {
            let weights = &basis[band * BINS..(band + 1) * BINS];
            assert!(weights.iter().any(|&w| w > 0.0), "band {band} is empty");
            assert!(weights.iter().all(|&w| w >= 0.0));
        }
        // Slaney normalisation: weight peaks are 2 / (right - left), so wide bands are low.
        let peak = |band: usize| {
            basis[band * BINS..(band + 1) * BINS]
                .iter()
                .cloned()
                .fold(0.0, f64::max)
        };
        assert!(peak(0) > peak(79), "{} {}", peak(0), peak(79));
        // The first band starts above 55 Hz: bin 1 (20 Hz) and bin 2 (40 Hz) are outside it.
        assert_eq!(basis[1], 0.0);
        assert_eq!(basis[2], 0.0);
        assert!(basis[3] > 0.0, "60 Hz is inside the first band");
        let _ = bin_hz;
    }

    #[test]
    fn frames_and_windows_follow_auddataset() {
        // One second: 16000 samples, 81 mel frames, int(65 / 80 * 25) + 2 = 22 windows.
        let samples: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.07).sin() * 0.3).collect();
        let mel = mel_spectrogram(&samples);
        assert_eq!(mel.frames, 81);
        assert!(mel.data.iter().all(|v| (-4.0..=4.0).contains(v)));
        let windows = encoder_windows(&mel, samples.len()).unwrap();
        assert_eq!(windows.len(), 22 * 80 * 16);
        // Window 21 would start at int(80 * 21 / 25) = 67 and run past 81: it ends at 81.
        let last = &windows[21 * 1280..];
        assert_eq!(last[0], mel.data[65 * 80]);
        assert_eq!(last[15], mel.data[80 * 80]);
        // Window 1 starts at int(3.2) = 3; band 5, frame 2 is mel frame 5, band 5.
        assert_eq!(windows[1280 + 5 * 16 + 2], mel.data[5 * 80 + 5]);
    }

    #[test]
    fn silence_is_the_floor_everywhere() {
        let mel = mel_spectrogram(&vec![0.0; 3200]);
        assert!(mel.data.iter().all(|&v| v == -4.0));
    }

    #[test]
    fn less_than_a_window_of_speech_is_refused_with_its_length() {
        let samples = vec![0.1f32; 2000];
        let err = encoder_windows(&mel_spectrogram(&samples), samples.len()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("2000 samples") && text.contains("0.125 s"),
            "{text}"
        );
    }

    #[test]
    fn encoders_of_other_shapes_are_refused_naming_both() {
        let wrong_input = DeclaredModel::float32(
            &[&[None, Some(1), Some(80), Some(20)]],
            &[&[None, Some(512)]],
        );
        let err = AudioEncoder::new(Arc::new(wrong_input))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("[batch,1,80,16]") && err.contains("[?,1,80,20]"),
            "{err}"
        );
        let wrong_output = DeclaredModel::float32(
            &[&[Some(1), Some(1), Some(80), Some(16)]],
            &[&[Some(1), Some(256)]],
        );
        let err = AudioEncoder::new(Arc::new(wrong_output))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("512") && err.contains("[1,256]"), "{err}");
        let nchw = DeclaredModel::float32(
            &[&[Some(1), Some(1), Some(80), Some(16)]],
            &[&[Some(1), Some(512), Some(1), Some(1)]],
        );
        assert!(AudioEncoder::new(Arc::new(nchw)).is_ok());
    }

    fn row_at_slot(window: &[f32], slot: usize) -> f32 {
        window[slot * ENCODER_WIDTH]
    }

    #[test]
    fn first_and_last_rows_are_repeated() {
        let rows: Vec<f32> = (0..3 * ENCODER_WIDTH)
            .map(|i| (i / ENCODER_WIDTH + 1) as f32)
            .collect();
        let features = ave_features(&rows);
        assert_eq!(features.frames(), 5);
        let mut window = Vec::new();
        features.window(0, &mut window);
        // Window of frame 0: rows -8..7, zeros before row 0; slot 8 is frame 0 = row 0's copy.
        assert_eq!(row_at_slot(&window, 7), 0.0);
        let row_at = |slot: usize| row_at_slot(&window, slot);
        assert_eq!(
            (row_at(8), row_at(9), row_at(10), row_at(11), row_at(12)),
            (1.0, 1.0, 2.0, 3.0, 3.0)
        );
    }
}
