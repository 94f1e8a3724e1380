//! From the model's mask to the output frame, for one frame: edge refinement against the
//! picture, the mask controls, the input's own transparency, rembg's alpha matting, the
//! estimated foreground colour, and the composition of what the mode shows. Buffers are kept
//! from frame to frame; no GStreamer types here.

use std::time::{Duration, Instant};

use crate::imageops::ImageRef;
use crate::matting::closed_form::{self, TrimapParams};
use crate::matting::guided_filter::{GuidedFilter, GuidedFilterParams};
use crate::matting::{ForegroundEstimator, ForegroundMethod};

use super::compose::{Compositor, Output};
use super::mask::{MaskChain, MaskControls};

/// How one frame's cutout is made, read from the settings once per frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CutoutSettings {
    /// `edge-refinement`: the guided filter's parameters, or no refinement.
    pub refinement: Option<GuidedFilterParams>,
    pub mask: MaskControls,
    /// Multiply the mask by the frame's own alpha (RGBA input with `keep-input-alpha`).
    pub input_alpha: bool,
    /// rembg's alpha matting with this trimap.
    pub matting: Option<TrimapParams>,
    /// How partly transparent pixels get their colour; with matting and none asked, multilevel,
    /// as rembg's matted cutout always carries the estimated foreground.
    pub foreground: Option<ForegroundMethod>,
}

/// What one frame's edge steps took, and what the caller should tell the user.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CutoutReport {
    pub refinement_time: Duration,
    pub matting_time: Duration,
    pub foreground_time: Duration,
    /// Pixels the matting solved for; `None` when it did not run or the trimap had nothing
    /// sure to start from (the mask stays then, as in rembg).
    pub matted_unknown: Option<usize>,
    /// Why the matting failed; the frame keeps the mask.
    pub matting_error: Option<String>,
}

/// What the model gave for a frame.
#[derive(Debug, Clone, Copy)]
pub struct ModelResult<'a> {
    /// One byte a pixel, the frame's size.
    pub mask: &'a [u8],
    /// The foreground colour, packed RGB, for models that give one (RVM's `fgr`).
    pub foreground: Option<&'a [u8]>,
}

impl<'a> ModelResult<'a> {
    /// A mask alone.
    pub fn mask(mask: &'a [u8]) -> Self {
        Self {
            mask,
            foreground: None,
        }
    }
}

/// Makes output frames from frames and their model masks, keeping every buffer and the mask
/// chain's memory (temporal smoothing) from frame to frame.
#[derive(Debug, Default)]
pub struct Cutout {
    chain: MaskChain,
    compositor: Compositor,
    foreground: ForegroundEstimator,
    matte: Vec<u8>,
    guided_filter: GuidedFilter,
    refined: Vec<u8>,
    /// The frame with the model's foreground colour, for models that give one.
    recoloured: Vec<u8>,
}

impl Cutout {
    /// The next frame does not follow this one (a discontinuity, a flush, new caps).
    pub fn restart_smoothing(&mut self) {
        self.chain.restart_smoothing();
    }

    /// Writes what `output` shows of `src` with the model's mask (one byte a pixel, frame size)
    /// into `dst` (rows `dst_stride` apart). The mask output is the mask after its controls
    /// only: the input's alpha, matting and foreground colour are for pictures (rembg's
    /// only_mask ignores matting too). The model's foreground colour, where it gives one,
    /// colours the partly transparent pixels unless a foreground estimation is asked for, which
    /// wins.
    pub fn write(
        &mut self,
        src: &ImageRef<'_>,
        model: ModelResult<'_>,
        settings: &CutoutSettings,
        output: Output<'_>,
        dst: &mut [u8],
        dst_stride: usize,
    ) -> CutoutReport {
        let mut report = CutoutReport::default();
        let picture = !matches!(output, Output::Mask);
        let (model_mask, model_foreground) = (model.mask, model.foreground);
        let model_mask = match &settings.refinement {
            None => model_mask,
            Some(params) => {
                let started = Instant::now();
                self.refined.clear();
                self.refined.extend_from_slice(model_mask);
                self.guided_filter.refine(src, &mut self.refined, params);
                report.refinement_time = started.elapsed();
                &self.refined
            }
        };
        self.chain
            .apply(model_mask, src.width, src.height, &settings.mask);
        let mask = if picture && settings.input_alpha {
            self.chain.multiply_by_alpha(src)
        } else {
            self.chain.result()
        };
        let matting = settings.matting.filter(|_| picture);
        let mut matted = false;
        if let Some(trimap) = &matting {
            let started = Instant::now();
            match closed_form::alpha_matting(src, mask, trimap) {
                Ok(Some((matte, unknown))) => {
                    self.matte = matte;
                    matted = true;
                    report.matted_unknown = Some(unknown);
                }
                Ok(None) => {}
                Err(err) => report.matting_error = Some(err.to_string()),
            }
            report.matting_time = started.elapsed();
        }
        let mask = if matted { &self.matte[..] } else { mask };
        let method = settings
            .foreground
            .or(matting.map(|_| ForegroundMethod::Multilevel))
            .filter(|_| picture);
        let src = match method {
            Some(method) => {
                let started = Instant::now();
                let estimated = self.foreground.estimate(src, mask, method);
                report.foreground_time = started.elapsed();
                estimated
            }
            None => match model_foreground.filter(|_| picture) {
                Some(colours) => {
                    let started = Instant::now();
                    let recoloured =
                        take_model_foreground(&mut self.recoloured, src, mask, colours);
                    report.foreground_time = started.elapsed();
                    recoloured
                }
                None => *src,
            },
        };
        self.compositor.write(&src, mask, output, dst, dst_stride);
        report
    }
}

/// `src` with each partly transparent pixel's colour taken from `colours` (packed RGB), in
/// `buffer`.
fn take_model_foreground<'a>(
    buffer: &'a mut Vec<u8>,
    src: &ImageRef<'_>,
    mask: &[u8],
    colours: &[u8],
) -> ImageRef<'a> {
    let layout = src.layout;
    src.copy_packed_into(buffer);
    let offsets = [layout.red, layout.green, layout.blue];
    for ((pixel, &alpha), colour) in buffer
        .chunks_exact_mut(layout.bytes_per_pixel)
        .zip(mask)
        .zip(colours.chunks_exact(3))
    {
        if alpha != 0 && alpha != 255 {
            for (c, &offset) in offsets.iter().enumerate() {
                pixel[offset] = colour[c];
            }
        }
    }
    ImageRef::packed(buffer, src.width, src.height, layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imageops::PixelLayout;

    const W: usize = 16;
    const H: usize = 12;

    /// Left half red on a white wall, a soft vertical edge between.
    fn frame_and_mask() -> (Vec<u8>, Vec<u8>) {
        let mut frame = Vec::new();
        let mut mask = Vec::new();
        for _ in 0..H {
            for x in 0..W {
                let alpha = match x {
                    0..6 => 255u8,
                    6..10 => (255 - (x - 5) * 50) as u8,
                    _ => 0,
                };
                let red = [200u8, 20, 20];
                let wall = [250u8, 250, 250];
                let a = f32::from(alpha) / 255.0;
                frame.extend(
                    (0..3).map(|c| (a * f32::from(red[c]) + (1.0 - a) * f32::from(wall[c])) as u8),
                );
                mask.push(alpha);
            }
        }
        (frame, mask)
    }

    fn settings() -> CutoutSettings {
        CutoutSettings {
            refinement: None,
            mask: MaskControls::default(),
            input_alpha: false,
            matting: None,
            foreground: None,
        }
    }

    fn write(cutout: &mut Cutout, settings: &CutoutSettings, output: Output<'_>) -> Vec<u8> {
        let (frame, mask) = frame_and_mask();
        let src = ImageRef::packed(&frame, W, H, PixelLayout::RGB);
        let bytes = if matches!(output, Output::Mask) { 1 } else { 4 };
        let mut dst = vec![0u8; W * H * bytes];
        cutout.write(
            &src,
            ModelResult::mask(&mask),
            settings,
            output,
            &mut dst,
            W * bytes,
        );
        dst
    }

    #[test]
    fn the_mask_output_ignores_what_is_for_pictures() {
        let (_, mask) = frame_and_mask();
        let mut pictures_only = settings();
        pictures_only.foreground = Some(ForegroundMethod::Multilevel);
        pictures_only.matting = Some(TrimapParams {
            foreground_threshold: 240,
            background_threshold: 10,
            erode_size: 1,
        });
        let written = write(&mut Cutout::default(), &pictures_only, Output::Mask);
        assert_eq!(written, mask);
    }

    #[test]
    fn foreground_estimation_recolours_only_the_partly_transparent_pixels() {
        let alpha = Output::Alpha {
            clear_transparent: false,
        };
        let plain = write(&mut Cutout::default(), &settings(), alpha);
        let mut estimating = settings();
        estimating.foreground = Some(ForegroundMethod::Multilevel);
        let estimated = write(&mut Cutout::default(), &estimating, alpha);
        let (_, mask) = frame_and_mask();
        for (pixel, &a) in mask.iter().enumerate() {
            let (before, after) = (&plain[pixel * 4..][..4], &estimated[pixel * 4..][..4]);
            assert_eq!(before[3], after[3], "alpha kept at {pixel}");
            if a == 0 || a == 255 {
                assert_eq!(before, after, "pixel {pixel} (alpha {a}) untouched");
            }
        }
        // The edge's colour moves from the wall's grey-pink towards the foreground's red.
        let edge = 9 * 4;
        assert!(estimated[edge + 1] < plain[edge + 1], "{estimated:?}");
    }

    #[test]
    fn matting_with_nothing_sure_keeps_the_mask_and_still_decontaminates() {
        let mut nothing_sure = settings();
        nothing_sure.matting = Some(TrimapParams {
            foreground_threshold: 255,
            background_threshold: 0,
            erode_size: 0,
        });
        let alpha = Output::Alpha {
            clear_transparent: false,
        };
        let mut cutout = Cutout::default();
        let (frame, mask) = frame_and_mask();
        let src = ImageRef::packed(&frame, W, H, PixelLayout::RGB);
        let mut dst = vec![0u8; W * H * 4];
        let report = cutout.write(
            &src,
            ModelResult::mask(&mask),
            &nothing_sure,
            alpha,
            &mut dst,
            W * 4,
        );
        assert_eq!(report.matted_unknown, None);
        assert_eq!(report.matting_error, None);
        let alphas: Vec<u8> = dst.chunks(4).map(|p| p[3]).collect();
        assert_eq!(alphas, mask, "the mask stays");
        let mut decontaminating = settings();
        decontaminating.foreground = Some(ForegroundMethod::Multilevel);
        assert_eq!(dst, write(&mut Cutout::default(), &decontaminating, alpha));
    }
}
