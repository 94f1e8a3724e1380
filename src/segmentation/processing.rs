//! rembg's `normalize()` and `predict()` in Rust, in three steps that can run on different
//! threads: prepare (frame -> model tensor), the model run (timed here and nowhere else), and
//! finish (model outputs -> mask at frame size). The steps share only the `Arc<dyn Backend>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::imageops::{ImageRef, PixelLayout, ResizeError, Resizer};
use crate::inference::{Backend, InferenceError, ShapeDisplay, Tensor, TensorView};

use super::catalog::{InputSizing, ModelProfile, OutputTransform, PixelScale, TensorLayout};
use super::recurrent::RecurrentSignature;

#[derive(Debug, thiserror::Error)]
pub enum SegmenterError {
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error(transparent)]
    Resize(#[from] ResizeError),
    #[error("model {model}: {reason}")]
    Recurrent { model: String, reason: String },
    #[error(
        "model {model} returned output of shape {shape:?}; expected a mask of at least {min}x{min}"
    )]
    Output {
        model: String,
        shape: Vec<usize>,
        min: usize,
    },
}

/// The largest model input side accepted: 4096x4096x3 floats is 200 MB, far beyond any
/// segmentation model, so a larger declared size is a broken export, not something to allocate.
pub const MAX_INPUT_SIDE: usize = 4096;

/// One run of the model: its outputs and how long the model itself took.
#[derive(Debug)]
pub struct ModelRun {
    pub outputs: Vec<Tensor>,
    pub time: Duration,
}

/// A model input as [`Preparer::prepare`] fills it: the values and their shape (fixed by the
/// model, or the frame's own size for a whole-frame model). Reused from frame to frame.
#[derive(Debug, Default, Clone)]
pub struct ModelInput {
    pub data: Vec<f32>,
    pub shape: [usize; 4],
}

/// The segmentation model, checked to take what [`Preparer`] makes. Cheap to clone: every clone
/// runs the same backend.
#[derive(Clone)]
pub struct SegmentationModel {
    backend: Arc<dyn Backend>,
    input_shape: [usize; 4],
}

impl std::fmt::Debug for SegmentationModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentationModel")
            .field("model", &self.backend.model_name())
            .field("input_shape", &self.input_shape)
            .finish()
    }
}

impl SegmentationModel {
    /// Runs the model on one input that [`Preparer::prepare`] filled.
    pub fn run(&self, input: &ModelInput) -> Result<ModelRun, InferenceError> {
        let started = Instant::now();
        // The mask is the first output; the others (u2netp's side outputs) are not used.
        let mask = self.backend.run_first(&[TensorView {
            shape: &input.shape,
            data: &input.data,
        }])?;
        Ok(ModelRun {
            outputs: vec![mask],
            time: started.elapsed(),
        })
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The shape of the tensor the model takes (`[1,0,0,3]` for a whole-frame model: any size).
    pub fn input_shape(&self) -> &[usize; 4] {
        &self.input_shape
    }
}

/// rembg's `normalize()`: resize to the model size, scale, subtract mean, divide by std.
#[derive(Debug)]
pub struct Preparer {
    profile: ModelProfile,
    resizer: Resizer,
    resized: Vec<u8>,
}

impl Preparer {
    fn new(profile: ModelProfile) -> Self {
        Self {
            profile,
            resizer: Resizer::new(),
            resized: Vec::new(),
        }
    }

    /// Fills `input` (its allocation reused) with the model input made from `frame`.
    pub fn prepare(
        &mut self,
        frame: &ImageRef<'_>,
        input: &mut ModelInput,
    ) -> Result<(), SegmenterError> {
        let (width, height) = self
            .profile
            .sizing
            .size_for(self.profile.input_size, (frame.width, frame.height));
        let layout = frame.layout;
        let bpp = layout.bytes_per_pixel;
        self.resized.resize(width * height * bpp, 0);
        self.resizer.resize(
            frame,
            &mut self.resized,
            width,
            height,
            self.profile.input_filter,
        )?;
        input.shape = match self.profile.layout {
            TensorLayout::Nchw => [1, 3, height, width],
            TensorLayout::Nhwc => [1, height, width, 3],
        };
        let tensor = &mut input.data;

        let pixels = || self.resized.chunks_exact(bpp);
        let divisor = match self.profile.scale {
            PixelScale::ImageMax => {
                let brightest = pixels()
                    .map(|p| p[layout.red].max(p[layout.green]).max(p[layout.blue]))
                    .max()
                    .unwrap_or(0);
                // rembg divides by max(max, 1e-6): a black frame stays black instead of NaN.
                f64::from(brightest).max(1e-6)
            }
            PixelScale::Fixed(value) => f64::from(value),
        };
        // rembg does this arithmetic in float64 and casts the result to float32.
        let mean = self.profile.mean.map(f64::from);
        let std = self.profile.std.map(f64::from);
        // Each channel's value depends on its byte alone: a table of 256 per channel gives the
        // same float32 as the float64 arithmetic, without two divisions per value.
        let table: [[f32; 256]; 3] = std::array::from_fn(|c| {
            std::array::from_fn(|v| ((v as f64 / divisor - mean[c]) / std[c]) as f32)
        });
        let offsets = [layout.red, layout.green, layout.blue];
        let channel = |p: &[u8], c: usize| table[c][usize::from(p[offsets[c]])];
        let plane = width * height;
        tensor.resize(plane * 3, 0.0);
        match self.profile.layout {
            TensorLayout::Nchw => {
                let (red, rest) = tensor.split_at_mut(plane);
                let (green, blue) = rest.split_at_mut(plane);
                for (i, p) in self.resized.chunks_exact(bpp).enumerate() {
                    red[i] = channel(p, 0);
                    green[i] = channel(p, 1);
                    blue[i] = channel(p, 2);
                }
            }
            TensorLayout::Nhwc => {
                for (out, p) in tensor
                    .chunks_exact_mut(3)
                    .zip(self.resized.chunks_exact(bpp))
                {
                    out[0] = channel(p, 0);
                    out[1] = channel(p, 1);
                    out[2] = channel(p, 2);
                }
            }
        }
        Ok(())
    }
}

/// rembg's `predict()` after the model: first output, first channel, to 8 bits, resized to the
/// frame.
#[derive(Debug)]
pub struct Finisher {
    model_name: String,
    profile: ModelProfile,
    resizer: Resizer,
    small_mask: Vec<u8>,
    /// NaN or infinite mask values seen so far, by this finisher and its fresh copies.
    non_finite: Arc<AtomicU64>,
}

impl Finisher {
    fn new(model_name: String, profile: ModelProfile, non_finite: Arc<AtomicU64>) -> Self {
        Self {
            model_name,
            profile,
            resizer: Resizer::new(),
            small_mask: Vec::new(),
            non_finite,
        }
    }

    /// How many NaN or infinite mask values the model has given so far (they count as 0,
    /// background).
    pub fn non_finite_values(&self) -> u64 {
        self.non_finite.load(Ordering::Relaxed)
    }

    /// Writes the mask of a `frame_width` x `frame_height` frame into `mask`.
    pub fn finish(
        &mut self,
        outputs: &[Tensor],
        frame_width: usize,
        frame_height: usize,
        mask: &mut [u8],
    ) -> Result<(), SegmenterError> {
        let Some(output) = outputs.first() else {
            return Err(self.output_error(&[]));
        };
        let (mask_width, mask_height, channel_stride) =
            self.mask_geometry(output, (frame_width, frame_height))?;
        let values = output
            .data
            .iter()
            .step_by(channel_stride)
            .take(mask_width * mask_height);
        self.small_mask.clear();
        // A NaN or infinite value is background (0) and is counted, so the element can say so;
        // it takes no part in the min-max range.
        let non_finite = values.clone().filter(|v| !v.is_finite()).count();
        match self.profile.output {
            OutputTransform::MinMax => min_max_bytes(values.copied(), &mut self.small_mask),
            // rembg's BiRefNet sessions: 1 / (1 + exp(-x)) in float32, then the same min-max.
            OutputTransform::SigmoidMinMax => min_max_bytes(
                values.map(|&v| 1.0 / (1.0 + (-v).exp())),
                &mut self.small_mask,
            ),
            OutputTransform::Probability => self
                .small_mask
                .extend(values.map(|&v| unit_to_byte(v, Rounding::Nearest))),
            OutputTransform::ProbabilityTruncated => self
                .small_mask
                .extend(values.map(|&v| unit_to_byte(v, Rounding::Down))),
        }
        if non_finite > 0 {
            self.non_finite
                .fetch_add(non_finite as u64, Ordering::Relaxed);
        }
        let small = ImageRef::packed(
            &self.small_mask,
            mask_width,
            mask_height,
            PixelLayout::new(1, 0, 0, 0),
        );
        self.resizer.resize(
            &small,
            mask,
            frame_width,
            frame_height,
            self.profile.mask_filter,
        )?;
        Ok(())
    }

    fn output_error(&self, shape: &[usize]) -> SegmenterError {
        SegmenterError::Output {
            model: self.model_name.clone(),
            shape: shape.to_vec(),
            min: 2,
        }
    }

    /// Width, height and element step of the first channel in the model's first output: at
    /// least 2x2 (a smaller mask of a fixed-size model is a broken export), or exactly the
    /// frame's size (a model that works at the frame's size, on a frame of 1 pixel a side).
    fn mask_geometry(
        &self,
        output: &Tensor,
        frame: (usize, usize),
    ) -> Result<(usize, usize, usize), SegmenterError> {
        let shape = &output.shape;
        let (height, width, stride) = match (shape.len(), self.profile.layout) {
            (4, TensorLayout::Nchw) => (shape[2], shape[3], 1),
            (4, TensorLayout::Nhwc) => (shape[1], shape[2], shape[3]),
            (3, _) => (shape[1], shape[2], 1),
            (2, _) => (shape[0], shape[1], 1),
            _ => (0, 0, 1),
        };
        let needed = width
            .checked_mul(height)
            .and_then(|pixels| pixels.checked_mul(stride));
        let big_enough =
            (width >= 2 && height >= 2) || ((width, height) == frame && width > 0 && height > 0);
        if !big_enough || stride == 0 || needed.is_none_or(|n| output.data.len() < n) {
            return Err(self.output_error(shape));
        }
        Ok((width, height, stride))
    }
}

/// How a 0..1 value becomes one of 256 levels.
#[derive(Clone, Copy)]
enum Rounding {
    Nearest,
    /// As numpy's `astype("uint8")` does.
    Down,
}

/// A model's 0..1 value (a probability, a colour) as a byte: clamped, times 255, rounded as
/// `rounding` says; NaN or infinite is 0.
fn unit_to_byte(value: f32, rounding: Rounding) -> u8 {
    if !value.is_finite() {
        return 0;
    }
    let scaled = value.clamp(0.0, 1.0) * 255.0;
    match rounding {
        Rounding::Nearest => scaled.round() as u8,
        Rounding::Down => scaled as u8,
    }
}

/// rembg's min-max: the output's own finite minimum..maximum stretched to 0..255, in the same
/// float32 steps as numpy ((pred - mi) / (ma - mi), clip, * 255, truncate). A NaN or infinite
/// value is background (0) and takes no part in the range; a constant output (range 0, NaN in
/// numpy) gives an empty mask.
fn min_max_bytes(values: impl Iterator<Item = f32> + Clone, bytes: &mut Vec<u8>) {
    let (lo, hi) = values
        .clone()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    bytes.extend(values.map(|v| {
        let normalized = (v - lo) / range;
        if normalized.is_finite() {
            (normalized.clamp(0.0, 1.0) * 255.0) as u8
        } else {
            0
        }
    }));
}

/// The three steps for one thread: a frame in, its mask out.
#[derive(Debug)]
pub struct Segmenter {
    pub preparer: Preparer,
    pub model: SegmentationModel,
    pub finisher: Finisher,
    input: ModelInput,
    /// A recurrent model's tensors and the state its last frame left.
    recurrent: Option<Recurrent>,
    /// The foreground colour the model gave for its last frame (packed RGB at the frame's
    /// size), for models that output one (RVM's `fgr`); empty otherwise.
    foreground: Vec<u8>,
}

/// What a recurrent model (see [`super::recurrent`]) carries from frame to frame.
#[derive(Debug, Clone)]
struct Recurrent {
    signature: RecurrentSignature,
    /// `downsample-ratio`: 0 for RVM's advice by frame size.
    ratio_setting: f64,
    /// Per state, what the last frame returned; `None` at a start (zeros of shape [1,1,1,1]).
    states: Vec<Option<Tensor>>,
}

impl Recurrent {
    fn new(signature: RecurrentSignature) -> Self {
        let states = vec![None; signature.states.len()];
        Self {
            signature,
            ratio_setting: 0.0,
            states,
        }
    }

    fn fresh_copy(&self) -> Self {
        Self {
            states: vec![None; self.states.len()],
            ..self.clone()
        }
    }
}

impl Segmenter {
    /// Checks that the model takes one `[1,3,H,W]` (or `[1,H,W,3]`) float image and gives at
    /// least one output. Fixed dimensions in the model win over the profile's input size, so a
    /// re-export of a catalog model at another size still works. A model with recurrent state
    /// (named as [`super::recurrent`] says) is run as one, whatever `profile` says.
    pub fn new(backend: Arc<dyn Backend>, profile: ModelProfile) -> Result<Self, SegmenterError> {
        match RecurrentSignature::recognise(backend.inputs(), backend.outputs(), &[]) {
            Ok(None) => Self::single_input(backend, profile),
            Ok(Some(signature)) => Self::recurrent(backend, signature),
            Err(reason) => Err(SegmenterError::Recurrent {
                model: backend.model_name().to_string(),
                reason,
            }),
        }
    }

    /// A recurrent model whose state is fed through the `pairs` (input, output) it names.
    pub fn new_recurrent(
        backend: Arc<dyn Backend>,
        pairs: &[(String, String)],
    ) -> Result<Self, SegmenterError> {
        let failure = |reason: String| SegmenterError::Recurrent {
            model: backend.model_name().to_string(),
            reason,
        };
        let signature = RecurrentSignature::recognise(backend.inputs(), backend.outputs(), pairs)
            .map_err(failure)?
            .ok_or_else(|| failure("recurrent-state names no state".into()))?;
        Self::recurrent(backend, signature)
    }

    /// RVM's processing: the frame at its own size, RGB divided by 255, NCHW; the alpha output
    /// is a probability at the frame's size.
    fn recurrent(
        backend: Arc<dyn Backend>,
        signature: RecurrentSignature,
    ) -> Result<Self, SegmenterError> {
        let model = backend.model_name().to_string();
        let failure = |reason: String| SegmenterError::Recurrent {
            model: model.clone(),
            reason,
        };
        let image = &backend.inputs()[signature.image];
        let channels_fit = image.shape.get(1).copied().flatten().is_none_or(|c| c == 3);
        if !channels_fit || !backend.converts(&image.element_type) {
            return Err(failure(format!(
                "its frame input '{}' is {} {}; expected {} [1,3,H,W]",
                image.name,
                image.element_type,
                ShapeDisplay(&image.shape),
                backend.float_types()
            )));
        }
        // The frame goes in at its own size, whatever it is (the signature made it rank 4).
        if image.shape[2].is_some() || image.shape[3].is_some() {
            return Err(failure(format!(
                "its frame input '{}' is {}: a recurrent model is fed each frame at the frame's \
                 own size, so its height and width must be dynamic ([1,3,?,?])",
                image.name,
                ShapeDisplay(&image.shape)
            )));
        }
        for spec in backend.inputs().iter().chain(backend.outputs()) {
            if !backend.converts(&spec.element_type) {
                return Err(failure(format!(
                    "tensor '{}' is {}; expected {}",
                    spec.name,
                    spec.element_type,
                    backend.float_types()
                )));
            }
        }
        let profile = ModelProfile::RECURRENT;
        Ok(Self {
            preparer: Preparer::new(profile),
            finisher: Finisher::new(model, profile, Arc::default()),
            model: SegmentationModel {
                backend,
                input_shape: [1, 3, 0, 0],
            },
            input: ModelInput::default(),
            recurrent: Some(Recurrent::new(signature)),
            foreground: Vec::new(),
        })
    }

    /// Whether the model carries state from frame to frame: it must then see every frame, in
    /// order.
    pub fn is_recurrent(&self) -> bool {
        self.recurrent.is_some()
    }

    /// `downsample-ratio` of a recurrent model: 0 for RVM's advice by frame size.
    pub fn set_downsample_ratio(&mut self, ratio: f64) {
        if let Some(recurrent) = &mut self.recurrent {
            recurrent.ratio_setting = ratio;
        }
    }

    /// Where the stream starts afresh (start, flush, seek, new caps, a discontinuity): a
    /// recurrent model's state goes back to zeros.
    pub fn restart_state(&mut self) {
        if let Some(recurrent) = &mut self.recurrent {
            recurrent.states.iter_mut().for_each(|state| *state = None);
        }
    }

    fn single_input(
        backend: Arc<dyn Backend>,
        mut profile: ModelProfile,
    ) -> Result<Self, SegmenterError> {
        let model = backend.model_name().to_string();
        let inputs = backend.inputs();
        let float = backend.float_types();
        let expected = match profile.layout {
            TensorLayout::Nchw => format!("one {float} input of shape [1,3,H,W]"),
            TensorLayout::Nhwc => format!("one {float} input of shape [1,H,W,3]"),
        };
        let shape_error = |found: String| InferenceError::Shape {
            model: model.clone(),
            found,
            expected: format!("a segmentation model needs {expected}"),
        };
        let [input] = inputs else {
            return Err(shape_error(format!("{} inputs", inputs.len())).into());
        };
        let found = || {
            format!(
                "input '{}' of shape {}",
                input.name,
                ShapeDisplay(&input.shape)
            )
        };
        if !backend.converts(&input.element_type) {
            return Err(shape_error(format!(
                "input '{}' of type {}",
                input.name, input.element_type
            ))
            .into());
        }
        let (channel_axis, height_axis, width_axis) = match profile.layout {
            TensorLayout::Nchw => (1, 2, 3),
            TensorLayout::Nhwc => (3, 1, 2),
        };
        let fits = |axis: usize, want: usize| input.shape[axis].is_none_or(|d| d == want);
        if input.shape.len() != 4 || !fits(0, 1) || !fits(channel_axis, 3) {
            return Err(shape_error(found()).into());
        }
        let height = input.shape[height_axis].unwrap_or(profile.input_size.1);
        let width = input.shape[width_axis].unwrap_or(profile.input_size.0);
        let any_size = input.shape[height_axis].is_none() && input.shape[width_axis].is_none();
        let fixed_size = input.shape[height_axis].is_some() && input.shape[width_axis].is_some();
        match profile.sizing {
            InputSizing::WholeFrame if !any_size => {
                return Err(InferenceError::Shape {
                    model: model.clone(),
                    found: found(),
                    expected: "a whole-frame model takes frames of any size ([1,?,?,3])".into(),
                }
                .into());
            }
            // An export at one fixed size runs at that size.
            InputSizing::ShorterSideNear { .. } if fixed_size => {
                profile.sizing = InputSizing::Fixed
            }
            InputSizing::ShorterSideNear { .. } if !any_size => {
                return Err(InferenceError::Shape {
                    model: model.clone(),
                    found: found(),
                    expected: format!(
                        "a model sized by the frame takes any height and width ({}), or one \
                         fixed size",
                        match profile.layout {
                            TensorLayout::Nchw => "[1,3,?,?]",
                            TensorLayout::Nhwc => "[1,?,?,3]",
                        }
                    ),
                }
                .into());
            }
            _ => {}
        }
        if (width == 0 || height == 0) && profile.sizing == InputSizing::Fixed {
            return Err(shape_error(found()).into());
        }
        if width > MAX_INPUT_SIDE || height > MAX_INPUT_SIDE {
            return Err(InferenceError::Shape {
                model: model.clone(),
                found: found(),
                expected: format!(
                    "a segmentation input of at most {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE} pixels"
                ),
            }
            .into());
        }
        let mask_expected = match profile.layout {
            TensorLayout::Nchw => format!("a {float} mask output [1,1,H,W] (or [1,H,W], [H,W])"),
            TensorLayout::Nhwc => format!("a {float} mask output [1,H,W,1] (or [1,H,W], [H,W])"),
        };
        let Some(output) = backend.outputs().first() else {
            return Err(InferenceError::Shape {
                model: model.clone(),
                found: "no outputs".into(),
                expected: format!("a segmentation model needs {mask_expected}"),
            }
            .into());
        };
        // The first output must be able to hold a mask: [H,W], [1,H,W] or a batch of one with
        // the mask in its first channel, H and W at least 2 where declared.
        let side = |d: Option<usize>| d.is_none_or(|d| d >= 2);
        let one = |d: Option<usize>| d.is_none_or(|d| d == 1);
        let holds_mask = match (output.shape.as_slice(), profile.layout) {
            ([h, w], _) => side(*h) && side(*w),
            ([n, h, w], _) => one(*n) && side(*h) && side(*w),
            ([n, _, h, w], TensorLayout::Nchw) | ([n, h, w, _], TensorLayout::Nhwc) => {
                one(*n) && side(*h) && side(*w)
            }
            _ => false,
        };
        if !holds_mask || !backend.converts(&output.element_type) {
            return Err(InferenceError::Shape {
                model: model.clone(),
                found: format!(
                    "output '{}' {} {}",
                    output.name,
                    output.element_type,
                    ShapeDisplay(&output.shape)
                ),
                expected: format!("a segmentation model needs {mask_expected}"),
            }
            .into());
        }
        profile.input_size = (width, height);
        let input_shape = match profile.layout {
            TensorLayout::Nchw => [1, 3, height, width],
            TensorLayout::Nhwc => [1, height, width, 3],
        };
        Ok(Self {
            preparer: Preparer::new(profile),
            finisher: Finisher::new(model, profile, Arc::default()),
            model: SegmentationModel {
                backend,
                input_shape,
            },
            input: ModelInput::default(),
            recurrent: None,
            foreground: Vec::new(),
        })
    }

    /// Another segmenter for another thread: the same model, buffers of its own (and a
    /// recurrent model's state from the start).
    pub fn fresh_copy(&self) -> Self {
        Self {
            preparer: Preparer::new(self.preparer.profile),
            finisher: Finisher::new(
                self.finisher.model_name.clone(),
                self.finisher.profile,
                self.finisher.non_finite.clone(),
            ),
            model: self.model.clone(),
            input: ModelInput::default(),
            recurrent: self.recurrent.as_ref().map(Recurrent::fresh_copy),
            foreground: Vec::new(),
        }
    }

    /// Hands the foreground colour the model gave with its last mask (packed RGB, the frame's
    /// size; empty if it gives none) to `kept`, taking `kept`'s old buffer to fill next time:
    /// a 1080p colour frame is 6 MB, not worth copying every frame.
    pub fn swap_model_foreground(&mut self, kept: &mut Vec<u8>) {
        std::mem::swap(&mut self.foreground, kept);
    }

    /// The profile in force, with the input size the model declares.
    pub fn profile(&self) -> &ModelProfile {
        &self.preparer.profile
    }

    /// Runs the model once on a grey frame: the latency a live stream reports, and a warm-up
    /// (the first run of a session is the slowest) before its first frame.
    pub fn measure_latency(&mut self) -> Result<Duration, SegmenterError> {
        let profile = self.profile();
        // A whole-frame service takes any size: probe it with a small frame; a model sized by
        // the frame with a 16:9 frame at its reference size (1080p's cost).
        let (width, height) = match profile.sizing {
            InputSizing::Fixed => profile.input_size,
            InputSizing::WholeFrame => (320, 240),
            InputSizing::ShorterSideNear { side, .. } => (side * 16 / 9, side),
        };
        let frame = vec![128u8; width * height * 3];
        let mut mask = vec![0u8; width * height];
        let started = std::time::Instant::now();
        self.compute_mask(
            &ImageRef::packed(&frame, width, height, PixelLayout::RGB),
            &mut mask,
        )?;
        Ok(started.elapsed())
    }

    /// Computes the mask of `frame` into `mask` (one byte per pixel, `frame.width` per row);
    /// returns how long the model itself took.
    pub fn compute_mask(
        &mut self,
        frame: &ImageRef<'_>,
        mask: &mut [u8],
    ) -> Result<Duration, SegmenterError> {
        self.preparer.prepare(frame, &mut self.input)?;
        if self.recurrent.is_some() {
            return self.compute_recurrent_mask(frame, mask);
        }
        let run = self.model.run(&self.input)?;
        self.finisher
            .finish(&run.outputs, frame.width, frame.height, mask)?;
        Ok(run.time)
    }

    /// One frame through a recurrent model: the frame, the ratio and the state in, the alpha to
    /// `mask` and the next state kept.
    fn compute_recurrent_mask(
        &mut self,
        frame: &ImageRef<'_>,
        mask: &mut [u8],
    ) -> Result<Duration, SegmenterError> {
        let recurrent = self.recurrent.as_mut().expect("a recurrent model");
        let signature = &recurrent.signature;
        let ratio = [super::recurrent::downsample_ratio(
            recurrent.ratio_setting,
            frame.width,
            frame.height,
        )];
        const START_SHAPE: [usize; 4] = [1, 1, 1, 1];
        const START: [f32; 1] = [0.0];
        let backend = self.model.backend.clone();
        let inputs: Vec<TensorView<'_>> = (0..backend.inputs().len())
            .map(|i| {
                if i == signature.image {
                    return TensorView {
                        shape: &self.input.shape,
                        data: &self.input.data,
                    };
                }
                if Some(i) == signature.ratio {
                    return TensorView {
                        shape: &[1],
                        data: &ratio,
                    };
                }
                let state = signature
                    .states
                    .iter()
                    .position(|s| s.0 == i)
                    .and_then(|k| recurrent.states[k].as_ref());
                match state {
                    Some(tensor) => TensorView {
                        shape: &tensor.shape,
                        data: &tensor.data,
                    },
                    None => TensorView {
                        shape: &START_SHAPE,
                        data: &START,
                    },
                }
            })
            .collect();
        let started = Instant::now();
        let mut outputs = backend.run(&inputs)?;
        let time = started.elapsed();
        drop(inputs);
        if outputs.len() != backend.outputs().len() {
            return Err(SegmenterError::Recurrent {
                model: backend.model_name().to_string(),
                reason: format!(
                    "returned {} outputs; it declares {}",
                    outputs.len(),
                    backend.outputs().len()
                ),
            });
        }
        let alpha = std::mem::take(&mut outputs[signature.alpha]);
        for (k, &(_, output)) in signature.states.iter().enumerate() {
            recurrent.states[k] = Some(std::mem::take(&mut outputs[output]));
        }
        self.foreground.clear();
        if let Some(index) = signature.foreground {
            let fgr = &outputs[index];
            let (width, height) = (frame.width, frame.height);
            if fgr.shape != [1, 3, height, width] || fgr.data.len() != 3 * width * height {
                return Err(SegmenterError::Recurrent {
                    model: backend.model_name().to_string(),
                    reason: format!(
                        "its foreground output '{}' came back {:?}; expected [1,3,{height},{width}], \
                         the frame's size",
                        backend.outputs()[index].name,
                        fgr.shape
                    ),
                });
            }
            // NCHW 0..1 to packed RGB bytes.
            let plane = width * height;
            self.foreground.resize(plane * 3, 0);
            for (i, pixel) in self.foreground.chunks_exact_mut(3).enumerate() {
                for (c, value) in pixel.iter_mut().enumerate() {
                    *value = unit_to_byte(fgr.data[c * plane + i], Rounding::Nearest);
                }
            }
        }
        self.finisher
            .finish(&[alpha], frame.width, frame.height, mask)?;
        Ok(time)
    }
}

/// Writes `src`'s colour and `mask` as alpha into `dst`, a 4-byte-per-pixel frame whose first
/// three bytes keep `src`'s channel order (RGB -> RGBA, BGRx -> BGRA). Rows are spread over the
/// cores: at 1080p this is 2 million pixels per frame.
pub fn attach_alpha(src: &ImageRef<'_>, mask: &[u8], dst: &mut [u8], dst_stride: usize) {
    use rayon::prelude::*;

    let width = src.width;
    let with_ssse3 = has_ssse3();
    dst.par_chunks_mut(dst_stride)
        .zip(mask.par_chunks(width))
        .enumerate()
        .take(src.height)
        .for_each(|(y, (dst_row, mask_row))| {
            let src_row = &src.row(y)[..width * src.layout.bytes_per_pixel];
            let dst_row = &mut dst_row[..width * 4];
            attach_alpha_row(src_row, &mask_row[..width], dst_row, with_ssse3);
        });
}

fn has_ssse3() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("ssse3")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One row of [`attach_alpha`]: `src` holds `mask.len()` pixels of 3 or 4 bytes, `dst` as many
/// of 4. With SSSE3, 16 pixels at a time go through byte shuffles; the rest byte by byte.
fn attach_alpha_row(src: &[u8], mask: &[u8], dst: &mut [u8], with_ssse3: bool) {
    let width = mask.len();
    if width == 0 {
        return;
    }
    let bpp = src.len() / width;
    assert!(src.len() == width * bpp && (bpp == 3 || bpp == 4));
    assert_eq!(dst.len(), width * 4);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if with_ssse3 {
        // SAFETY: SSSE3 was detected; the asserts above size the three rows for the whole
        // blocks of 16 pixels that the kernel reads and writes.
        done = unsafe { attach_alpha_blocks_ssse3(src, bpp, mask, dst) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = with_ssse3;
    for ((out, pixel), &alpha) in dst[done * 4..]
        .chunks_exact_mut(4)
        .zip(src[done * bpp..].chunks_exact(bpp))
        .zip(&mask[done..])
    {
        out.copy_from_slice(&[pixel[0], pixel[1], pixel[2], alpha]);
    }
}

/// The whole blocks of 16 pixels of [`attach_alpha_row`]; returns how many pixels it wrote.
///
/// # Safety
/// SSSE3 must be present, `src` must hold `mask.len()` pixels of `bpp` (3 or 4) bytes and `dst`
/// `mask.len()` pixels of 4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn attach_alpha_blocks_ssse3(src: &[u8], bpp: usize, mask: &[u8], dst: &mut [u8]) -> usize {
    use std::arch::x86_64::*;
    const Z: i8 = -0x80; // a shuffle index that writes 0
    unsafe {
        // Four 3-byte pixels into the first three bytes of four 4-byte ones.
        let spread = _mm_setr_epi8(0, 1, 2, Z, 3, 4, 5, Z, 6, 7, 8, Z, 9, 10, 11, Z);
        // The same four pixels found 4 bytes into a load (the last group of a block, loaded
        // from byte 32 so that the 16-byte load stays inside the block's 48 bytes).
        let spread_late = _mm_setr_epi8(4, 5, 6, Z, 7, 8, 9, Z, 10, 11, 12, Z, 13, 14, 15, Z);
        let keep_colour = _mm_setr_epi8(-1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0);
        // Alpha bytes 4g..4g+4 of the block into the fourth byte of each pixel of group g.
        let alpha_of = |g: i8| {
            _mm_setr_epi8(
                Z,
                Z,
                Z,
                4 * g,
                Z,
                Z,
                Z,
                4 * g + 1,
                Z,
                Z,
                Z,
                4 * g + 2,
                Z,
                Z,
                Z,
                4 * g + 3,
            )
        };
        let alpha_shuffles = [alpha_of(0), alpha_of(1), alpha_of(2), alpha_of(3)];
        let blocks = mask.len() / 16;
        for block in 0..blocks {
            let alphas = _mm_loadu_si128(mask.as_ptr().add(16 * block).cast());
            let from = src.as_ptr().add(16 * bpp * block);
            let to = dst.as_mut_ptr().add(64 * block);
            for (g, alpha_shuffle) in alpha_shuffles.iter().enumerate() {
                let colour = if bpp == 4 {
                    let pixels = _mm_loadu_si128(from.add(16 * g).cast());
                    _mm_and_si128(pixels, keep_colour)
                } else if g < 3 {
                    _mm_shuffle_epi8(_mm_loadu_si128(from.add(12 * g).cast()), spread)
                } else {
                    _mm_shuffle_epi8(_mm_loadu_si128(from.add(32).cast()), spread_late)
                };
                let alpha = _mm_shuffle_epi8(alphas, *alpha_shuffle);
                _mm_storeu_si128(to.add(16 * g).cast(), _mm_or_si128(colour, alpha));
            }
        }
        blocks * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::testing::DeclaredModel;

    fn declaring(shape: [Option<usize>; 4]) -> Arc<dyn Backend> {
        Arc::new(DeclaredModel::float32(
            &[&shape],
            &[&[Some(1), Some(1), None, None]],
        ))
    }

    #[test]
    fn a_model_declaring_a_huge_input_is_refused_naming_the_shape() {
        let err = Segmenter::new(
            declaring([Some(1), Some(3), Some(100_000), Some(100_000)]),
            ModelProfile::U2NET,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("[1,3,100000,100000]") && err.contains("at most 4096x4096"),
            "{err}"
        );
        let fits = Segmenter::new(
            declaring([Some(1), Some(3), Some(4096), Some(4096)]),
            ModelProfile::U2NET,
        );
        assert!(fits.is_ok());
        // Dynamic sides take the profile's size.
        let dynamic =
            Segmenter::new(declaring([None, Some(3), None, None]), ModelProfile::U2NET).unwrap();
        assert_eq!(dynamic.profile().input_size, (320, 320));
    }

    #[test]
    fn a_model_sized_by_the_frame_gets_each_frames_size_unless_its_export_fixes_one() {
        let frame = vec![90u8; 1920 * 1080 * 3];
        let frame = ImageRef::packed(&frame, 1920, 1080, PixelLayout::RGB);
        let input_for = |shape: [Option<usize>; 4]| {
            let mut segmenter = Segmenter::new(declaring(shape), ModelProfile::MODNET)?;
            let mut input = ModelInput::default();
            segmenter.preparer.prepare(&frame, &mut input).unwrap();
            // (90 - 127.5) / 127.5 everywhere.
            assert!(input.data.iter().all(|&v| (v + 0.294_117_65).abs() < 1e-6));
            Ok::<_, SegmenterError>(input.shape)
        };
        assert_eq!(
            input_for([None, Some(3), None, None]).unwrap(),
            [1, 3, 512, 896]
        );
        assert_eq!(
            input_for([Some(1), Some(3), Some(256), Some(320)]).unwrap(),
            [1, 3, 256, 320]
        );
        let err = input_for([Some(1), Some(3), Some(512), None])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[1,3,512,?]") && err.contains("any height and width"),
            "{err}"
        );
    }

    #[test]
    fn a_recurrent_model_with_a_fixed_frame_size_is_refused_naming_the_input() {
        let any = [None, None, None, None];
        let model = Arc::new(DeclaredModel::float32(
            &[&[Some(1), Some(3), Some(512), Some(512)], &any],
            &[&[Some(1), Some(1), Some(512), Some(512)], &any],
        ));
        // DeclaredModel names its tensors input0, input1, output0, output1: the pair is named.
        let pairs = [("input1".to_string(), "output1".to_string())];
        let err = Segmenter::new_recurrent(model, &pairs)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'input0' is [1,3,512,512]") && err.contains("must be dynamic"),
            "{err}"
        );
    }

    #[test]
    fn nan_and_infinite_mask_values_are_background_and_counted() {
        let segmenter = Segmenter::new(
            declaring([Some(1), Some(3), Some(4), Some(4)]),
            ModelProfile::U2NET,
        )
        .unwrap();
        let mut finisher = segmenter.fresh_copy().finisher;
        let mut data = vec![0.0f32, 1.0, 0.5, 0.25];
        data.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0]);
        let outputs = [Tensor {
            shape: vec![1, 1, 2, 4],
            data,
        }];
        let mut mask = vec![9u8; 8];
        finisher.finish(&outputs, 4, 2, &mut mask).unwrap();
        // Min-max over the finite values only (0..1); the three others are 0.
        assert_eq!(mask, [0, 255, 127, 63, 0, 0, 0, 255]);
        // Counted across the copies that share a model.
        assert_eq!(segmenter.finisher.non_finite_values(), 3);
    }

    #[test]
    fn float16_edges_are_taken_where_the_backend_converts_and_named_where_it_does_not() {
        let model = |converts: bool| {
            DeclaredModel::float32(
                &[&[Some(1), Some(3), Some(320), Some(320)]],
                &[&[Some(1), Some(1), Some(320), Some(320)]],
            )
            .float16(converts)
        };
        assert!(Segmenter::new(Arc::new(model(true)), ModelProfile::U2NET).is_ok());
        // A server is sent float32 only: refused at start, naming the tensor and both types.
        let err = Segmenter::new(Arc::new(model(false)), ModelProfile::U2NET)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("input 'input0' of type float16") && err.contains("one float32 input"),
            "{err}"
        );
    }

    #[test]
    fn a_model_whose_output_cannot_be_a_mask_is_refused_at_start() {
        let with_output = |shape: &[Option<usize>]| {
            Segmenter::new(
                Arc::new(DeclaredModel::float32(
                    &[&[Some(1), Some(3), Some(320), Some(320)]],
                    &[shape],
                )),
                ModelProfile::U2NET,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        let err = with_output(&[Some(1), Some(1000)]).unwrap_err();
        assert!(
            err.contains("[1,1000]") && err.contains("[1,1,H,W]"),
            "{err}"
        );
        assert!(with_output(&[Some(2), Some(1), Some(320), Some(320)]).is_err());
        assert!(with_output(&[Some(1), Some(7)]).is_err());
        assert!(with_output(&[Some(1), Some(1), Some(320), Some(320)]).is_ok());
        assert!(with_output(&[None, Some(1), None, None]).is_ok());
        assert!(with_output(&[Some(320), Some(320)]).is_ok());
    }

    #[test]
    fn attaching_alpha_with_shuffles_equals_byte_by_byte_for_any_width() {
        for bpp in [3, 4] {
            for width in [0, 1, 15, 16, 17, 33, 64, 1920] {
                let src: Vec<u8> = (0..width * bpp).map(|i| (i * 7 % 256) as u8).collect();
                let mask: Vec<u8> = (0..width).map(|i| (i * 13 % 256) as u8).collect();
                let mut expected = vec![0u8; width * 4];
                for x in 0..width {
                    expected[4 * x..4 * x + 3].copy_from_slice(&src[bpp * x..bpp * x + 3]);
                    expected[4 * x + 3] = mask[x];
                }
                for with_ssse3 in [false, has_ssse3()] {
                    let mut dst = vec![9u8; width * 4];
                    attach_alpha_row(&src, &mask, &mut dst, with_ssse3);
                    assert_eq!(
                        dst, expected,
                        "{bpp} bytes, {width} pixels, ssse3 {with_ssse3}"
                    );
                }
            }
        }
    }
}
