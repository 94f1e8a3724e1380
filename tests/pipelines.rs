//! The ready-made scripts in pipelines/, run as a user runs them (with the installed plugin).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use gst::glib;
use gst::prelude::*;
use gst_pbutils::prelude::*;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines")
        .join(name)
}

/// Runs a script of `scripts/` to success and gives what it printed.
fn run_script(name: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    run_script_telling(name, args, env).0
}

/// [`run_script`], with what it printed on stderr too.
fn run_script_telling(name: &str, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let output = Command::new(script(name))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{name} failed:\n{stdout}{stderr}");
    (stdout, stderr)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("neuralfx-pipelines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Five frames of the astronaut photo in lossless FFV1/Matroska, as an input video.
fn input_video() -> PathBuf {
    let path = scratch("input.mkv");
    if !path.exists() {
        write_astronaut_video(&path, 5, 256);
    }
    path
}

fn decoded_frames(path: &Path, format: &str) -> Vec<gst::Sample> {
    collect_samples(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format={format} ! appsink name=sink",
        path.display()
    ))
    .unwrap()
}

#[test]
fn still_image_becomes_a_transparent_png_like_rembgfilter_computes() {
    if without_set_up() {
        return;
    }
    let output = scratch("cutout.png");
    let photo = sample("coffee");
    run_script(
        "cutout-image.sh",
        &[photo.to_str().unwrap(), output.to_str().unwrap()],
        &[],
    );
    let png = decoded_frames(&output, "RGBA");
    let expected = collect_samples(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! rembgfilter ! appsink name=sink",
        photo.display()
    ))
    .unwrap();
    let pixels = packed_pixels(&png[0]).1;
    assert_eq!(alpha_of(&pixels), alpha_of(&packed_pixels(&expected[0]).1));
    // Colour where nothing shows is cleared (clear-transparent=true), so the file is smaller
    // than with the colour kept; visible pixels keep theirs.
    let hidden = pixels.chunks_exact(4).filter(|p| p[3] == 0);
    assert!(hidden.clone().count() > 1000);
    assert!(hidden.into_iter().all(|p| p[..3] == [0, 0, 0]));
    let kept = scratch("cutout-kept.png");
    run_script(
        "cutout-image.sh",
        &[
            photo.to_str().unwrap(),
            kept.to_str().unwrap(),
            "clear-transparent=false",
        ],
        &[],
    );
    let (cleared_size, kept_size) = (
        std::fs::metadata(&output).unwrap().len(),
        std::fs::metadata(&kept).unwrap().len(),
    );
    assert!(
        cleared_size * 10 < kept_size * 9,
        "{cleared_size} bytes cleared, {kept_size} kept"
    );
    let kept_pixels = packed_pixels(&decoded_frames(&kept, "RGBA")[0]).1;
    assert_eq!(alpha_of(&kept_pixels), alpha_of(&pixels));
    assert!(
        kept_pixels
            .chunks_exact(4)
            .any(|p| p[3] == 0 && p[..3] != [0, 0, 0])
    );
}

/// The visible pixels (alpha > 0) of a cutout, as RGBA.
fn visible(pixels: &[u8]) -> Vec<[u8; 4]> {
    pixels
        .chunks_exact(4)
        .filter(|p| p[3] > 0)
        .map(|p| [p[0], p[1], p[2], p[3]])
        .collect()
}

#[test]
fn still_cutouts_estimate_the_edge_colour_unless_told_not_to() {
    if without_set_up() {
        return;
    }
    let photo = sample("chelsea");
    let cutout_with = |name: &str, extra: &[&str]| {
        let output = scratch(name);
        let mut args = vec![photo.to_str().unwrap(), output.to_str().unwrap()];
        args.extend_from_slice(extra);
        run_script("cutout-image.sh", &args, &[]);
        packed_pixels(&decoded_frames(&output, "RGBA")[0]).1
    };
    let element = |properties: &str| {
        let samples = collect_samples(&format!(
            "filesrc location={} ! decodebin ! videoconvert ! rembgfilter {properties} ! appsink name=sink",
            photo.display()
        ))
        .unwrap();
        packed_pixels(&samples[0]).1
    };
    let estimated = cutout_with("estimated.png", &[]);
    assert_eq!(
        visible(&estimated),
        visible(&element("foreground-estimation=multilevel")),
        "the script estimates the foreground colour by default"
    );
    let plain = cutout_with("plain.png", &["foreground-estimation=none"]);
    assert_eq!(visible(&plain), visible(&element("")));
    assert_ne!(visible(&plain), visible(&estimated));
}

#[test]
fn rembgs_alpha_matting_options_mean_the_same_in_the_scripts() {
    if without_set_up() {
        return;
    }
    // -a -af N -ab N -ae N, as rembg i and rembg p take them.
    let photo = sample("coffee");
    let options = ["-a", "-af", "200", "-ab", "20", "-ae", "5"];
    let image_cutout = scratch("matted.png");
    let mut args = vec![photo.to_str().unwrap(), image_cutout.to_str().unwrap()];
    args.extend_from_slice(&options);
    run_script("cutout-image.sh", &args, &[]);
    let by_image_script = packed_pixels(&decoded_frames(&image_cutout, "RGBA")[0]).1;
    let samples = collect_samples(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! rembgfilter alpha-matting=true \
         alpha-matting-foreground-threshold=200 alpha-matting-background-threshold=20 \
         alpha-matting-erode-size=5 ! appsink name=sink",
        photo.display()
    ))
    .unwrap();
    let by_element = packed_pixels(&samples[0]).1;
    assert_eq!(visible(&by_image_script), visible(&by_element));
    let plain = packed_pixels(
        &collect_samples(&format!(
            "filesrc location={} ! decodebin ! videoconvert ! rembgfilter ! appsink name=sink",
            photo.display()
        ))
        .unwrap()[0],
    )
    .1;
    assert_ne!(
        alpha_of(&plain),
        alpha_of(&by_element),
        "matting changed the alpha"
    );

    let (input, output) = (scratch("matting-in"), scratch("matting-out"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(&photo, input.join("coffee.png")).unwrap();
    let mut args = vec![input.to_str().unwrap(), output.to_str().unwrap()];
    args.extend_from_slice(&options);
    run_script("cutout-folder.sh", &args, &[]);
    let by_folder_script = packed_pixels(&decoded_frames(&output.join("coffee.png"), "RGBA")[0]).1;
    assert_eq!(
        by_folder_script, by_image_script,
        "folder mode takes them too"
    );

    let refused = Command::new(script("cutout-image.sh"))
        .args([
            photo.to_str().unwrap(),
            scratch("never.png").to_str().unwrap(),
            "-ae",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("-ae needs a whole number"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn the_readme_picture_of_the_edge_options_is_made_again_by_its_script() {
    if without_set_up() {
        return;
    }
    let output = scratch("edges.png");
    Command::new(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/edges-picture.sh"),
    )
    .arg(&output)
    .status()
    .unwrap()
    .success()
    .then_some(())
    .expect("scripts/edges-picture.sh");
    let (info, pixels) = packed_pixels(&decoded_frames(&output, "RGBA")[0]);
    assert_eq!((info.width(), info.height()), (1088, 270));
    // Three panels of 360 pixels with 4-pixel gaps, each different from the others.
    let panel = |index: usize| -> Vec<u8> {
        (0..270)
            .flat_map(|y| {
                let start = (y * 1088 + index * 364) * 4;
                pixels[start..start + 360 * 4].to_vec()
            })
            .collect()
    };
    let (straight, estimated, matted) = (panel(0), panel(1), panel(2));
    assert_ne!(straight, estimated);
    assert_ne!(estimated, matted);
}

#[test]
fn a_failed_cutout_leaves_no_file_and_says_why_in_one_line() {
    if without_set_up() {
        return;
    }
    let notes = scratch("notes.txt");
    std::fs::write(&notes, "not a picture\n").unwrap();
    for (input, reason) in [
        (scratch("missing.png"), "no such file"),
        (notes, "Could not determine type of stream"),
    ] {
        let output = scratch("failed.png");
        let run = Command::new(script("cutout-image.sh"))
            .args([input.to_str().unwrap(), output.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{stderr}");
        assert!(!output.exists(), "no empty {}", output.display());
        assert!(!scratch("failed.png.part").exists());
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(input.to_str().unwrap()) && stderr.contains(reason),
            "{stderr}"
        );
    }
}

/// Runs `gst_launch` of pipelines/lib/launch.sh with a stand-in `gst-launch-1.0` (the shell
/// `body` it runs), and gives its status and what it passed on to stdout and stderr; asserts
/// that it left no temporary file behind.
fn gst_launch_with(name: &str, body: &str) -> (Option<i32>, String, String) {
    let bin = scratch(&format!("fake-gst-launch-{name}"));
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("gst-launch-1.0");
    std::fs::write(&fake, format!("#!/usr/bin/env bash\n{body}\n")).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let temporary = scratch(&format!("fake-gst-launch-{name}-tmp"));
    std::fs::create_dir_all(&temporary).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = Command::new("bash")
        .arg("-c")
        .arg(r#". "$1"; gst_launch -q fakesrc ! fakesink"#)
        .arg("bash")
        .arg(script("lib/launch.sh"))
        .env("PATH", path)
        .env("TMPDIR", &temporary)
        .output()
        .unwrap();
    let left: Vec<_> = std::fs::read_dir(&temporary).unwrap().collect();
    assert!(left.is_empty(), "{name}: left behind {left:?}");
    (
        run.status.code(),
        String::from_utf8_lossy(&run.stdout).into_owned(),
        String::from_utf8_lossy(&run.stderr).into_owned(),
    )
}

#[test]
fn a_gst_launch_that_printed_an_error_and_waits_is_ended() {
    // GStreamer 1.22's gst-launch-1.0 can print an error raised while prerolling and then wait
    // forever: the stand-in does just that, and leaves its process id behind.
    let pid_file = scratch("waiting-gst-launch.pid");
    let (status, _, errors) = gst_launch_with(
        "waiting",
        &format!(
            "echo $$ > '{}'\necho 'ERROR: from element /GstPipeline:pipeline0/GstTypeFindElement:typefind: Could not determine type of stream.' >&2\nexec sleep 600",
            pid_file.display()
        ),
    );
    assert_eq!(status, Some(1));
    assert!(
        errors.contains("Could not determine type of stream."),
        "{errors}"
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the waiting gst-launch {pid} still runs"
    );
    // Its status and output otherwise, each stream passed on as it is.
    let (status, printed, errors) = gst_launch_with(
        "failing",
        "echo 'Setting pipeline to PAUSED ...'\necho 'ERROR: no such file' >&2\nexit 1",
    );
    assert_eq!(status, Some(1));
    assert_eq!(printed.trim(), "Setting pipeline to PAUSED ...");
    assert_eq!(errors.trim(), "ERROR: no such file");
    let (status, printed, errors) = gst_launch_with(
        "succeeding",
        r#"echo "WARNING: a warning, arguments $*" >&2"#,
    );
    assert_eq!(status, Some(0));
    assert!(printed.is_empty(), "{printed}");
    assert_eq!(
        errors.trim(),
        "WARNING: a warning, arguments -q fakesrc ! fakesink"
    );
}

#[test]
fn video_with_alpha_keeps_the_alpha_through_ffv1() {
    if without_set_up() {
        return;
    }
    let output = scratch("alpha.mkv");
    let (printed, told) = run_script_telling(
        "video-with-alpha.sh",
        &[input_video().to_str().unwrap(), output.to_str().unwrap()],
        &[],
    );
    // Which model runs, its cost and what is faster; gst-launch prints what runs it.
    assert!(
        told.contains("neuralfx: model u2netp (about 0.25 s a 720p frame")
            && told.contains("neuralfx: faster: model=selfie"),
        "{told}"
    );
    assert!(printed.contains("u2netp.onnx runs on "), "{printed}");
    let frames = decoded_frames(&output, "RGBA");
    assert_eq!(frames.len(), 5);
    for frame in &frames {
        let alpha = alpha_of(&packed_pixels(frame).1);
        let clear = alpha.iter().filter(|&&a| a < 10).count();
        let solid = alpha.iter().filter(|&&a| a > 245).count();
        assert!(
            clear > alpha.len() / 10 && solid > alpha.len() / 10,
            "alpha survived: {clear} clear, {solid} solid"
        );
    }
}

#[test]
fn blurred_background_video_is_an_mp4_of_every_frame() {
    if without_set_up() {
        return;
    }
    let output = scratch("blurred.mp4");
    run_script(
        "blur-background.sh",
        &[input_video().to_str().unwrap(), output.to_str().unwrap()],
        &[],
    );
    let frames = decoded_frames(&output, "RGB");
    assert_eq!(frames.len(), 5);
    let (info, _) = packed_pixels(&frames[0]);
    assert_eq!((info.width(), info.height()), (256, 256));
    let (profile, chroma) = h264_profile(&output);
    assert!(
        !profile.contains("4:4:4") && chroma == "4:2:0",
        "{profile}, {chroma}"
    );
}

#[test]
fn webcam_script_runs_live_with_a_test_source() {
    if without_set_up() {
        return;
    }
    let (_, told) = run_script_telling(
        "webcam-blur.sh",
        &[],
        &[
            ("SOURCE", "videotestsrc is-live=true num-buffers=15"),
            ("SINK", "fakesink sync=true"),
        ],
    );
    // The default keeps up: no advice to go faster.
    assert!(
        told.contains("neuralfx: model selfie (about 15 ms") && !told.contains("faster:"),
        "{told}"
    );
}

/// A one-second clip with sound: 25 frames of a moving ball and a 440 Hz tone, muxed as
/// `container` ("mp4": H.264 + AAC; "mkv": FFV1 + raw PCM, which the scripts re-encode).
fn clip_with_sound(container: &str) -> PathBuf {
    init();
    let path = scratch(&format!("with sound.{container}"));
    let (video, audio, mux) = match container {
        "mp4" => (
            "x264enc speed-preset=faster ! video/x-h264,profile=high",
            "avenc_aac",
            "mp4mux",
        ),
        _ => ("avenc_ffv1", "identity", "matroskamux"),
    };
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=25 pattern=ball ! video/x-raw,width=128,height=96,framerate=25/1 \
         ! videoconvert ! {video} ! {mux} name=mux ! filesink location=\"{}\" \
         audiotestsrc num-buffers=10 samplesperbuffer=4800 freq=440 \
         ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! audioconvert ! {audio} ! mux.audio_%u",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    run_to_eos(&pipeline).unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    path
}

/// Seconds of decoded video (frames x frame time) and of decoded sound in `path`, and the
/// sound's loudest sample (0..1).
fn video_and_audio_seconds(path: &Path) -> (f64, f64, f64) {
    let frames = decoded_frames(path, "RGB");
    let fps = gst_video::VideoInfo::from_caps(frames[0].caps().unwrap())
        .unwrap()
        .fps();
    let video = frames.len() as f64 * f64::from(fps.denom()) / f64::from(fps.numer());
    let audio = collect_samples(&format!(
        "filesrc location=\"{}\" ! decodebin ! audio/x-raw ! audioconvert ! audioresample \
         ! audio/x-raw,format=F32LE,rate=48000,channels=1 ! appsink name=sink",
        path.display()
    ))
    .unwrap();
    let samples: Vec<f32> = audio
        .iter()
        .flat_map(|sample| {
            let map = sample.buffer().unwrap().map_readable().unwrap();
            map.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect::<Vec<_>>()
        })
        .collect();
    let loudest = samples.iter().fold(0f32, |m, v| m.max(v.abs()));
    (video, samples.len() as f64 / 48000.0, f64::from(loudest))
}

#[test]
fn the_scripts_keep_the_sound_in_sync_passed_through_or_re_encoded() {
    if without_set_up() {
        return;
    }
    // AAC in MP4 passes through into both containers; raw PCM in Matroska is re-encoded (AAC in
    // MP4, FLAC in Matroska). Every output has all the video and all the sound.
    for (input, script, output, codec) in [
        ("mp4", "blur-background.sh", "kept.mp4", "MPEG-4 AAC"),
        ("mp4", "video-with-alpha.sh", "kept.mkv", "MPEG-4 AAC"),
        ("mkv", "blur-background.sh", "reencoded.mp4", "MPEG-4 AAC"),
        ("mkv", "video-with-alpha.sh", "reencoded.mkv", "FLAC"),
    ] {
        let input = clip_with_sound(input);
        let output = scratch(output);
        run_script(
            script,
            &[
                input.to_str().unwrap(),
                output.to_str().unwrap(),
                "model=selfie",
            ],
            &[],
        );
        let (_, input_audio, _) = video_and_audio_seconds(&input);
        let (video, audio, loudest) = video_and_audio_seconds(&output);
        assert!((video - 1.0).abs() < 0.01, "{script}: {video} s of video");
        // All the input's sound: the same length within two AAC frames (43 ms at 48 kHz, about
        // one video frame), which a re-encode may add as padding.
        assert!(
            (audio - input_audio).abs() <= 0.045,
            "{script} on {}: {audio} s of sound out, {input_audio} s in",
            input.display()
        );
        assert!(loudest > 0.3, "{script}: the tone survives ({loudest})");
        let info = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(10))
            .unwrap()
            .discover_uri(&glib::filename_to_uri(&output, None).unwrap())
            .unwrap();
        let audio_streams = info.audio_streams();
        assert_eq!(audio_streams.len(), 1, "{script}: one audio track");
        let description =
            gst_pbutils::pb_utils_get_codec_description(&audio_streams[0].caps().unwrap())
                .to_string();
        assert!(description.contains(codec), "{script}: {description}");
    }
}

/// The alpha of `pipelines/cutout-image.sh` on `photo` against Python rembg's mask of the same
/// file (which applies its EXIF orientation): the same size, and the largest difference.
fn cutout_against_rembg(photo: &Path) -> ((u32, u32), (u32, u32), u8) {
    let output = photo.with_extension("cutout.png");
    run_script(
        "cutout-image.sh",
        &[photo.to_str().unwrap(), output.to_str().unwrap()],
        &[],
    );
    let frames = decoded_frames(&output, "RGBA");
    let (info, pixels) = packed_pixels(&frames[0]);
    let ours = alpha_of(&pixels);
    let raw = photo.with_extension("rembg.raw");
    let size = run_reference(
        "rembg_mask.py",
        &["u2netp", photo.to_str().unwrap(), raw.to_str().unwrap()],
    );
    let mut dims = size.split_whitespace().map(|v| v.parse::<u32>().unwrap());
    let reference_size = (dims.next().unwrap(), dims.next().unwrap());
    let reference = std::fs::read(&raw).unwrap();
    let largest = if ours.len() == reference.len() {
        largest_difference(&ours, &reference)
    } else {
        u8::MAX
    };
    ((info.width(), info.height()), reference_size, largest)
}

#[test]
fn jpeg_stills_match_python_rembg_in_every_exif_orientation() {
    if without_set_up() {
        return;
    }
    // Camera-style JPEGs of a non-square photo: orientations 1-8 (little-endian EXIF), 6 with
    // a big-endian EXIF, and none. Decoded as Pillow decodes them and turned upright, the
    // cutout's alpha is Python rembg's within 1: every file through the folder script (one
    // process), the two of orientation 6 through cutout-image.sh too (they decode alike).
    let dir = scratch("oriented");
    let output = scratch("oriented-cutouts");
    run_reference(
        "oriented_jpegs.py",
        &[sample("chelsea").to_str().unwrap(), dir.to_str().unwrap()],
    );
    let names: Vec<String> = (1..=8)
        .map(|o| format!("orientation-{o}"))
        .chain(["orientation-6-mm".into(), "plain".into()])
        .collect();
    run_script(
        "cutout-folder.sh",
        &[dir.to_str().unwrap(), output.to_str().unwrap()],
        &[],
    );
    // Python rembg once for all of them: the model loads once.
    let files: Vec<(PathBuf, PathBuf)> = names
        .iter()
        .map(|name| {
            (
                dir.join(format!("{name}.jpg")),
                dir.join(format!("{name}.rembg.raw")),
            )
        })
        .collect();
    let mut arguments = vec!["u2netp"];
    for (photo, raw) in &files {
        arguments.extend([photo.to_str().unwrap(), raw.to_str().unwrap()]);
    }
    let sizes = run_reference("rembg_mask.py", &arguments);
    assert_eq!(sizes.lines().count(), names.len(), "{sizes}");
    for ((name, (photo, raw)), size) in names.iter().zip(&files).zip(sizes.lines()) {
        let reference = std::fs::read(raw).unwrap();
        let mut cutouts = vec![output.join(format!("{name}.png"))];
        if name.starts_with("orientation-6") {
            let single = photo.with_extension("cutout.png");
            run_script(
                "cutout-image.sh",
                &[photo.to_str().unwrap(), single.to_str().unwrap()],
                &[],
            );
            cutouts.push(single);
        }
        for cutout in cutouts {
            let (info, pixels) = packed_pixels(&decoded_frames(&cutout, "RGBA")[0]);
            assert_eq!(
                format!("{} {}", info.width(), info.height()),
                size,
                "{name}: the cutout is upright ({})",
                cutout.display()
            );
            let largest = largest_difference(&alpha_of(&pixels), &reference);
            assert!(
                largest <= 1,
                "{name} ({}): alpha differs from rembg's by up to {largest}",
                cutout.display()
            );
        }
    }
}

#[test]
fn jpeg_photos_match_python_rembg() {
    if without_set_up() {
        return;
    }
    for photo in ["astronaut", "coffee"] {
        let dir = scratch(&format!("jpeg-{photo}"));
        run_reference(
            "oriented_jpegs.py",
            &[
                sample(photo).to_str().unwrap(),
                dir.to_str().unwrap(),
                "400",
            ],
        );
        let (ours, reference, largest) = cutout_against_rembg(&dir.join("plain.jpg"));
        assert_eq!(ours, reference);
        assert!(
            largest <= 1,
            "{photo}: alpha differs from rembg's by up to {largest}"
        );
    }
}

#[test]
fn stills_of_every_kind_pillow_opens_match_python_rembg() {
    if without_set_up() {
        return;
    }
    // Grey, CMYK and progressive JPEG, PNG with alpha or a transparent palette index, WebP with
    // alpha, BMP, GIF (the first frame of an animation, as Pillow opens it) and TIFF with every
    // orientation tag: the folder mode's alpha is Python rembg's cutout alpha within 1, upright,
    // the picture's own alpha multiplied in. cutout-image.sh decodes the same way (still.sh);
    // it is run on the kinds decodebin alone cannot read.
    let dir = scratch("formats");
    let (input, reference, output) = (dir.join("in"), dir.join("rembg"), dir.join("out"));
    let listing = run_reference(
        "still_formats.py",
        &[
            sample("chelsea").to_str().unwrap(),
            input.to_str().unwrap(),
            reference.to_str().unwrap(),
        ],
    );
    let stdout = run_script(
        "cutout-folder.sh",
        &[input.to_str().unwrap(), output.to_str().unwrap()],
        &[],
    );
    assert!(!stdout.contains("skipping"), "{stdout}");
    let mut compared = 0;
    for line in listing.lines() {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap();
        let size: Vec<u32> = words.map(|v| v.parse().unwrap()).collect();
        let stem = name.rsplit_once('.').unwrap().0;
        let mut cutouts = vec![output.join(format!("{stem}.png"))];
        if [
            "bitmap.bmp",
            "animated.gif",
            "orientation-6.tiff",
            "orientation-3.tiff",
        ]
        .contains(&name)
        {
            let single = dir.join(format!("single-{stem}.png"));
            run_script(
                "cutout-image.sh",
                &[input.join(name).to_str().unwrap(), single.to_str().unwrap()],
                &[],
            );
            cutouts.push(single);
        }
        let expected = std::fs::read(reference.join(format!("{name}.alpha"))).unwrap();
        for cutout in cutouts {
            let frames = decoded_frames(&cutout, "RGBA");
            let (info, pixels) = packed_pixels(&frames[0]);
            assert_eq!(
                vec![info.width(), info.height()],
                size,
                "{name}: the cutout is upright"
            );
            let largest = largest_difference(&alpha_of(&pixels), &expected);
            assert!(
                largest <= 1,
                "{name} ({}): alpha differs from rembg's by up to {largest}",
                cutout.display()
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 24, "{listing}");
}

/// The alpha of a PNG cutout.
fn png_alpha(path: &Path) -> Vec<u8> {
    alpha_of(&packed_pixels(&decoded_frames(path, "RGBA")[0]).1)
}

#[test]
fn a_folder_is_cut_out_file_by_file_skipping_what_is_not_a_picture() {
    if without_set_up() {
        return;
    }
    let dir = scratch("folder");
    let (input, output) = (dir.join("in"), dir.join("out"));
    run_reference(
        "oriented_jpegs.py",
        &[sample("chelsea").to_str().unwrap(), input.to_str().unwrap()],
    );
    // Keep two of the JPEGs, add a PNG with a space in its name, a PNG and a JPEG of the same
    // stem, and a file that is no picture.
    for name in [
        "orientation-1.jpg",
        "orientation-2.jpg",
        "orientation-3.jpg",
        "orientation-4.jpg",
        "orientation-5.jpg",
        "orientation-7.jpg",
        "orientation-8.jpg",
        "orientation-6-mm.jpg",
    ] {
        std::fs::remove_file(input.join(name)).unwrap();
    }
    std::fs::copy(sample("coffee"), input.join("my coffee.png")).unwrap();
    std::fs::copy(sample("coffee"), input.join("plain.png")).unwrap();
    std::fs::write(input.join("notes.txt"), "not a picture").unwrap();
    let stdout = run_script(
        "cutout-folder.sh",
        &[input.to_str().unwrap(), output.to_str().unwrap()],
        &[],
    );
    assert!(stdout.contains("skipping notes.txt"), "{stdout}");
    assert!(
        stdout.contains("[1/5]") && stdout.contains("[5/5]"),
        "{stdout}"
    );
    // Each cutout is what cutout-image.sh (tested against Python rembg) makes of the file.
    for (name, written) in [
        ("orientation-6.jpg", "orientation-6.png"),
        ("my coffee.png", "my coffee.png"),
        ("plain.jpg", "plain.png"),
        ("plain.png", "plain.png.png"),
    ] {
        let single = dir.join(format!("single-{written}"));
        run_script(
            "cutout-image.sh",
            &[input.join(name).to_str().unwrap(), single.to_str().unwrap()],
            &[],
        );
        assert_eq!(
            png_alpha(&output.join(written)),
            png_alpha(&single),
            "{name}"
        );
    }
    let written: Vec<_> = std::fs::read_dir(&output).unwrap().collect();
    assert_eq!(
        written.len(),
        4,
        "one PNG per picture, nothing for notes.txt"
    );
}

#[test]
fn the_folder_scripts_threads_meet_gstreamers_types_made_already() {
    if without_set_up() {
        return;
    }
    // Seen once on a folder run: the decoding thread and the main one made Gst.MessageType at
    // the same moment and one of them was refused its own flag. The race is PyGObject's, so it
    // is provoked (threads switched as often as Python can) in ten processes: without the
    // script's types made first on its main thread, 16 of 20 such processes failed.
    for run in 0..10 {
        let (succeeded, printed, _) = run_on_folder_lib("folder_threads.py");
        assert!(succeeded, "run {run}: {printed}");
    }
}

#[test]
fn a_cutout_the_writer_fails_on_is_named_and_the_folder_run_still_ends() {
    if without_set_up() {
        return;
    }
    // Before, an exception in the writing thread ended it, and the main thread waited forever
    // to hand it the next cutout: the run hung. With the race above in the writer, that is the
    // likeliest cause of the CI run that never ended.
    let (succeeded, printed, stderr) = run_on_folder_lib("folder_writer_failure.py");
    assert!(succeeded, "{printed}");
    assert!(
        stderr.contains("[3/5] c.png: cannot write") && stderr.contains("a writer's own trouble"),
        "{stderr}"
    );
}

/// Runs tests/reference/`name` on pipelines/lib with the system Python, whose PyGObject
/// (python3-gi, from the set-up) cutout-folder.sh uses: whether it succeeded, all it printed,
/// and its stderr alone.
fn run_on_folder_lib(name: &str) -> (bool, String, String) {
    let output = Command::new("/usr/bin/python3")
        .arg(reference_script(name))
        .arg(script("lib"))
        .output()
        .expect("run /usr/bin/python3 (python3-gi is installed by scripts/setup.sh)");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let printed = format!("{}{stderr}", String::from_utf8_lossy(&output.stdout));
    (output.status.success(), printed, stderr)
}

/// `count` small PNGs named a00.png, a01.png... in `dir`.
fn small_pictures(dir: &Path, count: usize) {
    // The first GStreamer call of the test that uses it, whichever tests ran before.
    init();
    std::fs::create_dir_all(dir).unwrap();
    let first = dir.join("a00.png");
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 pattern=ball ! video/x-raw,width=64,height=48 \
         ! videoconvert ! pngenc ! filesink location=\"{}\"",
        first.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    run_to_eos(&pipeline).unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    for index in 1..count {
        std::fs::copy(&first, dir.join(format!("a{index:02}.png"))).unwrap();
    }
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn bad_files_in_a_folder_are_named_one_by_one_and_the_rest_carry_on() {
    if without_set_up() {
        return;
    }
    // Twelve small pictures, a photo whose cutout cannot be written (files are limited to
    // 100 KiB, as on a disk that is full), a file that is no picture, a folder named like a
    // picture, and a picture that is gone by the time its turn comes (removed as soon as the
    // script has listed the folder: it reads at most three pictures ahead of the model).
    let dir = scratch("bad-files");
    let (input, output) = (dir.join("in"), dir.join("out"));
    small_pictures(&input, 12);
    std::fs::copy(sample("astronaut"), input.join("big.png")).unwrap();
    std::fs::write(input.join("notes.txt"), "not a picture").unwrap();
    std::fs::create_dir_all(input.join("folder.png")).unwrap();
    std::fs::copy(input.join("a00.png"), input.join("zz-gone.png")).unwrap();
    let mut child = Command::new("bash")
        .args(["-c", "trap '' XFSZ; ulimit -f 100; exec \"$0\" \"$@\""])
        .arg(script("cutout-folder.sh"))
        .args([input.to_str().unwrap(), output.to_str().unwrap()])
        .arg("backend=onnxruntime")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut listed = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut listed).unwrap();
    assert!(listed.starts_with("15 files in"), "{listed}");
    std::fs::remove_file(input.join("zz-gone.png")).unwrap();
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut printed).unwrap();
    let mut told = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut told).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{printed}{told}");
    assert!(printed.contains("skipping notes.txt"), "{printed}");
    assert!(
        told.contains("big.png: cannot write")
            && told.contains("zz-gone.png: it was gone before it could be read")
            && told.contains("2 file(s) could not be cut out"),
        "{told}"
    );
    let expected: Vec<String> = (0..12).map(|i| format!("a{i:02}.png")).collect();
    assert_eq!(names_in(&output), expected, "nothing else, no .part file");
}

#[test]
fn an_interrupted_folder_leaves_no_half_written_cutout() {
    if without_set_up() {
        return;
    }
    let dir = scratch("interrupted");
    let (input, output) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&input).unwrap();
    for index in 0..20 {
        std::fs::copy(sample("astronaut"), input.join(format!("p{index:02}.png"))).unwrap();
    }
    // A test run started in the background of a script inherits SIGINT ignored, as would the
    // cutout script, and Python keeps it so: SIGINT's default action is restored for it, as a
    // terminal's foreground job has it.
    let mut child = Command::new("env")
        .arg("--default-signal=INT")
        .arg(script("cutout-folder.sh"))
        .args([input.to_str().unwrap(), output.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted once the first cutout is out, as Ctrl-C would.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("p00.png ->") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0);
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let written = names_in(&output);
    assert!(
        !written.is_empty() && written.len() < 20,
        "stopped part way: {written:?}"
    );
    for name in &written {
        assert!(name.ends_with(".png"), "{name} left behind");
        let frames = decoded_frames(&output.join(name), "RGBA");
        assert_eq!(packed_pixels(&frames[0]).0.width(), 512, "{name} is whole");
    }
}

#[test]
fn a_watched_folder_cuts_out_files_as_they_arrive() {
    if without_set_up() {
        return;
    }
    let dir = scratch("watched");
    let (input, output) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(sample("coffee"), input.join("first.png")).unwrap();
    let mut child = Command::new(script("cutout-folder.sh"))
        .args([
            "--watch",
            input.to_str().unwrap(),
            output.to_str().unwrap(),
            "model=selfie",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let appears = |path: PathBuf| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !path.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} never came",
                path.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    appears(output.join("first.png"));
    std::fs::copy(sample("chelsea"), input.join("arrived later.png")).unwrap();
    appears(output.join("arrived later.png"));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "stops cleanly on SIGTERM: {status}");
}
