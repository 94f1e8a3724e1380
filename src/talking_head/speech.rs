//! SyncTalk_2D's `ave` audio features from 16 kHz mono speech: the log-mel spectrogram of its
//! `data_utils/ave` (Wav2Lip's audio.py and hparams), the 16-frame mel windows of its AudDataset,
//! the AudioEncoder (an ONNX model the user exports) run over them, and the rows assembled as
//! `inference_328.py` does. No GStreamer types; decoding and resampling happen in the pipeline.

use std::sync::{Arc, OnceLock};

use realfft::RealFftPlanner;

use super::features::{AudioFeatures, Mode};
use crate::inference::{Backend, InferenceError, ShapeDisplay, TensorView};

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
        "audio encoder {model}: expected one {float} input [batch,1,{MEL_BANDS},{WINDOW_FRAMES}] (a mel window), found {found}"
    )]
    EncoderInput {
        model: String,
        /// The element types the backend takes, in words.
        float: &'static str,
        found: String,
    },
    #[error(
        "audio encoder {model}: expected {ENCODER_WIDTH} {float} values per window out ([batch,512] or [batch,512,1,1]), found {found}"
    )]
    EncoderOutput {
        model: String,
        float: &'static str,
        found: String,
    },
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
    let mut emphasis = PreEmphasis::default();
    let emphasised: Vec<f64> = samples.iter().map(|&x| emphasis.next(x)).collect();
    let frames = 1 + emphasised.len() / HOP;
    let mut computer = MelFrameComputer::new();
    let mut data = Vec::with_capacity(frames * MEL_BANDS);
    for frame in 0..frames {
        computer.frame(frame, &mut data, |at| {
            usize::try_from(at)
                .ok()
                .and_then(|at| emphasised.get(at))
                .copied()
                .unwrap_or(0.0)
        });
    }
    MelSpectrogram { frames, data }
}

/// `y[n] = x[n] - 0.97 x[n - 1]` (scipy's lfilter([1, -0.97], [1], x)), in float64.
#[derive(Debug, Default, Clone, Copy)]
struct PreEmphasis {
    previous: f64,
}

impl PreEmphasis {
    fn next(&mut self, x: f32) -> f64 {
        let x = f64::from(x);
        let y = x - PREEMPHASIS * self.previous;
        self.previous = x;
        y
    }
}

/// One mel frame at a time, with the FFT plan and buffers kept between frames.
struct MelFrameComputer {
    fft: Arc<dyn realfft::RealToComplex<f64>>,
    input: Vec<f64>,
    spectrum: Vec<realfft::num_complex::Complex<f64>>,
    scratch: Vec<realfft::num_complex::Complex<f64>>,
    magnitudes: Vec<f64>,
}

impl MelFrameComputer {
    fn new() -> Self {
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
        Self {
            input: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            magnitudes: vec![0.0; BINS],
            fft,
        }
    }

    /// Appends mel frame `frame` to `out`; `sample(i)` gives pre-emphasised sample i (0 outside
    /// the signal: the centred STFT's zero padding).
    fn frame(&mut self, frame: usize, out: &mut Vec<f32>, sample: impl Fn(isize) -> f64) {
        let (basis, window) = (mel_basis(), hann());
        // The frame's first sample: its centre minus half a window.
        let first = (frame * HOP) as isize - (N_FFT / 2) as isize;
        for (n, value) in self.input.iter_mut().enumerate() {
            *value = sample(first + n as isize) * window[n];
        }
        self.fft
            .process_with_scratch(&mut self.input, &mut self.spectrum, &mut self.scratch)
            .expect("buffers made by the plan");
        for (magnitude, bin) in self.magnitudes.iter_mut().zip(&self.spectrum) {
            *magnitude = bin.norm();
        }
        let min_level = (MIN_LEVEL_DB / 20.0 * 10f64.ln()).exp();
        for band in 0..MEL_BANDS {
            let weights = &basis[band * BINS..(band + 1) * BINS];
            let energy: f64 = weights
                .iter()
                .zip(&self.magnitudes)
                .map(|(w, m)| w * m)
                .sum();
            let db = 20.0 * energy.max(min_level).log10() - REF_LEVEL_DB;
            let normalised =
                (2.0 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE;
            out.push(normalised.clamp(-MAX_ABS_VALUE, MAX_ABS_VALUE) as f32);
        }
    }
}

/// Where AudDataset's window `index` starts, before any move back from the end.
fn window_start(index: usize) -> usize {
    (MEL_FRAMES_PER_SECOND * (index as f64 / VIDEO_FPS)) as usize
}

/// How many windows AudDataset makes of `frames` mel frames (at least 16).
fn window_count(frames: usize) -> usize {
    ((frames - WINDOW_FRAMES) as f64 / MEL_FRAMES_PER_SECOND * VIDEO_FPS) as usize + 2
}

/// Writes the [80][16] window of the 16 mel frames from `start` (frame-major `mel`, whose first
/// row is mel frame `first_frame`).
fn write_window(mel: &[f32], first_frame: usize, start: usize, window: &mut [f32]) {
    for t in 0..WINDOW_FRAMES {
        let row = &mel[(start + t - first_frame) * MEL_BANDS..][..MEL_BANDS];
        for (band, &value) in row.iter().enumerate() {
            window[band * WINDOW_FRAMES + t] = value;
        }
    }
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
    let count = window_count(frames);
    let window_len = MEL_BANDS * WINDOW_FRAMES;
    let mut windows = vec![0.0f32; count * window_len];
    for (index, window) in windows.chunks_exact_mut(window_len).enumerate() {
        let start = window_start(index).min(frames - WINDOW_FRAMES);
        write_window(&mel.data, 0, start, window);
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
            float: model.float_types(),
            found,
        };
        let [input] = model.inputs() else {
            return Err(input_error(format!("{} inputs", model.inputs().len())));
        };
        let window_dims = [Some(1), Some(MEL_BANDS), Some(WINDOW_FRAMES)];
        if !model.converts(&input.element_type)
            || input.shape.len() != 4
            || input.shape[1..] != window_dims
        {
            return Err(input_error(input.to_string()));
        }
        let output_error = |found: String| SpeechError::EncoderOutput {
            model: model.model_name().to_string(),
            float: model.float_types(),
            found,
        };
        let Some(output) = model.outputs().first() else {
            return Err(output_error("no outputs".into()));
        };
        let known: Option<usize> = output.shape.iter().skip(1).copied().product();
        if !model.converts(&output.element_type)
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
                    float: self.model.float_types(),
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

/// The same features from speech that arrives a piece at a time (a live `lipsync` element), equal
/// to [`speech_features`] on the whole: a mel frame is made once its 800 samples are there, a
/// window once its 16 mel frames are (windows are moved back from the end only at
/// [`SpeechStream::finish`], as AudDataset does for the last ones), and video frame `f` once the
/// rows of its 16-row window (features `f - 8 ..= f + 7`) are known. Only what later frames need
/// is kept, so memory stays flat however long the speech.
pub struct SpeechStream {
    emphasis: PreEmphasis,
    /// Pre-emphasised samples from index `samples_base` on.
    samples: std::collections::VecDeque<f64>,
    samples_base: usize,
    samples_total: usize,
    computer: MelFrameComputer,
    /// Mel frames from `mel_base` on, frame-major.
    mel: Vec<f32>,
    mel_base: usize,
    mel_frames: usize,
    /// The next window to encode.
    next_window: usize,
    /// Encoder rows from `rows_base` on.
    rows: Vec<f32>,
    rows_base: usize,
    rows_total: usize,
    /// Set by `finish`: the number of encoder rows (windows) the whole speech makes.
    final_rows: Option<usize>,
    next_frame: usize,
    /// The largest |sample| of each hop (200 samples, one mel step) from hop `peaks_base` on:
    /// the level of the audio that a frame's features read, for skipping silence.
    hop_peaks: std::collections::VecDeque<f32>,
    peaks_base: usize,
}

/// A video frame whose feature window is complete.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadyFrame {
    pub index: usize,
    /// The largest |sample| (1.0 = full scale) of all the audio its features were computed from
    /// (its 16 rows' mel windows): 0 means every value the U-Net sees came from digital silence.
    pub peak: f32,
}

impl Default for SpeechStream {
    fn default() -> Self {
        Self::new()
    }
}

impl SpeechStream {
    pub fn new() -> Self {
        Self {
            emphasis: PreEmphasis::default(),
            samples: Default::default(),
            samples_base: 0,
            samples_total: 0,
            computer: MelFrameComputer::new(),
            mel: Vec::new(),
            mel_base: 0,
            mel_frames: 0,
            next_window: 0,
            rows: Vec::new(),
            rows_base: 0,
            rows_total: 0,
            final_rows: None,
            next_frame: 0,
            hop_peaks: Default::default(),
            peaks_base: 0,
        }
    }

    /// Audio a video frame waits for beyond its own time: the rest of its mel window (0.2 s plus
    /// half an FFT) and the seven rows after it in its feature window (0.28 s).
    pub fn lookahead() -> std::time::Duration {
        let samples =
            (WINDOW_FRAMES * HOP + N_FFT / 2) as f64 + 7.0 * f64::from(SAMPLE_RATE) / VIDEO_FPS;
        std::time::Duration::from_secs_f64(samples / f64::from(SAMPLE_RATE))
    }

    /// Takes more 16 kHz mono samples and makes the mel frames they complete.
    pub fn push(&mut self, samples: &[f32]) {
        for (at, &x) in (self.samples_total..).zip(samples) {
            self.samples.push_back(self.emphasis.next(x));
            let hop = at / HOP - self.peaks_base;
            if hop == self.hop_peaks.len() {
                self.hop_peaks.push_back(0.0);
            }
            // NaN counts as loud: it reaches the features.
            let level = if x.is_nan() { f32::INFINITY } else { x.abs() };
            let peak = &mut self.hop_peaks[hop];
            *peak = peak.max(level);
        }
        self.samples_total += samples.len();
        while self.mel_frames * HOP + N_FFT / 2 <= self.samples_total {
            self.make_mel_frame();
        }
    }

    fn make_mel_frame(&mut self) {
        let (samples, base) = (&self.samples, self.samples_base as isize);
        self.computer.frame(self.mel_frames, &mut self.mel, |at| {
            usize::try_from(at - base)
                .ok()
                .and_then(|at| samples.get(at))
                .copied()
                .unwrap_or(0.0)
        });
        self.mel_frames += 1;
        // Later frames start at least one hop further on.
        let keep_from = (self.mel_frames * HOP).saturating_sub(N_FFT / 2);
        while self.samples_base < keep_from && !self.samples.is_empty() {
            self.samples.pop_front();
            self.samples_base += 1;
        }
    }

    /// The speech has ended: the last mel frames (zero-padded) and the windows moved back from
    /// the end become known. Less than one window of speech is an error.
    pub fn finish(&mut self) -> Result<(), SpeechError> {
        if self.final_rows.is_some() {
            return Ok(());
        }
        let frames = 1 + self.samples_total / HOP;
        while self.mel_frames < frames {
            self.make_mel_frame();
        }
        if frames < WINDOW_FRAMES {
            return Err(SpeechError::TooShort {
                samples: self.samples_total,
                seconds: self.samples_total as f64 / f64::from(SAMPLE_RATE),
                frames,
            });
        }
        self.final_rows = Some(window_count(frames));
        Ok(())
    }

    /// Runs the encoder on every window whose mel frames are all there.
    pub fn encode_ready(&mut self, encoder: &AudioEncoder) -> Result<(), SpeechError> {
        let window_len = MEL_BANDS * WINDOW_FRAMES;
        let mut windows = Vec::new();
        loop {
            let start = match self.final_rows {
                Some(count) if self.next_window >= count => break,
                Some(_) => window_start(self.next_window).min(self.mel_frames - WINDOW_FRAMES),
                None => {
                    let start = window_start(self.next_window);
                    if start + WINDOW_FRAMES > self.mel_frames {
                        break;
                    }
                    start
                }
            };
            let at = windows.len();
            windows.resize(at + window_len, 0.0);
            write_window(&self.mel, self.mel_base, start, &mut windows[at..]);
            self.next_window += 1;
        }
        if windows.is_empty() {
            return Ok(());
        }
        self.rows.extend(encoder.encode(&windows)?);
        self.rows_total += windows.len() / window_len;
        // Later windows start at or after the next one's start.
        let keep_from =
            window_start(self.next_window).min(self.mel_frames.saturating_sub(WINDOW_FRAMES));
        if keep_from > self.mel_base {
            self.mel.drain(..(keep_from - self.mel_base) * MEL_BANDS);
            self.mel_base = keep_from;
        }
        Ok(())
    }

    /// Video frames the whole speech makes, once it has ended.
    pub fn total_frames(&self) -> Option<usize> {
        self.final_rows.map(|rows| rows + 2)
    }

    /// Feature row `feature` (of the N + 2: the first and the last encoder rows repeated), if
    /// known; `Some(None)` for rows past either end (zeros in the window).
    fn feature_row(&self, feature: isize) -> Option<Option<&[f32]>> {
        if feature < 0 {
            return Some(None);
        }
        let feature = feature as usize;
        let row = match self.final_rows {
            Some(rows) if feature >= rows + 2 => return Some(None),
            Some(rows) if feature == rows + 1 => rows - 1,
            _ => feature.saturating_sub(1),
        };
        if row >= self.rows_total {
            return None;
        }
        Some(Some(
            &self.rows[(row - self.rows_base) * ENCODER_WIDTH..][..ENCODER_WIDTH],
        ))
    }

    /// The mel frame where encoder row `row`'s window starts, once the row is known.
    fn row_start(&self, row: usize) -> usize {
        match self.final_rows {
            Some(_) => window_start(row).min(self.mel_frames - WINDOW_FRAMES),
            None => window_start(row),
        }
    }

    /// The hops (200 samples each) that the mel windows of encoder rows `rows` read: a mel frame
    /// `m` reads samples `200 m - 400 .. 200 m + 400`, and pre-emphasis one sample before.
    fn hops_of_rows(&self, rows: std::ops::RangeInclusive<usize>) -> std::ops::Range<usize> {
        self.row_start(*rows.start()).saturating_sub(3)
            ..self.row_start(*rows.end()) + WINDOW_FRAMES + 1
    }

    /// The encoder rows in video frame `frame`'s window (features `frame - 8 ..= frame + 7`,
    /// feature `j` being row `j - 1`, the first and last rows repeated).
    fn rows_of_frame(&self, frame: usize) -> std::ops::RangeInclusive<usize> {
        let last = self.final_rows.map_or(usize::MAX, |rows| rows - 1);
        frame.saturating_sub(9).min(last)..=(frame + 6).min(last)
    }

    /// The next video frame's feature window ([16][512], zeros past either end) into `window`,
    /// with its index and audio level, when every row of it is known.
    pub fn next_frame_window(&mut self, window: &mut Vec<f32>) -> Option<ReadyFrame> {
        let frame = self.next_frame;
        if self.total_frames().is_some_and(|total| frame >= total) {
            return None;
        }
        // The last row of the window decides whether it is complete.
        self.feature_row(frame as isize + 7)?;
        window.clear();
        window.resize(16 * ENCODER_WIDTH, 0.0);
        for (slot, feature) in (frame as isize - 8..frame as isize + 8).enumerate() {
            if let Some(Some(row)) = self.feature_row(feature) {
                window[slot * ENCODER_WIDTH..(slot + 1) * ENCODER_WIDTH].copy_from_slice(row);
            }
        }
        let hops = self.hops_of_rows(self.rows_of_frame(frame));
        // Hops not pushed yet are past the speech's end: the zero padding.
        let peak = self
            .hop_peaks
            .iter()
            .skip(hops.start.saturating_sub(self.peaks_base))
            .take(hops.end.saturating_sub(hops.start.max(self.peaks_base)))
            .fold(0.0f32, |peak, &hop| peak.max(hop));
        self.next_frame += 1;
        // Frame f + 1 needs rows from feature f - 7 on, which is encoder row f - 8.
        let keep_from = (frame + 1).saturating_sub(9);
        if keep_from > self.rows_base && keep_from <= self.rows_total {
            self.rows
                .drain(..(keep_from - self.rows_base) * ENCODER_WIDTH);
            self.rows_base = keep_from;
        }
        let keep_hops_from = self.hops_of_rows(self.rows_of_frame(frame + 1)).start;
        while self.peaks_base < keep_hops_from && !self.hop_peaks.is_empty() {
            self.hop_peaks.pop_front();
            self.peaks_base += 1;
        }
        Some(ReadyFrame { index: frame, peak })
    }

    /// Values held for later frames (samples, mel and rows), for tests of the memory bound.
    pub fn held_values(&self) -> usize {
        self.samples.len() + self.mel.len() + self.rows.len() + self.hop_peaks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::testing::DeclaredModel;
    use crate::inference::{Tensor, TensorSpec};

    /// An encoder-shaped model whose 512 outputs are sums over parts of its window, so every row
    /// tells which window it came from.
    struct WindowSums {
        declared: DeclaredModel,
    }

    impl WindowSums {
        fn new() -> Self {
            Self {
                declared: DeclaredModel::float32(
                    &[&[None, Some(1), Some(80), Some(16)]],
                    &[&[None, Some(512)]],
                ),
            }
        }
    }

    impl Backend for WindowSums {
        fn model_name(&self) -> &str {
            "window-sums"
        }
        fn inputs(&self) -> &[TensorSpec] {
            self.declared.inputs()
        }
        fn outputs(&self) -> &[TensorSpec] {
            self.declared.outputs()
        }
        fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, InferenceError> {
            let batch = inputs[0].shape[0];
            let mut data = Vec::with_capacity(batch * ENCODER_WIDTH);
            for window in inputs[0].data.chunks_exact(1280) {
                for j in 0..ENCODER_WIDTH {
                    data.push(window[(j * 5) % 1280] + window[(j * 11 + 3) % 1280] * 0.5);
                }
            }
            Ok(vec![Tensor {
                shape: vec![batch, ENCODER_WIDTH],
                data,
            }])
        }
    }

    fn speechlike(samples: usize) -> Vec<f32> {
        (0..samples)
            .map(|i| {
                let t = i as f32 / 16000.0;
                (0.3 * (t * 700.0).sin() + 0.2 * (t * 2900.0 + (t * 3.0).sin() * 40.0).sin())
                    * (t * 2.0).sin().abs()
            })
            .collect()
    }

    #[test]
    fn streamed_speech_gives_the_windows_of_the_whole() {
        let encoder = AudioEncoder::new(Arc::new(WindowSums::new())).unwrap();
        for (length, seed) in [(16000 * 3 + 123, 7u64), (3400, 11), (16000, 3)] {
            let samples = speechlike(length);
            let whole = speech_features(&samples, &encoder).unwrap();
            let mut stream = SpeechStream::new();
            let mut state = seed;
            let mut at = 0;
            let mut windows = Vec::new();
            let mut window = Vec::new();
            while at < samples.len() {
                // Pieces of 1 to 2000 samples, as buffers of any size may come.
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let piece = 1 + (state >> 33) as usize % 2000;
                let end = (at + piece).min(samples.len());
                stream.push(&samples[at..end]);
                stream.encode_ready(&encoder).unwrap();
                while let Some(frame) = stream.next_frame_window(&mut window) {
                    assert_eq!(frame.index, windows.len());
                    windows.push(window.clone());
                }
                at = end;
            }
            stream.finish().unwrap();
            stream.encode_ready(&encoder).unwrap();
            while let Some(frame) = stream.next_frame_window(&mut window) {
                assert_eq!(frame.index, windows.len());
                windows.push(window.clone());
            }
            assert_eq!(windows.len(), whole.frames(), "{length} samples");
            assert_eq!(stream.total_frames(), Some(whole.frames()));
            let mut expected = Vec::new();
            for (frame, window) in windows.iter().enumerate() {
                whole.window(frame, &mut expected);
                assert_eq!(window, &expected, "{length} samples: frame {frame}");
            }
        }
    }

    #[test]
    fn a_stream_holds_a_bounded_amount_however_long() {
        let encoder = AudioEncoder::new(Arc::new(WindowSums::new())).unwrap();
        let mut stream = SpeechStream::new();
        let second = speechlike(16000);
        let mut window = Vec::new();
        let mut most = 0;
        for _ in 0..20 {
            for piece in second.chunks(640) {
                stream.push(piece);
                stream.encode_ready(&encoder).unwrap();
                while stream.next_frame_window(&mut window).is_some() {}
                most = most.max(stream.held_values());
            }
        }
        // About half a second of samples, a few windows of mel, 17 rows: well under 30k values.
        assert!(most < 30_000, "held {most} values");
    }

    /// Every frame's window and peak, the speech pushed in pieces of `piece` samples.
    fn frames_of(samples: &[f32], piece: usize, encoder: &AudioEncoder) -> Vec<(Vec<f32>, f32)> {
        let mut stream = SpeechStream::new();
        let mut frames = Vec::new();
        let mut window = Vec::new();
        for chunk in samples.chunks(piece) {
            stream.push(chunk);
            stream.encode_ready(encoder).unwrap();
            while let Some(frame) = stream.next_frame_window(&mut window) {
                assert_eq!(frame.index, frames.len());
                frames.push((window.clone(), frame.peak));
            }
        }
        stream.finish().unwrap();
        stream.encode_ready(encoder).unwrap();
        while let Some(frame) = stream.next_frame_window(&mut window) {
            frames.push((window.clone(), frame.peak));
        }
        frames
    }

    #[test]
    fn a_frame_is_silent_only_when_its_features_are_those_of_silence() {
        let encoder = AudioEncoder::new(Arc::new(WindowSums::new())).unwrap();
        let silence = frames_of(&vec![0.0; 16000 * 3], 640, &encoder);
        // One click at a time, at the start, inside and at the end of three seconds.
        for click in [0, 1, 199, 200, 4321, 24_000, 24_639, 47_000, 47_999] {
            let mut samples = vec![0.0; 16000 * 3];
            samples[click] = 0.5;
            let clicked = frames_of(&samples, 640, &encoder);
            assert_eq!(clicked.len(), silence.len());
            let loud: Vec<usize> = (0..clicked.len()).filter(|&f| clicked[f].1 > 0.0).collect();
            for (frame, ((window, peak), (quiet, _))) in clicked.iter().zip(&silence).enumerate() {
                if window != quiet {
                    assert_eq!(
                        *peak, 0.5,
                        "click at {click}: frame {frame} changed but is silent"
                    );
                }
            }
            // The features of frame f read about f x 640 - 6400 ..= f x 640 + 7240: 22 frames.
            let expected = click / 640;
            assert!(
                !loud.is_empty() && loud.len() <= 23,
                "click {click}: {loud:?}"
            );
            assert!(
                loud.contains(&expected.min(clicked.len() - 1)),
                "click {click}: {loud:?}"
            );
            // The same levels whatever the buffer size.
            for piece in [1, 333, 5000] {
                let peaks: Vec<f32> = frames_of(&samples, piece, &encoder)
                    .iter()
                    .map(|f| f.1)
                    .collect();
                let expected: Vec<f32> = clicked.iter().map(|f| f.1).collect();
                assert_eq!(peaks, expected, "click {click}, pieces of {piece}");
            }
        }
    }

    #[test]
    fn the_lookahead_is_the_mel_window_and_seven_rows() {
        let lookahead = SpeechStream::lookahead().as_secs_f64();
        assert!((lookahead - 0.505).abs() < 1e-9, "{lookahead}");
    }

    #[test]
    fn a_stream_shorter_than_a_window_is_refused_at_its_end() {
        let mut stream = SpeechStream::new();
        stream.push(&speechlike(2000));
        assert!(matches!(stream.finish(), Err(SpeechError::TooShort { .. })));
    }

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

    #[test]
    fn a_float16_encoder_is_taken_locally_and_named_for_a_server() {
        let encoder = |converts: bool| {
            DeclaredModel::float32(
                &[&[None, Some(1), Some(80), Some(16)]],
                &[&[None, Some(512)]],
            )
            .float16(converts)
        };
        assert!(AudioEncoder::new(Arc::new(encoder(true))).is_ok());
        let err = AudioEncoder::new(Arc::new(encoder(false)))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("expected one float32 input") && err.contains("float16 [?,1,80,16]"),
            "{err}"
        );
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
