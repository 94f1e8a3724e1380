//! rembgfilter's mask controls: post-processing against Python rembg, threshold, feather,
//! temporal smoothing with its resets, mask interval, and changes while playing.

mod common;

use common::*;
use gst::prelude::*;
use gst_check::Harness;
use gstneuralfx::rembgfilter::RembgMode;

const WIDTH: u32 = 160;
const HEIGHT: u32 = 120;

fn photo(name: &str) -> Vec<u8> {
    scaled_photo(name, WIDTH as usize, HEIGHT as usize)
}

fn harness(properties: &[(&str, glib::Value)]) -> Harness {
    rembgfilter_harness(properties, WIDTH as usize, HEIGHT as usize)
}

use gst::glib;

/// Pushes a frame at `index` * 40 ms and returns its output alpha.
fn push(h: &mut Harness, pixels: &[u8], index: u64, flags: gst::BufferFlags) -> Vec<u8> {
    h.push(frame_buffer(pixels, index, flags)).unwrap();
    let out = h.pull().unwrap();
    let map = out.map_readable().unwrap();
    alpha_of(&map)
}

/// A flush (what a seek sends) followed by a new segment.
fn flush(h: &mut Harness) {
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
        gst::ClockTime,
    >::new()));
}

fn plain_mask(name: &str) -> Vec<u8> {
    let mut h = harness(&[]);
    push(&mut h, &photo(name), 0, gst::BufferFlags::empty())
}

#[test]
fn post_process_mask_matches_python_rembg() {
    if without_set_up() {
        return;
    }
    for photo_name in ["astronaut", "chelsea", "coffee"] {
        let image = sample(photo_name);
        let reference_file = std::env::temp_dir().join(format!(
            "neuralfx-pp-{photo_name}-{}.raw",
            std::process::id()
        ));
        run_reference(
            "rembg_mask.py",
            &[
                "u2netp",
                image.to_str().unwrap(),
                reference_file.to_str().unwrap(),
                "--post-process",
            ],
        );
        let reference = std::fs::read(&reference_file).unwrap();
        std::fs::remove_file(&reference_file).unwrap();
        let samples = collect_samples(&format!(
            "filesrc location={} ! decodebin ! videoconvert ! rembgfilter post-process-mask=true ! appsink name=sink",
            image.display()
        ))
        .unwrap();
        let ours = alpha_of(&packed_pixels(&samples[0]).1);
        assert!(
            ours.iter().all(|&a| a == 0 || a == 255),
            "post-processed masks are binary"
        );
        let (mean, iou) = compare_masks(&ours, &reference);
        println!("{photo_name}: post-processed mean diff {mean:.3}, IoU {iou:.5}");
        assert!(iou >= 0.99, "{photo_name}: IoU {iou} < 0.99");
    }
}

#[test]
fn threshold_binarises_at_its_level() {
    if without_set_up() {
        return;
    }
    let soft = plain_mask("astronaut");
    assert!(
        soft.iter().any(|&a| a > 0 && a < 255),
        "the plain mask is soft"
    );
    let mut h = harness(&[("threshold", 128u32.to_value())]);
    let hard = push(&mut h, &photo("astronaut"), 0, gst::BufferFlags::empty());
    let expected: Vec<u8> = soft
        .iter()
        .map(|&a| if a >= 128 { 255 } else { 0 })
        .collect();
    assert_eq!(hard, expected);
}

#[test]
fn feather_softens_a_thresholded_edge() {
    if without_set_up() {
        return;
    }
    let mut hard = harness(&[("threshold", 128u32.to_value())]);
    let binary = push(&mut hard, &photo("astronaut"), 0, gst::BufferFlags::empty());
    let mut h = harness(&[
        ("threshold", 128u32.to_value()),
        ("feather", 4u32.to_value()),
    ]);
    let feathered = push(&mut h, &photo("astronaut"), 0, gst::BufferFlags::empty());
    let between = feathered.iter().filter(|&&a| a > 0 && a < 255).count();
    assert!(
        between > 100,
        "feathering should create soft edge pixels, found {between}"
    );
    // Far from any edge nothing changes: compare the pixels whose 9x9 neighbourhood is uniform.
    let w = WIDTH as usize;
    for y in 5..HEIGHT as usize - 5 {
        for x in 5..w - 5 {
            let v = binary[y * w + x];
            let uniform =
                (y - 4..=y + 4).all(|yy| (x - 4..=x + 4).all(|xx| binary[yy * w + xx] == v));
            if uniform {
                assert_eq!(feathered[y * w + x], v, "({x},{y}) is far from an edge");
            }
        }
    }
}

#[test]
fn temporal_smoothing_blends_frames_and_resets_on_discontinuities() {
    if without_set_up() {
        return;
    }
    let (first, second) = (plain_mask("astronaut"), plain_mask("coffee"));
    let blended: Vec<u8> = first
        .iter()
        .zip(&second)
        .map(|(&a, &b)| (f64::from(a) * 0.5 + f64::from(b) * 0.5).round() as u8)
        .collect();
    let (astronaut, coffee) = (photo("astronaut"), photo("coffee"));

    let mut h = harness(&[("temporal-smoothing", 0.5f64.to_value())]);
    assert_eq!(
        push(&mut h, &astronaut, 0, gst::BufferFlags::DISCONT),
        first
    );
    assert_eq!(
        push(&mut h, &coffee, 1, gst::BufferFlags::empty()),
        blended,
        "consecutive frames blend"
    );

    // A gap in the timestamps, a DISCONT flag and a flush each start afresh.
    let mut h = harness(&[("temporal-smoothing", 0.5f64.to_value())]);
    push(&mut h, &astronaut, 0, gst::BufferFlags::empty());
    assert_eq!(
        push(&mut h, &coffee, 5, gst::BufferFlags::empty()),
        second,
        "timestamp gap"
    );
    push(&mut h, &astronaut, 6, gst::BufferFlags::empty());
    assert_eq!(
        push(&mut h, &coffee, 7, gst::BufferFlags::DISCONT),
        second,
        "DISCONT flag"
    );
    push(&mut h, &astronaut, 8, gst::BufferFlags::empty());
    flush(&mut h);
    assert_eq!(
        push(&mut h, &coffee, 9, gst::BufferFlags::empty()),
        second,
        "flush"
    );
}

#[test]
fn mask_interval_reuses_the_mask_between_model_runs() {
    if without_set_up() {
        return;
    }
    let (astronaut, coffee) = (photo("astronaut"), photo("coffee"));
    let (first, second) = (plain_mask("astronaut"), plain_mask("coffee"));
    let mut h = harness(&[("mask-interval", 3u32.to_value())]);
    let outputs: Vec<Vec<u8>> = [&astronaut, &coffee, &coffee, &coffee, &astronaut]
        .iter()
        .enumerate()
        .map(|(i, frame)| push(&mut h, frame, i as u64, gst::BufferFlags::empty()))
        .collect();
    assert_eq!(outputs[0], first);
    assert_eq!(outputs[1], first, "frame 2 reuses frame 1's mask");
    assert_eq!(outputs[2], first, "frame 3 reuses frame 1's mask");
    assert_eq!(outputs[3], second, "frame 4 runs the model again");
    assert_eq!(outputs[4], second, "frame 5 reuses frame 4's mask");
}

#[test]
fn stats_count_frames_and_model_runs() {
    if without_set_up() {
        return;
    }
    let astronaut = photo("astronaut");
    let mut h = harness(&[("mask-interval", 2u32.to_value())]);
    for index in 0..5 {
        push(&mut h, &astronaut, index, gst::BufferFlags::empty());
    }
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("frames").unwrap(), 5);
    assert_eq!(
        stats.get::<u64>("model-runs").unwrap(),
        3,
        "frames 1, 3 and 5"
    );
    assert!(stats.get::<u64>("model-time").unwrap() > 0);
}

#[test]
fn mask_interval_survives_dropped_frames_but_not_a_flush() {
    if without_set_up() {
        return;
    }
    let (astronaut, coffee) = (photo("astronaut"), photo("coffee"));
    let (first, second) = (plain_mask("astronaut"), plain_mask("coffee"));
    let mut h = harness(&[("mask-interval", 3u32.to_value())]);
    assert_eq!(
        push(&mut h, &astronaut, 0, gst::BufferFlags::empty()),
        first
    );
    // A live source marks the frame after ones it dropped with DISCONT and a timestamp gap:
    // the scene is the same, so the interval goes on (else a late pipeline would run the
    // model on every frame it still gets).
    assert_eq!(
        push(&mut h, &coffee, 3, gst::BufferFlags::DISCONT),
        first,
        "DISCONT and a gap keep the mask"
    );
    // A flush (a seek) starts afresh: the next frame runs the model.
    flush(&mut h);
    assert_eq!(
        push(&mut h, &coffee, 4, gst::BufferFlags::empty()),
        second,
        "a flush forgets the mask"
    );
}

#[test]
fn controls_change_while_playing() {
    if without_set_up() {
        return;
    }
    let astronaut = photo("astronaut");
    let mut h = harness(&[]);
    let soft = push(&mut h, &astronaut, 0, gst::BufferFlags::empty());
    h.element().unwrap().set_property("threshold", 100u32);
    let hard = push(&mut h, &astronaut, 1, gst::BufferFlags::empty());
    assert_ne!(soft, hard);
    assert!(hard.iter().all(|&a| a == 0 || a == 255));
    h.element().unwrap().set_property("threshold", 0u32);
    assert_eq!(push(&mut h, &astronaut, 2, gst::BufferFlags::empty()), soft);
}

/// Pushes one RGB frame and returns the output caps' format and the packed output.
fn push_full(h: &mut Harness, pixels: &[u8], index: u64) -> (String, Vec<u8>) {
    let mut buffer = gst::Buffer::from_mut_slice(pixels.to_vec());
    buffer
        .get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_mseconds(index * 40));
    h.push(buffer).unwrap();
    let out = h.pull().unwrap();
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    let sample = gst::Sample::builder().buffer(&out).caps(&caps).build();
    let (info, packed) = packed_pixels(&sample);
    (info.format().to_str().to_string(), packed)
}

#[test]
fn mask_mode_outputs_the_alpha_as_gray8() {
    if without_set_up() {
        return;
    }
    let astronaut = photo("astronaut");
    let mut h = harness(&[("mode", RembgMode::Mask.to_value())]);
    let (format, gray) = push_full(&mut h, &astronaut, 0);
    assert_eq!(format, "GRAY8");
    assert_eq!(gray, plain_mask("astronaut"));
}

#[test]
fn composite_mode_puts_the_foreground_over_the_colour() {
    if without_set_up() {
        return;
    }
    let astronaut = photo("astronaut");
    let alpha = plain_mask("astronaut");
    for (input, blue_pixel) in [("RGB", [0u8, 0, 255]), ("BGR", [255u8, 0, 0])] {
        init();
        let element = gst::ElementFactory::make("rembgfilter")
            .property_from_str("mode", "composite")
            .property("background-color", 0xff00_00ffu32)
            .build()
            .unwrap();
        let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
        h.set_src_caps_str(&format!(
            "video/x-raw,format={input},width={WIDTH},height={HEIGHT},framerate=25/1"
        ));
        let frame: Vec<u8> = if input == "RGB" {
            astronaut.clone()
        } else {
            astronaut
                .chunks(3)
                .flat_map(|p| [p[2], p[1], p[0]])
                .collect()
        };
        let (_, out) = push_full(&mut h, &frame, 0);
        for (i, (pixel, &a)) in out.chunks_exact(4).zip(&alpha).enumerate() {
            assert_eq!(pixel[3], 255);
            if a == 0 {
                assert_eq!(
                    &pixel[..3],
                    &blue_pixel,
                    "{input}: background pixel {i} is the colour"
                );
            } else if a == 255 {
                assert_eq!(
                    &pixel[..3],
                    &frame[i * 3..i * 3 + 3],
                    "{input}: foreground pixel {i} is the frame"
                );
            }
        }
        assert!(alpha.contains(&0) && alpha.contains(&255));
    }
}

#[test]
fn blur_mode_blurs_only_the_background() {
    if without_set_up() {
        return;
    }
    let astronaut = photo("astronaut");
    let alpha = plain_mask("astronaut");
    let mut h = harness(&[
        ("mode", RembgMode::Blur.to_value()),
        ("blur-radius", 6u32.to_value()),
    ]);
    let (format, out) = push_full(&mut h, &astronaut, 0);
    assert_eq!(format, "RGBA");
    let mut changed_background = 0;
    for (i, (pixel, &a)) in out.chunks_exact(4).zip(&alpha).enumerate() {
        assert_eq!(pixel[3], 255);
        if a == 255 {
            assert_eq!(
                &pixel[..3],
                &astronaut[i * 3..i * 3 + 3],
                "foreground pixel {i} is sharp"
            );
        } else if a == 0 && pixel[..3] != astronaut[i * 3..i * 3 + 3] {
            changed_background += 1;
        }
    }
    assert!(
        changed_background > 500,
        "the background should be blurred ({changed_background} pixels changed)"
    );
}

#[test]
fn changing_mode_while_playing_renegotiates() {
    if without_set_up() {
        return;
    }
    let astronaut = photo("astronaut");
    let mut h = harness(&[]);
    assert_eq!(push_full(&mut h, &astronaut, 0).0, "RGBA");
    h.element().unwrap().set_property_from_str("mode", "mask");
    let (format, gray) = push_full(&mut h, &astronaut, 1);
    assert_eq!(format, "GRAY8");
    assert_eq!(gray.len(), (WIDTH * HEIGHT) as usize);
    h.element()
        .unwrap()
        .set_property_from_str("mode", "composite");
    let (format, rgba) = push_full(&mut h, &astronaut, 2);
    assert_eq!(format, "RGBA");
    assert!(rgba.chunks(4).all(|p| p[3] == 255));
}

#[test]
fn replace_mode_puts_the_foreground_over_an_image_scaled_to_the_frame() {
    if without_set_up() {
        return;
    }
    init();
    // A small red picture of another size: it is decoded and scaled to the frame.
    let picture =
        std::env::temp_dir().join(format!("neuralfx-background-{}.png", std::process::id()));
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 pattern=solid-color foreground-color=0xffff0000 ! video/x-raw,width=50,height=30 \
         ! pngenc ! filesink location={}",
        picture.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    run_to_eos(&pipeline).unwrap();
    pipeline.set_state(gst::State::Null).unwrap();

    let astronaut = photo("astronaut");
    let alpha = plain_mask("astronaut");
    let mut h = harness(&[
        ("mode", RembgMode::Replace.to_value()),
        ("background-location", picture.to_str().unwrap().to_value()),
    ]);
    let (format, out) = push_full(&mut h, &astronaut, 0);
    assert_eq!(format, "RGBA");
    for (i, (pixel, &a)) in out.chunks_exact(4).zip(&alpha).enumerate() {
        assert_eq!(pixel[3], 255);
        if a == 0 {
            assert_eq!(
                &pixel[..3],
                &[255, 0, 0],
                "background pixel {i} shows the picture"
            );
        } else if a == 255 {
            assert_eq!(&pixel[..3], &astronaut[i * 3..i * 3 + 3]);
        }
    }
    std::fs::remove_file(picture).unwrap();
}

/// Writes a `width` x `height` PNG of three vertical bands: red, green, blue.
fn three_band_png(width: u32, height: u32) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "neuralfx-bands-{}-{width}x{height}.png",
        std::process::id()
    ));
    let pixels: Vec<u8> = (0..width * height)
        .flat_map(|i| match (i % width) * 3 / width {
            0 => [255, 0, 0],
            1 => [0, 255, 0],
            _ => [0, 0, 255],
        })
        .collect();
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut encoder = png::Encoder::new(file, width, height);
    encoder.set_color(png::ColorType::Rgb);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&pixels).unwrap();
    writer.finish().unwrap();
    path
}

#[test]
fn replace_mode_fills_fits_or_stretches_a_picture_of_another_shape() {
    if without_set_up() {
        return;
    }
    init();
    // A 6:1 picture behind a 4:3 frame: fill shows only its middle band.
    let picture = three_band_png(600, 100);
    let astronaut = photo("astronaut");
    let alpha = plain_mask("astronaut");
    let background_of = |fit: &str| {
        let mut h = harness(&[
            ("mode", RembgMode::Replace.to_value()),
            ("background-location", picture.to_str().unwrap().to_value()),
            ("background-color", 0xff10_2030u32.to_value()),
        ]);
        h.element()
            .unwrap()
            .set_property_from_str("background-fit", fit);
        let (_, out) = push_full(&mut h, &astronaut, 0);
        out
    };
    let at = |out: &[u8], x: u32, y: u32| {
        let i = (y * WIDTH + x) as usize;
        (alpha[i] == 0).then(|| [out[i * 4], out[i * 4 + 1], out[i * 4 + 2]])
    };
    let background_pixels = |out: &[u8]| -> Vec<[u8; 3]> {
        (0..HEIGHT)
            .flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
            .filter_map(|(x, y)| at(out, x, y))
            .collect()
    };
    // fill (the default): the middle of the picture covers the frame, all green behind.
    let fill = background_of("fill");
    let shown = background_pixels(&fill);
    assert!(shown.len() > 1000);
    assert!(
        shown.iter().all(|p| p[1] > 200 && p[0] < 60 && p[2] < 60),
        "fill shows the green middle band"
    );
    // fit: the whole picture, 160x27 in the middle, bars of background-color above and below.
    let fit = background_of("fit");
    let row = |out: &[u8], y: u32, xs: std::ops::Range<u32>| -> Vec<[u8; 3]> {
        xs.filter_map(|x| at(out, x, y)).collect()
    };
    let bars: Vec<_> = [0, HEIGHT - 1]
        .into_iter()
        .flat_map(|y| row(&fit, y, 0..WIDTH))
        .collect();
    assert!(bars.len() > 20 && bars.iter().all(|p| *p == [0x10, 0x20, 0x30]));
    // Inside the band the picture's outer thirds show at its left and right (its middle may be
    // behind the astronaut).
    let band: Vec<_> = (50..70).flat_map(|y| row(&fit, y, 0..WIDTH)).collect();
    for colour in [[255, 0, 0], [0, 0, 255]] {
        assert!(band.contains(&colour), "fit shows the {colour:?} band");
    }
    assert!(
        !band.contains(&[0x10, 0x20, 0x30]),
        "no bar inside the picture"
    );
    // stretch: every band, top to bottom, no bars.
    let stretch = background_of("stretch");
    let edges: Vec<_> = [0, HEIGHT - 1]
        .into_iter()
        .flat_map(|y| row(&stretch, y, 0..WIDTH))
        .collect();
    assert!(!edges.contains(&[0x10, 0x20, 0x30]));
    for colour in [[255, 0, 0], [0, 0, 255]] {
        assert!(
            edges.contains(&colour),
            "stretch reaches the edge with {colour:?}"
        );
    }
    std::fs::remove_file(picture).unwrap();
}

#[test]
fn replace_mode_with_a_missing_picture_is_an_error_naming_it() {
    if without_set_up() {
        return;
    }
    let err = start_error(
        "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=32,height=24 \
         ! rembgfilter mode=replace background-location=/nonexistent/beach.jpg ! fakesink",
    );
    assert!(
        err.contains("property 'background-location'") && err.contains("/nonexistent/beach.jpg"),
        "{err}"
    );
}

#[test]
fn rgba_input_keeps_its_transparency_unless_told_otherwise() {
    if without_set_up() {
        return;
    }
    // The astronaut as RGBA with its left half fully transparent: rembg's cutout multiplies the
    // mask by that alpha, so the left half stays transparent whatever the model says.
    let rgb = photo("astronaut");
    let (width, height) = (WIDTH as usize, HEIGHT as usize);
    let rgba: Vec<u8> = rgb
        .chunks_exact(3)
        .enumerate()
        .flat_map(|(i, p)| {
            let alpha = if i % width < width / 2 { 0 } else { 255 };
            [p[0], p[1], p[2], alpha]
        })
        .collect();
    let model_mask = plain_mask("astronaut");
    let rgba_caps = format!("video/x-raw,format=RGBA,width={width},height={height},framerate=25/1");
    for keep in [true, false] {
        let mut h = harness(&[("keep-input-alpha", keep.to_value())]);
        h.set_src_caps_str(&rgba_caps);
        let (format, out) = push_full(&mut h, &rgba, 0);
        assert_eq!(format, "RGBA");
        let alpha = alpha_of(&out);
        for (i, (&a, &m)) in alpha.iter().zip(&model_mask).enumerate() {
            let expected = if keep && i % width < width / 2 { 0 } else { m };
            assert!(
                a.abs_diff(expected) <= 1,
                "keep-input-alpha={keep}, pixel {i}: {a}, expected {expected}"
            );
        }
        // The left half was foreground in places: the property made a difference there.
        assert!(
            model_mask
                .iter()
                .enumerate()
                .any(|(i, &m)| i % width < width / 2 && m > 200)
        );
    }
}

#[test]
fn start_only_properties_set_while_playing_are_refused_and_keep_reporting_what_runs() {
    if without_set_up() {
        return;
    }
    init();
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=4 ! video/x-raw,format=RGB,width=64,height=48 \
         ! rembgfilter name=cut model=u2netp threads=1 ! appsink name=sink sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let cut = pipeline.by_name("cut").unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    assert!(
        sink.try_pull_sample(gst::ClockTime::from_seconds(60))
            .is_some()
    );
    cut.set_property("model", "selfie");
    cut.set_property("threads", 2u32);
    // A property that can change while playing still does.
    cut.set_property("threshold", 100u32);
    assert_eq!(cut.property::<String>("model"), "u2netp");
    assert_eq!(cut.property::<u32>("threads"), 1);
    assert_eq!(cut.property::<u32>("threshold"), 100);
    // The sink lets EOS through once every frame is taken.
    while sink
        .try_pull_sample(gst::ClockTime::from_seconds(30))
        .is_some()
    {}
    let warnings = run_to_eos_noting_warnings(&pipeline).unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    for property in ["'model'", "'threads'"] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(property) && w.contains("cannot change while the element runs")),
            "{property}: {warnings:?}"
        );
    }
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("keeps \"u2netp\"") || w.contains("keeps u2netp")),
        "{warnings:?}"
    );
    // Stopped, the element takes it.
    cut.set_property("model", "selfie");
    assert_eq!(cut.property::<String>("model"), "selfie");
}
