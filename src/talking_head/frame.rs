//! One output frame of SyncTalk_2D's loop: crop the face, resize it to 328x328, build the U-Net's
//! six-channel input, run the model, and paste its 320x320 output back into the template.

use std::sync::{Arc, Mutex};

use crate::imageops::{PixelLayout, resize_cubic};
use crate::inference::{Backend, InferenceError, ShapeDisplay, TensorView};

use super::features::{AudioFeatures, Mode};
use super::templates::{BgrImage, CropRect, LruCache, TemplateError, TemplateSet};

/// The crop is resized to this, and the model sees its inner `MODEL_SIZE` square.
pub const CROP_SIZE: usize = 328;
pub const MODEL_SIZE: usize = 320;
const BORDER: usize = (CROP_SIZE - MODEL_SIZE) / 2;
const PLANE: usize = MODEL_SIZE * MODEL_SIZE;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error("model {model} returned output of shape {found}; expected [1,3,320,320]")]
    Output { model: String, found: String },
}

/// The U-Net with its two inputs told apart by shape, since exports name them differently.
pub struct LipsyncModel {
    backend: Arc<dyn Backend>,
    image_input: usize,
    audio_shape: [usize; 4],
}

impl std::fmt::Debug for LipsyncModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LipsyncModel")
            .field("model", &self.backend.model_name())
            .finish()
    }
}

impl LipsyncModel {
    pub fn new(backend: Arc<dyn Backend>, mode: Mode) -> Result<Self, InferenceError> {
        let [c, h, w] = mode.window_shape();
        let audio_shape = [1, c, h, w];
        let image_shape = [1, 6, MODEL_SIZE, MODEL_SIZE];
        let fits = |declared: &[Option<usize>], wanted: &[usize]| {
            declared.len() == wanted.len()
                && declared
                    .iter()
                    .zip(wanted)
                    .all(|(d, w)| d.is_none_or(|d| d == *w))
        };
        let inputs = backend.inputs();
        let describe = || {
            inputs
                .iter()
                .map(|i| format!("'{}' {}", i.name, ShapeDisplay(&i.shape)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let shape_error = || InferenceError::Shape {
            model: backend.model_name().to_string(),
            found: format!("inputs {}", describe()),
            expected: format!(
                "mode {} needs a {float} image input [1,6,320,320] and a {float} audio input [1,{c},{h},{w}]",
                mode.name(),
                float = backend.float_types()
            ),
        };
        if inputs.len() != 2 || inputs.iter().any(|i| !backend.converts(&i.element_type)) {
            return Err(shape_error());
        }
        let outputs = backend.outputs();
        let output_shape = [1, 3, MODEL_SIZE, MODEL_SIZE];
        if !outputs.first().is_some_and(|output| {
            fits(&output.shape, &output_shape) && backend.converts(&output.element_type)
        }) {
            let found = match outputs.first() {
                Some(output) => format!(
                    "output '{}' {} {}",
                    output.name,
                    output.element_type,
                    ShapeDisplay(&output.shape)
                ),
                None => "no outputs".into(),
            };
            return Err(InferenceError::Shape {
                model: backend.model_name().to_string(),
                found,
                expected: format!(
                    "the U-Net's first output must be the face, {} [1,3,320,320] (NCHW)",
                    backend.float_types()
                ),
            });
        }
        let image_input = match (
            fits(&inputs[0].shape, &image_shape) && fits(&inputs[1].shape, &audio_shape),
            fits(&inputs[1].shape, &image_shape) && fits(&inputs[0].shape, &audio_shape),
        ) {
            (true, _) => 0,
            (false, true) => 1,
            (false, false) => return Err(shape_error()),
        };
        Ok(Self {
            backend,
            image_input,
            audio_shape,
        })
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Runs the U-Net and returns its `[3,320,320]` output.
    pub fn run(&self, image: &[f32], audio: &[f32]) -> Result<Vec<f32>, FrameError> {
        let image_shape = [1, 6, MODEL_SIZE, MODEL_SIZE];
        let image = TensorView {
            shape: &image_shape,
            data: image,
        };
        let audio = TensorView {
            shape: &self.audio_shape,
            data: audio,
        };
        let inputs = if self.image_input == 0 {
            [image, audio]
        } else {
            [audio, image]
        };
        let output = self.backend.run_first(&inputs)?;
        if output.shape == [1, 3, MODEL_SIZE, MODEL_SIZE] && output.data.len() == 3 * PLANE {
            return Ok(output.data);
        }
        let shape: Vec<_> = output.shape.iter().copied().map(Some).collect();
        Err(FrameError::Output {
            model: self.backend.model_name().to_string(),
            found: ShapeDisplay(&shape).to_string(),
        })
    }
}

/// What one template gives every frame that uses it; kept while the template stays cached, since
/// the ping-pong order comes back to it.
#[derive(Debug)]
pub struct TemplateFace {
    pub template: Arc<BgrImage>,
    pub rect: CropRect,
    /// The face resized to 328x328, BGR.
    pub crop: Vec<u8>,
    /// The model's image input: the inner 320x320 square, then the same with its mouth area
    /// blacked out, BGR planes divided by 255.
    pub image_input: Vec<f32>,
    /// Pixels of the face square that keep the template (parsing colours (0,0,255), (255,255,255)).
    pub keep_original: Option<Vec<bool>>,
}

/// Prepared templates, shared by the frames that use them.
pub type FaceCache = Mutex<LruCache<TemplateFace>>;

/// Everything prepared for one frame before the model runs.
#[derive(Debug)]
pub struct FaceCrop {
    pub face: Arc<TemplateFace>,
    pub audio_input: Vec<f32>,
}

/// Crops and resizes the face of the template at cycle position `position`.
fn template_face(templates: &TemplateSet, position: usize) -> Result<TemplateFace, FrameError> {
    let template = templates.image(position)?;
    let rect = templates.rect(position);
    let stride = template.width * 3;
    let face_start = rect.y * stride + rect.x * 3;
    let mut crop = vec![0u8; CROP_SIZE * CROP_SIZE * 3];
    resize_cubic(
        &template.data[face_start..],
        rect.size,
        rect.size,
        stride,
        3,
        &mut crop,
        CROP_SIZE,
        CROP_SIZE,
    );

    let mut image_input = vec![0f32; 6 * PLANE];
    let (real, masked) = image_input.split_at_mut(3 * PLANE);
    for y in 0..MODEL_SIZE {
        let row = &crop[((y + BORDER) * CROP_SIZE + BORDER) * 3..][..MODEL_SIZE * 3];
        // cv2.rectangle((5, 5, 310, 305), filled) blacks out x 5..=314, y 5..=309.
        let row_masked = (5..=309).contains(&y);
        for (x, pixel) in row.chunks_exact(3).enumerate() {
            let mask_pixel = row_masked && (5..=314).contains(&x);
            for c in 0..3 {
                let value = f32::from(pixel[c]) / 255.0;
                real[c * PLANE + y * MODEL_SIZE + x] = value;
                masked[c * PLANE + y * MODEL_SIZE + x] = if mask_pixel { 0.0 } else { value };
            }
        }
    }
    let keep_original = if templates.uses_parsing() {
        let map = templates.parsing_map(position)?;
        let mut keep = Vec::with_capacity(rect.size * rect.size);
        for y in rect.y..rect.y + rect.size {
            let row = &map.data[(y * map.width + rect.x) * 3..][..rect.size * 3];
            keep.extend(
                row.chunks_exact(3)
                    .map(|p| p == [0, 0, 255] || p == [255, 255, 255]),
            );
        }
        Some(keep)
    } else {
        None
    };
    Ok(TemplateFace {
        template,
        rect,
        crop,
        image_input,
        keep_original,
    })
}

/// A cache for [`prepare`] that holds as many templates as `templates` keeps decoded.
pub fn face_cache(templates: &TemplateSet) -> FaceCache {
    Mutex::new(LruCache::new(templates.cache_capacity()))
}

/// Decodes and crops, on all cores, the templates the first frames visit, as many as the cache
/// holds, so that work happens at start rather than between frames. A template that cannot be
/// read fails here, at start.
pub fn warm_cache(templates: &TemplateSet, faces: &FaceCache) -> Result<(), FrameError> {
    use rayon::prelude::*;

    let wanted = templates.cache_capacity().min(templates.count());
    // The ping-pong order starts at position 1, so take positions in the order frames use them.
    let mut positions = Vec::with_capacity(wanted);
    let mut frame = 0;
    while positions.len() < wanted {
        let position = super::ping_pong_index(frame, templates.count());
        if !positions.contains(&position) {
            positions.push(position);
        }
        frame += 1;
    }
    let prepared: Vec<(usize, TemplateFace)> = positions
        .into_par_iter()
        .map(|position| template_face(templates, position).map(|face| (position, face)))
        .collect::<Result<_, _>>()?;
    let mut cache = faces.lock().unwrap();
    for (position, face) in prepared {
        cache.insert(position, Arc::new(face));
    }
    Ok(())
}

/// Prepares output frame `frame`: template, crop, model input and audio window.
pub fn prepare(
    templates: &TemplateSet,
    faces: &FaceCache,
    features: &AudioFeatures,
    frame: usize,
) -> Result<FaceCrop, FrameError> {
    let mut audio_input = Vec::new();
    features.window(frame, &mut audio_input);
    prepare_with_window(templates, faces, frame, audio_input)
}

/// [`prepare`] with the frame's audio window already made (a live stream makes its own).
pub fn prepare_with_window(
    templates: &TemplateSet,
    faces: &FaceCache,
    frame: usize,
    audio_input: Vec<f32>,
) -> Result<FaceCrop, FrameError> {
    let position = super::ping_pong_index(frame as u64, templates.count());
    let cached = faces.lock().unwrap().get(position);
    let face = match cached {
        Some(face) => face,
        None => {
            let face = Arc::new(template_face(templates, position)?);
            faces.lock().unwrap().insert(position, face.clone());
            face
        }
    };
    Ok(FaceCrop { face, audio_input })
}

/// The face square of one frame, and how many of the model's values were NaN or infinite
/// (their pixels show the template instead).
#[derive(Debug)]
pub struct PastedFace {
    pub square: Vec<u8>,
    pub non_finite: usize,
}

/// The warning for a model output with NaN or infinite values (posted once per stream).
pub fn non_finite_warning(model: &str, non_finite: usize, values: usize, frame: u64) -> String {
    format!(
        "model {model} gave {non_finite} NaN or infinite values of {values} in frame {frame}; \
         those pixels show the template (warned once per stream)"
    )
}

/// Puts the model's output into the 328 crop, resizes it back to the face square and returns
/// that square (BGR, `rect.size` squared), with parsing-protected pixels from the template. A
/// NaN or infinite value keeps the template's own value there, so a broken model shows the
/// template's face rather than a black one.
pub fn paste_face(frame: &FaceCrop, output: &[f32]) -> PastedFace {
    let face = &frame.face;
    let mut crop = face.crop.clone();
    let mut non_finite = 0;
    let (blue, rest) = output.split_at(PLANE);
    let (green, red) = rest.split_at(PLANE);
    for y in 0..MODEL_SIZE {
        let row = &mut crop[((y + BORDER) * CROP_SIZE + BORDER) * 3..][..MODEL_SIZE * 3];
        let planes = (
            &blue[y * MODEL_SIZE..][..MODEL_SIZE],
            &green[y * MODEL_SIZE..][..MODEL_SIZE],
            &red[y * MODEL_SIZE..][..MODEL_SIZE],
        );
        for (x, pixel) in row.chunks_exact_mut(3).enumerate() {
            for (channel, plane) in [planes.0, planes.1, planes.2].into_iter().enumerate() {
                let value = plane[x];
                if value.is_finite() {
                    // numpy: float32 * 255 cast to uint8 truncates; the sigmoid keeps it in 0..255.
                    pixel[channel] = (value * 255.0).clamp(0.0, 255.0) as u8;
                } else {
                    non_finite += 1;
                }
            }
        }
    }
    let size = face.rect.size;
    let mut square = vec![0u8; size * size * 3];
    resize_cubic(
        &crop,
        CROP_SIZE,
        CROP_SIZE,
        CROP_SIZE * 3,
        3,
        &mut square,
        size,
        size,
    );
    if let Some(keep) = &face.keep_original {
        let template = &face.template;
        for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
            let (y, x) = (face.rect.y + i / size, face.rect.x + i % size);
            let source = (y * template.width + x) * 3;
            square[i * 3..i * 3 + 3].copy_from_slice(&template.data[source..source + 3]);
        }
    }
    PastedFace { square, non_finite }
}

/// Writes the template with the face square pasted in (none: the template alone) into `out`
/// (rows `stride` bytes apart).
pub fn write_frame(
    face: &FaceCrop,
    square: Option<&[u8]>,
    out: &mut [u8],
    stride: usize,
    layout: PixelLayout,
) {
    let template = &face.face.template;
    let rect = face.face.rect;
    let bpp = layout.bytes_per_pixel;
    let row_pixels = template.width;
    for y in 0..template.height {
        let dst = &mut out[y * stride..y * stride + row_pixels * bpp];
        let src = &template.data[y * row_pixels * 3..(y + 1) * row_pixels * 3];
        if bpp == 3 && layout.blue == 0 {
            dst.copy_from_slice(src);
        } else {
            for (d, s) in dst.chunks_exact_mut(bpp).zip(src.chunks_exact(3)) {
                d[layout.blue] = s[0];
                d[layout.green] = s[1];
                d[layout.red] = s[2];
                if bpp == 4 {
                    d[3] = 255;
                }
            }
        }
        let Some(square) = square else { continue };
        if (rect.y..rect.y + rect.size).contains(&y) {
            let face_row = &square[(y - rect.y) * rect.size * 3..][..rect.size * 3];
            let dst = &mut dst[rect.x * bpp..(rect.x + rect.size) * bpp];
            for (d, s) in dst.chunks_exact_mut(bpp).zip(face_row.chunks_exact(3)) {
                d[layout.blue] = s[0];
                d[layout.green] = s[1];
                d[layout.red] = s[2];
            }
        }
    }
}
