//! rembgfilter in GStreamer: caps, formats, strides, caps changes, frame accounting, custom
//! models and every start-up error, with the real u2netp model.

mod common;

use std::sync::Arc;

use common::*;
use gst::prelude::*;
use gst_check::Harness;

/// The astronaut photo scaled to `width x height`, packed RGB.
fn astronaut_rgb(width: u32, height: u32) -> Vec<u8> {
    let description = format!(
        "filesrc location={} ! pngdec ! videoconvert ! videoscale ! \
         video/x-raw,format=RGB,width={width},height={height} ! appsink name=sink",
        sample("astronaut").display()
    );
    let samples = collect_samples(&description).unwrap();
    packed_pixels(&samples[0]).1
}

/// Repacks RGB pixels into another layout (`offsets` = where R, G, B go; `bpp` 3 or 4).
/// `rgb` in another layout; a fourth byte is `fourth` (padding of x formats, or the alpha of
/// A formats, which the output's alpha is multiplied by).
fn repack(rgb: &[u8], bpp: usize, offsets: [usize; 3], fourth: u8) -> Vec<u8> {
    let mut out = vec![fourth; rgb.len() / 3 * bpp];
    for (dst, src) in out.chunks_exact_mut(bpp).zip(rgb.chunks_exact(3)) {
        for c in 0..3 {
            dst[offsets[c]] = src[c];
        }
    }
    out
}

fn harness(properties: &[(&str, &dyn ToValue)]) -> Harness {
    init();
    let mut builder = gst::ElementFactory::make("rembgfilter");
    for (name, value) in properties {
        builder = builder.property(name, value.to_value());
    }
    let element = builder.build().unwrap();
    Harness::with_element(&element, Some("sink"), Some("src"))
}

fn caps(format: &str, width: u32, height: u32) -> gst::Caps {
    format!("video/x-raw,format={format},width={width},height={height},framerate=30/1")
        .parse()
        .unwrap()
}

/// Pushes one packed frame, returns (output format, packed output pixels).
fn process(
    h: &mut Harness,
    format: &str,
    width: u32,
    height: u32,
    pixels: Vec<u8>,
) -> (String, Vec<u8>) {
    h.set_src_caps(caps(format, width, height));
    h.push(gst::Buffer::from_mut_slice(pixels)).unwrap();
    let buffer = h.pull().unwrap();
    let out_caps = h.sinkpad().unwrap().current_caps().unwrap();
    let sample = gst::Sample::builder()
        .buffer(&buffer)
        .caps(&out_caps)
        .build();
    let (info, packed) = packed_pixels(&sample);
    assert_eq!((info.width(), info.height()), (width, height));
    (info.format().to_str().to_string(), packed)
}

#[test]
fn every_format_keeps_colour_order_and_gets_the_same_mask() {
    if without_set_up() {
        return;
    }
    let (width, height) = (192, 144);
    let rgb = astronaut_rgb(width, height);
    let mut h = harness(&[]);
    let (format, reference) = process(&mut h, "RGB", width, height, rgb.clone());
    assert_eq!(format, "RGBA");
    let reference_alpha = alpha_of(&reference);
    let foreground = reference_alpha.iter().filter(|&&a| a > 200).count();
    let background = reference_alpha.iter().filter(|&&a| a < 50).count();
    let pixels = rgb.len() / 3;
    assert!(
        foreground > pixels / 4,
        "the astronaut should be foreground: {foreground} of {pixels}"
    );
    assert!(
        background > pixels / 5,
        "the white backdrop should be background: {background} of {pixels}"
    );

    for (input, bpp, offsets, output) in [
        ("RGBx", 4, [0, 1, 2], "RGBA"),
        ("RGBA", 4, [0, 1, 2], "RGBA"),
        ("BGR", 3, [2, 1, 0], "BGRA"),
        ("BGRx", 4, [2, 1, 0], "BGRA"),
        ("BGRA", 4, [2, 1, 0], "BGRA"),
    ] {
        let mut h = harness(&[]);
        // Padding is anything (its value must not leak into the alpha); alpha is opaque, as in
        // RGBA video, so every format gets the same mask.
        let fourth = if input.ends_with('A') { 0xFF } else { 0xEE };
        let (format, out) = process(
            &mut h,
            input,
            width,
            height,
            repack(&rgb, bpp, offsets, fourth),
        );
        assert_eq!(format, output, "{input}");
        assert_eq!(
            alpha_of(&out),
            reference_alpha,
            "{input}: mask differs from RGB's"
        );
        let colour: Vec<u8> = out
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        let out_offsets = if output == "RGBA" {
            [0, 1, 2]
        } else {
            [2, 1, 0]
        };
        assert_eq!(
            colour,
            repack(&rgb, 3, out_offsets, 0),
            "{input}: colour changed"
        );
    }
}

#[test]
fn odd_width_and_padded_strides_give_the_packed_result() {
    if without_set_up() {
        return;
    }
    // 101 RGB pixels = 303 bytes, which GStreamer pads to a 304-byte stride.
    let (width, height) = (101, 77);
    let rgb = astronaut_rgb(width, height);
    let mut h = harness(&[]);
    let (_, from_rgbx) = process(
        &mut h,
        "RGBx",
        width,
        height,
        repack(&rgb, 4, [0, 1, 2], 0xEE),
    );

    let stride = 304;
    let mut padded = vec![0x55; stride * height as usize];
    for y in 0..height as usize {
        let row = &rgb[y * width as usize * 3..(y + 1) * width as usize * 3];
        padded[y * stride..y * stride + row.len()].copy_from_slice(row);
    }
    let mut h = harness(&[]);
    let (_, from_padded) = process(&mut h, "RGB", width, height, padded);
    assert_eq!(alpha_of(&from_padded), alpha_of(&from_rgbx));

    // A custom stride announced with a VideoMeta, as a hardware decoder would.
    let custom_stride = width as usize * 3 + 45;
    let mut custom = vec![0x11; custom_stride * height as usize];
    for y in 0..height as usize {
        let row = &rgb[y * width as usize * 3..(y + 1) * width as usize * 3];
        custom[y * custom_stride..y * custom_stride + row.len()].copy_from_slice(row);
    }
    let mut buffer = gst::Buffer::from_mut_slice(custom);
    gst_video::VideoMeta::add_full(
        buffer.get_mut().unwrap(),
        gst_video::VideoFrameFlags::empty(),
        gst_video::VideoFormat::Rgb,
        width,
        height,
        &[0],
        &[custom_stride as i32],
    )
    .unwrap();
    let mut h = harness(&[]);
    h.set_src_caps(caps("RGB", width, height));
    h.push(buffer).unwrap();
    let out = h.pull().unwrap();
    let out_caps = h.sinkpad().unwrap().current_caps().unwrap();
    let sample = gst::Sample::builder().buffer(&out).caps(&out_caps).build();
    assert_eq!(alpha_of(&packed_pixels(&sample).1), alpha_of(&from_rgbx));
}

#[test]
fn caps_change_mid_stream_renegotiates_the_new_size() {
    if without_set_up() {
        return;
    }
    let mut h = harness(&[]);
    for (width, height) in [(64, 48), (64, 48), (40, 30), (97, 33), (1, 1), (2, 3)] {
        let (format, out) = process(
            &mut h,
            "RGB",
            width,
            height,
            pad_rows(&astronaut_rgb(width, height), width),
        );
        assert_eq!(format, "RGBA");
        assert_eq!(out.len(), (width * height * 4) as usize);
    }
}

#[test]
fn hundred_frames_in_hundred_frames_out_with_timestamps_kept() {
    if without_set_up() {
        return;
    }
    // The brightness stand-in runs in microseconds: frames and timestamps are what is tested.
    let samples = collect_samples(&format!(
        "videotestsrc num-buffers=100 pattern=ball ! video/x-raw,format=BGRx,width=32,height=24,framerate=25/1 \
         ! rembgfilter model={} ! appsink name=sink",
        test_model("brightness.onnx").display()
    ))
    .unwrap();
    assert_eq!(samples.len(), 100);
    for (i, sample) in samples.iter().enumerate() {
        let buffer = sample.buffer().unwrap();
        let expected = gst::ClockTime::from_nseconds(i as u64 * 40_000_000);
        assert_eq!(buffer.pts(), Some(expected), "frame {i}");
        assert_eq!(
            buffer.duration(),
            Some(gst::ClockTime::from_mseconds(40)),
            "frame {i}"
        );
    }
}

/// Left half black, right half white, packed.
fn half_and_half(width: u32, height: u32) -> Vec<u8> {
    two_colours(width, height, [0, 0, 0], [255, 255, 255])
}

fn two_colours(width: u32, height: u32, left: [u8; 3], right: [u8; 3]) -> Vec<u8> {
    (0..height)
        .flat_map(|_| (0..width).flat_map(move |x| if x < width / 2 { left } else { right }))
        .collect()
}

/// Pads packed 3-byte rows to GStreamer's default 4-byte-aligned stride.
fn pad_rows(packed: &[u8], width: u32) -> Vec<u8> {
    let row = width as usize * 3;
    let stride = row.div_ceil(4) * 4;
    packed
        .chunks_exact(row)
        .flat_map(|r| {
            r.iter()
                .copied()
                .chain(std::iter::repeat_n(0, stride - row))
        })
        .collect()
}

fn assert_bright_half_is_foreground(alpha: &[u8], width: usize) {
    let row = &alpha[alpha.len() / 2 - alpha.len() / 2 % width..][..width];
    assert!(row[2] < 10, "dark side should be transparent: {row:?}");
    assert!(
        row[width - 3] > 245,
        "bright side should be opaque: {row:?}"
    );
}

#[test]
fn committed_test_models_are_what_the_script_makes() {
    if without_set_up() {
        return;
    }
    // The small models are committed so that no test waits for Python to make them; the
    // script stays their source, and this keeps the two in step.
    let dir = temp_dir_of("test-models", "");
    run_reference("make_test_models.py", &[dir.to_str().unwrap()]);
    let mut made: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    made.sort();
    let mut committed: Vec<_> = std::fs::read_dir(test_models_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    committed.sort();
    assert_eq!(
        made, committed,
        "the script's models and the committed ones"
    );
    for name in made {
        assert!(
            std::fs::read(dir.join(&name)).unwrap()
                == std::fs::read(test_model(name.to_str().unwrap())).unwrap(),
            "{name:?} differs from what make_test_models.py makes: run it with tests/fixtures/models"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn custom_model_takes_its_size_from_the_input_shape() {
    if without_set_up() {
        return;
    }
    let model = test_model("brightness.onnx");
    let mut h = harness(&[("model", &model.to_str().unwrap())]);
    let (_, out) = process(&mut h, "RGB", 80, 60, half_and_half(80, 60));
    assert_bright_half_is_foreground(&alpha_of(&out), 80);
}

#[test]
fn custom_model_with_dynamic_size_runs() {
    if without_set_up() {
        return;
    }
    let model = test_model("dynamic.onnx");
    let mut h = harness(&[("model", &model.to_str().unwrap())]);
    let (_, out) = process(&mut h, "BGR", 50, 40, pad_rows(&half_and_half(50, 40), 50));
    assert_bright_half_is_foreground(&alpha_of(&out), 50);
}

#[test]
fn input_mean_and_std_change_what_the_model_sees() {
    if without_set_up() {
        return;
    }
    // brightness.onnx averages the normalised channels. With ImageNet statistics pure green
    // comes out a little brighter than pure red; with std 0.01 for red, red is far brighter.
    let model = test_model("brightness.onnx");
    let (width, height) = (64u32, 64u32);
    let pixels = two_colours(width, height, [255, 0, 0], [0, 255, 0]);
    let (red, green) = (32 * 64 + 2, 32 * 64 + 60);
    // gst-launch's array syntax and a plain list are both taken.
    let std = "<0.01, 1.0, 1.0>";
    let mean = "0";
    let mut h = harness(&[
        ("model", &model.to_str().unwrap()),
        ("input-std", &std),
        ("input-mean", &mean),
    ]);
    let (_, out) = process(&mut h, "RGB", width, height, pixels.clone());
    let alpha = alpha_of(&out);
    assert!(
        alpha[red] > 250 && alpha[green] < 5,
        "red should win: {} vs {}",
        alpha[red],
        alpha[green]
    );
    let mut plain = harness(&[("model", &model.to_str().unwrap())]);
    let (_, out) = process(&mut plain, "RGB", width, height, pixels);
    let alpha = alpha_of(&out);
    assert!(
        alpha[red] < 5 && alpha[green] > 250,
        "green should win: {} vs {}",
        alpha[red],
        alpha[green]
    );
}

const ERROR_PIPELINE: &str =
    "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=32,height=24 ! rembgfilter";

fn rembg_error(properties: &str) -> String {
    start_error(&format!("{ERROR_PIPELINE} {properties} ! fakesink"))
}

#[test]
fn missing_model_file_fails_at_start_naming_the_file() {
    if without_set_up() {
        return;
    }
    let err = rembg_error("model=/nonexistent/folder/model.onnx");
    assert!(
        err.contains("/nonexistent/folder/model.onnx") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn unknown_model_name_lists_the_catalog() {
    if without_set_up() {
        return;
    }
    let err = rembg_error("model=u3netp");
    assert!(
        err.contains("'u3netp'")
            && err.contains("u2netp, u2netp-int8, u2net, u2net_human_seg, silueta"),
        "{err}"
    );
}

#[test]
fn file_that_is_not_onnx_fails_naming_the_file() {
    if without_set_up() {
        return;
    }
    let model = test_model("not_onnx.onnx");
    let err = rembg_error(&format!("model={}", model.display()));
    assert!(
        err.contains(&format!("cannot load model {}", model.display())),
        "{err}"
    );
}

#[test]
fn model_with_six_channels_fails_with_the_shape_found() {
    if without_set_up() {
        return;
    }
    let model = test_model("six_channels.onnx");
    let err = rembg_error(&format!("model={}", model.display()));
    assert!(
        err.contains("input 'image' of shape [1,6,32,32]") && err.contains("[1,3,H,W]"),
        "{err}"
    );
    assert!(err.contains("six_channels.onnx"), "{err}");
}

#[test]
fn model_with_two_inputs_fails() {
    if without_set_up() {
        return;
    }
    let model = test_model("two_inputs.onnx");
    let err = rembg_error(&format!("model={}", model.display()));
    assert!(
        err.contains("has 2 inputs") && err.contains("two_inputs.onnx"),
        "{err}"
    );
}

#[test]
fn model_with_integer_input_fails() {
    if without_set_up() {
        return;
    }
    let model = test_model("int_input.onnx");
    let err = rembg_error(&format!("model={}", model.display()));
    assert!(
        err.contains("input 'image' of type i64") && err.contains("float32"),
        "{err}"
    );
}

#[test]
fn input_mean_with_two_values_fails_naming_the_property() {
    if without_set_up() {
        return;
    }
    let err = rembg_error("input-mean=\"<0.5,0.5>\"");
    assert!(err.contains("'input-mean' must hold 1 or 3"), "{err}");
}

#[test]
fn cuda_falls_back_to_cpu_with_a_warning_and_keeps_working() {
    if without_set_up() {
        return;
    }
    // The CPU build of ONNX Runtime installed by scripts/setup.sh has no CUDA provider.
    init();
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=32,height=24 \
         ! rembgfilter execution-provider=cuda ! fakesink",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let mut warned = false;
    let mut runs_on = String::new();
    for message in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
        match message.view() {
            gst::MessageView::Warning(w) => {
                warned |= w.error().to_string().contains("CUDA is not available");
            }
            gst::MessageView::Info(i) => runs_on = i.error().to_string(),
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            gst::MessageView::Eos(..) => break,
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(warned, "expected a CUDA fallback warning on the bus");
    // An info message says what actually runs: the CPU here.
    assert!(
        runs_on.contains("runs on ONNX Runtime's CPUExecutionProvider")
            && runs_on.contains("libonnxruntime"),
        "{runs_on}"
    );
}

#[test]
fn tensor_names_and_shapes_read_from_the_file_are_what_onnx_runtime_reports() {
    if without_set_up() {
        return;
    }
    // A server backend (SageMaker) takes its tensors from the local file without opening a
    // session: the wire-format reader must agree with the runtime on every model at hand.
    use gstneuralfx::inference::Backend;
    use gstneuralfx::inference::onnx::{OnnxBackend, SessionOptions};
    use gstneuralfx::inference::onnx_graph::tensor_specs;
    init();
    let home = std::path::PathBuf::from(std::env::var("U2NET_HOME").unwrap());
    let mut models: Vec<std::path::PathBuf> = ["u2netp", "u2netp-int8", "modnet", "selfie"]
        .iter()
        .map(|name| home.join(format!("{name}.onnx")))
        .collect();
    models.extend(
        std::fs::read_dir(test_models_dir())
            .unwrap()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                // Not models at all, or refused by the runtime: nothing to compare.
                !["not_onnx.onnx", "no_outputs.onnx"]
                    .contains(&path.file_name().unwrap().to_str().unwrap())
            }),
    );
    for model in models {
        let runtime = OnnxBackend::load(&model, SessionOptions::default()).unwrap();
        let (inputs, outputs) = tensor_specs(&std::fs::read(&model).unwrap())
            .unwrap_or_else(|| panic!("{} read as no model", model.display()));
        assert_eq!(inputs, runtime.inputs(), "{}", model.display());
        // The runtime infers output sizes the file leaves open (u2netp's side outputs): what
        // the file declares must agree, the rest is dynamic.
        assert_eq!(
            outputs.len(),
            runtime.outputs().len(),
            "{}",
            model.display()
        );
        for (declared, inferred) in outputs.iter().zip(runtime.outputs()) {
            assert_eq!(
                (&declared.name, &declared.element_type, declared.shape.len()),
                (&inferred.name, &inferred.element_type, inferred.shape.len()),
                "{}",
                model.display()
            );
            for (d, i) in declared.shape.iter().zip(&inferred.shape) {
                assert!(
                    d.is_none() || d == i,
                    "{}: {declared} / {inferred}",
                    model.display()
                );
            }
        }
    }
    assert!(tensor_specs(b"this is not an ONNX model").is_none());
}

#[test]
fn sessions_are_shared_per_model_and_options_and_freed_when_unused() {
    if without_set_up() {
        return;
    }
    use gstneuralfx::inference::onnx::{OnnxBackend, SessionOptions};
    init();
    let model = test_model("brightness.onnx");
    // Seven threads: no other test uses these options, so the cache state here is ours alone.
    let options = SessionOptions {
        threads: 7,
        ..Default::default()
    };
    let first = OnnxBackend::load(&model, options).unwrap();
    let second = OnnxBackend::load(&model, options).unwrap();
    assert!(
        Arc::ptr_eq(&first, &second),
        "same model and options share a session"
    );
    let other = OnnxBackend::load(
        &model,
        SessionOptions {
            threads: 6,
            ..options
        },
    )
    .unwrap();
    assert!(
        !Arc::ptr_eq(&first, &other),
        "other options get their own session"
    );
    let weak = Arc::downgrade(&first);
    drop((first, second));
    assert!(
        weak.upgrade().is_none(),
        "the session is freed once no element holds it"
    );
    assert!(OnnxBackend::load(&model, options).is_ok());
}

#[test]
fn buffer_smaller_than_its_caps_is_an_error_not_a_crash() {
    if without_set_up() {
        return;
    }
    // 97 RGB pixels need a 292-byte stride; a packed 291-byte-row buffer is too small.
    let mut h = harness(&[]);
    h.set_src_caps(caps("RGB", 97, 33));
    let result = h.push(gst::Buffer::from_mut_slice(vec![0u8; 291 * 33]));
    assert_eq!(result, Err(gst::FlowError::Error));
}

#[test]
fn nan_from_the_model_is_background_with_one_warning() {
    if without_set_up() {
        return;
    }
    // partly_nan.onnx takes the log of the normalised channel mean: NaN or -inf for a black
    // frame, finite for a white one.
    let model = test_model("partly_nan.onnx");
    let run = |pattern: &str| {
        collect_samples_and_warnings(&format!(
            "videotestsrc num-buffers=3 pattern={pattern} ! video/x-raw,format=RGB,width=64,height=48 \
             ! rembgfilter model={} ! appsink name=sink",
            model.display()
        ))
        .unwrap()
    };
    let (samples, warnings) = run("black");
    assert_eq!(samples.len(), 3, "every frame still comes out");
    for sample in &samples {
        assert!(alpha_of(&packed_pixels(sample).1).iter().all(|&a| a == 0));
    }
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("partly_nan.onnx") && warnings[0].contains("NaN or infinite"),
        "{}",
        warnings[0]
    );
    let (samples, warnings) = run("white");
    assert_eq!(samples.len(), 3);
    assert!(
        warnings.is_empty(),
        "finite output, no warning: {warnings:?}"
    );
}

#[test]
fn a_folder_given_as_the_model_is_named_as_a_folder() {
    if without_set_up() {
        return;
    }
    let folder = std::env::temp_dir();
    let err = rembg_error(&format!("model={}", folder.display()));
    assert!(
        err.contains(&folder.display().to_string()) && err.contains("is a folder"),
        "{err}"
    );
}

#[test]
fn threads_are_bounded_by_the_machine() {
    if without_set_up() {
        return;
    }
    init();
    let cores = std::thread::available_parallelism().unwrap().get() as u32;
    for factory in ["rembgfilter", "lipsyncsrc"] {
        let element = gst::ElementFactory::make(factory).build().unwrap();
        let spec = element
            .find_property("threads")
            .unwrap()
            .downcast::<gst::glib::ParamSpecUInt>()
            .unwrap();
        assert_eq!(spec.maximum(), cores * 4, "{factory}");
    }
}

#[test]
fn after_an_error_the_element_starts_again_with_good_input() {
    if without_set_up() {
        return;
    }
    init();
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=32,height=24 \
         ! rembgfilter name=filter model=/nonexistent/model.onnx ! fakesink",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let err = run_to_eos(&pipeline).unwrap_err();
    assert!(err.contains("/nonexistent/model.onnx"), "{err}");
    pipeline.set_state(gst::State::Null).unwrap();
    let filter = pipeline.by_name("filter").unwrap();
    filter.set_property("model", test_model("brightness.onnx").to_str().unwrap());
    run_to_eos(&pipeline).expect("the same element plays once its model is good");
    pipeline.set_state(gst::State::Null).unwrap();
    let stats = filter.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("frames").unwrap(), 2);
}

#[test]
fn a_model_without_outputs_is_named_with_what_is_needed() {
    if without_set_up() {
        return;
    }
    let model = test_model("no_outputs.onnx");
    let err = rembg_error(&format!("model={}", model.display()));
    assert!(
        err.contains("no_outputs.onnx")
            && err.contains("no outputs")
            && err.contains("mask output"),
        "{err}"
    );
}
