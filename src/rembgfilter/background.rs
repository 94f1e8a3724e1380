//! The picture behind the foreground in `mode=replace`: decoded once with GStreamer, when the
//! property is set or at start and never on the streaming thread, then scaled with the
//! project's resizer when the frame size changes.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use gst::prelude::*;

use super::BackgroundFit;
use crate::decoded_streams::StreamWatch;
use crate::imageops::{Filter, ImageRef, PixelLayout, Resizer};

/// How long decoding one picture may take before it counts as failed.
const DECODE_TIMEOUT: Duration = Duration::from_secs(10);

/// A decoded picture: packed RGBA.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    pub rgba: Vec<u8>,
    pub width: usize,
    pub height: usize,
}

enum Decoding {
    /// On a thread of its own; the answer comes through the channel.
    Running(mpsc::Receiver<Result<Picture, String>>),
    Done(Result<Picture, String>),
}

/// What a scaled copy was made for: frame size, channel order, fit and the colour of fit's bars.
type ScaledFor = (usize, usize, PixelLayout, BackgroundFit, [u8; 3]);

/// The picture of one `background-location`, with its copy scaled to the current frame.
pub struct Background {
    location: String,
    decoding: Decoding,
    /// The picture at frame size in the frame's channel order (4 bytes a pixel), and what for.
    scaled: Option<(ScaledFor, Vec<u8>)>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Background {
    /// Starts decoding `location` on a thread of its own.
    pub fn decode_in_background(location: &str) -> Self {
        let (sender, receiver) = mpsc::channel();
        let path = location.to_string();
        let spawned = std::thread::Builder::new()
            .name("rembgfilter-background".into())
            .spawn(move || {
                let _ = sender.send(decode(&path));
            });
        let decoding = match spawned {
            Ok(_) => Decoding::Running(receiver),
            Err(err) => Decoding::Done(Err(format!("cannot start a decoding thread: {err}"))),
        };
        Self {
            location: location.to_string(),
            decoding,
            scaled: None,
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// The decoded picture, waiting for the decoding thread if it has not finished (it gives
    /// up after a bounded time); an error names the file.
    pub fn picture(&mut self) -> Result<&Picture, String> {
        if let Decoding::Running(receiver) = &self.decoding {
            let answer = receiver
                .recv_timeout(DECODE_TIMEOUT + Duration::from_secs(1))
                .unwrap_or_else(|_| Err("decoding did not finish".into()));
            self.decoding = Decoding::Done(answer);
        }
        match &self.decoding {
            Decoding::Done(Ok(picture)) => Ok(picture),
            Decoding::Done(Err(reason)) => Err(format!("{}: {reason}", self.location)),
            Decoding::Running(_) => unreachable!("resolved above"),
        }
    }

    /// The picture scaled to `width` x `height` as packed 4-byte pixels in `layout`'s channel
    /// order, placed as `fit` says (`bars`: the colour around a fitted picture, in the frame's
    /// channel order); scaled again only when one of them changes.
    pub fn scaled_for(
        &mut self,
        width: usize,
        height: usize,
        layout: PixelLayout,
        fit: BackgroundFit,
        bars: [u8; 3],
    ) -> Result<&[u8], String> {
        let key = (width, height, layout, fit, bars);
        if self
            .scaled
            .as_ref()
            .is_none_or(|(made_for, _)| *made_for != key)
        {
            let picture = self.picture()?;
            let pixels = scale_to_frame(picture, width, height, layout, fit, bars)
                .map_err(|reason| format!("{}: {reason}", self.location))?;
            self.scaled = Some((key, pixels));
        }
        Ok(&self.scaled.as_ref().expect("made above").1)
    }
}

/// What a replace-mode picture is missing when none is set.
const NO_PICTURE: &str = "mode=replace needs an image: set background-location";

/// The element's `background-location` picture, if one is set: decoded when the property is
/// set, so that no frame waits for it.
#[derive(Debug, Default)]
pub struct BackgroundSlot(Option<Background>);

impl BackgroundSlot {
    /// A new location starts decoding now; `None` forgets the picture.
    pub fn set_location(&mut self, location: Option<&str>) {
        self.0 = location.map(Background::decode_in_background);
    }

    /// At start: decodes `location` if it is not the one known, and when `needed` (mode=replace)
    /// waits for the picture, so that a missing or broken one fails the state change.
    pub fn prepare(&mut self, location: Option<&str>, needed: bool) -> Result<(), String> {
        if let Some(location) = location
            && self
                .0
                .as_ref()
                .is_none_or(|known| known.location() != location)
        {
            self.0 = Some(Background::decode_in_background(location));
        }
        if !needed {
            return Ok(());
        }
        self.background()?.picture().map(|_| ())
    }

    /// The picture set, which mode=replace needs; an error when none is.
    pub fn background(&mut self) -> Result<&mut Background, String> {
        self.0.as_mut().ok_or_else(|| NO_PICTURE.into())
    }
}

/// A rectangle in pixels: left, top, width, height.
pub type Rect = (usize, usize, usize, usize);

/// The part of a `picture_width` x `picture_height` picture that `fill` shows in a `width` x
/// `height` frame: the largest centred rectangle of the frame's shape.
pub fn fill_crop(picture_width: usize, picture_height: usize, width: usize, height: usize) -> Rect {
    // Compare the aspect ratios without division: picture wider than the frame?
    if picture_width * height > width * picture_height {
        let w = (picture_height * width)
            .div_ceil(height)
            .clamp(1, picture_width);
        ((picture_width - w) / 2, 0, w, picture_height)
    } else {
        let h = (picture_width * height)
            .div_ceil(width)
            .clamp(1, picture_height);
        (0, (picture_height - h) / 2, picture_width, h)
    }
}

/// Where `fit` puts a `picture_width` x `picture_height` picture in a `width` x `height` frame:
/// as large as fits, centred.
pub fn fit_placement(
    picture_width: usize,
    picture_height: usize,
    width: usize,
    height: usize,
) -> Rect {
    if picture_width * height > width * picture_height {
        let h = (width * picture_height)
            .div_ceil(picture_width)
            .clamp(1, height);
        (0, (height - h) / 2, width, h)
    } else {
        let w = (height * picture_width)
            .div_ceil(picture_height)
            .clamp(1, width);
        ((width - w) / 2, 0, w, height)
    }
}

/// Scales `picture` to the frame as `fit` says (PIL-style bilinear), `bars` around it for
/// `fit`, and puts red, green and blue where `layout` has them; the fourth byte is 255.
pub fn scale_to_frame(
    picture: &Picture,
    width: usize,
    height: usize,
    layout: PixelLayout,
    fit: BackgroundFit,
    bars: [u8; 3],
) -> Result<Vec<u8>, String> {
    let (pw, ph) = (picture.width, picture.height);
    let stride = pw * 4;
    let region = |(x, y, w, h): Rect| ImageRef {
        data: &picture.rgba[y * stride + x * 4..],
        width: w,
        height: h,
        stride,
        layout: PixelLayout::RGBX,
    };
    let mut resizer = Resizer::new();
    let mut rgba = vec![0u8; width * height * 4];
    match fit {
        BackgroundFit::Stretch => resizer
            .resize(
                &region((0, 0, pw, ph)),
                &mut rgba,
                width,
                height,
                Filter::Bilinear,
            )
            .map_err(|e| e.to_string())?,
        BackgroundFit::Fill => resizer
            .resize(
                &region(fill_crop(pw, ph, width, height)),
                &mut rgba,
                width,
                height,
                Filter::Bilinear,
            )
            .map_err(|e| e.to_string())?,
        BackgroundFit::Fit => {
            let (x, y, w, h) = fit_placement(pw, ph, width, height);
            let mut inner = vec![0u8; w * h * 4];
            resizer
                .resize(&region((0, 0, pw, ph)), &mut inner, w, h, Filter::Bilinear)
                .map_err(|e| e.to_string())?;
            // Bars in RGB order here; the channel order is applied below with the rest.
            let mut rgb_bars = [0u8; 3];
            rgb_bars[0] = bars[layout.red];
            rgb_bars[1] = bars[layout.green];
            rgb_bars[2] = bars[layout.blue];
            for pixel in rgba.chunks_exact_mut(4) {
                pixel[..3].copy_from_slice(&rgb_bars);
            }
            for (row, inner_row) in inner.chunks_exact(w * 4).enumerate() {
                let start = ((y + row) * width + x) * 4;
                rgba[start..start + w * 4].copy_from_slice(inner_row);
            }
        }
    }
    for pixel in rgba.chunks_exact_mut(4) {
        let [r, g, b, _] = [pixel[0], pixel[1], pixel[2], pixel[3]];
        pixel[layout.red] = r;
        pixel[layout.green] = g;
        pixel[layout.blue] = b;
        pixel[3] = 255;
    }
    Ok(rgba)
}

/// Decodes the first picture in the file at `location` to RGBA at its own size.
pub fn decode(location: &str) -> Result<Picture, String> {
    if location.is_empty() {
        return Err("mode=replace needs an image: set background-location".into());
    }
    let path = std::path::Path::new(location);
    if path.is_dir() {
        return Err("is a folder, not an image file".into());
    }
    if !path.is_file() {
        return Err("does not exist".into());
    }
    let pipeline = gst::Pipeline::new();
    let make = |factory: &str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|_| format!("GStreamer element '{factory}' is missing"))
    };
    let (source, decoder, convert) = (make("filesrc")?, make("decodebin")?, make("videoconvert")?);
    let sink = gst_app::AppSink::builder()
        .caps(
            &gst_video::VideoCapsBuilder::new()
                .format(gst_video::VideoFormat::Rgba)
                .build(),
        )
        .max_buffers(1)
        .build();
    source.set_property("location", location);
    pipeline
        .add_many([&source, &decoder, &convert, sink.upcast_ref()])
        .map_err(|e| e.to_string())?;
    source.link(&decoder).map_err(|e| e.to_string())?;
    convert.link(&sink).map_err(|e| e.to_string())?;
    let convert_weak = convert.downgrade();
    // A file with streams but no picture (a .wav) is named as such, at once.
    let streams = StreamWatch::new(&decoder, "video/", move |pad| {
        if let Some(convert) = convert_weak.upgrade()
            && let Some(sink_pad) = convert.static_pad("sink")
            && !sink_pad.is_linked()
        {
            let _ = pad.link(&sink_pad);
        }
    });
    let result = run_decoder(&pipeline, &sink, &streams);
    let _ = pipeline.set_state(gst::State::Null);
    match result {
        Err(_) if streams.found_only_others() => Err(no_picture(&streams)),
        other => other,
    }
}

fn no_picture(streams: &StreamWatch) -> String {
    format!("holds no picture: {}", streams.found_only())
}

fn run_decoder(
    pipeline: &gst::Pipeline,
    sink: &gst_app::AppSink,
    streams: &StreamWatch,
) -> Result<Picture, String> {
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| bus_error(pipeline).unwrap_or_else(|| "cannot start decoding".into()))?;
    let deadline = Instant::now() + DECODE_TIMEOUT;
    loop {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(50)) {
            return picture_of(&sample);
        }
        if streams.settled_without_wanted() {
            return Err(no_picture(streams));
        }
        if let Some(error) = bus_error(pipeline) {
            return Err(error);
        }
        if sink.is_eos() {
            return Err("GStreamer found no picture in it (no video stream)".into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no picture decoded within {} s",
                DECODE_TIMEOUT.as_secs()
            ));
        }
    }
}

/// The first error on the pipeline's bus, in words.
fn bus_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    let message = bus.pop_filtered(&[gst::MessageType::Error])?;
    let gst::MessageView::Error(err) = message.view() else {
        return None;
    };
    Some(format!(
        "not an image GStreamer can decode ({})",
        err.error()
    ))
}

fn picture_of(sample: &gst::Sample) -> Result<Picture, String> {
    let caps = sample.caps().ok_or("decoded picture without caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
    let buffer = sample.buffer().ok_or("decoded picture without data")?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|e| e.to_string())?;
    let image = crate::video::image_of(&frame).ok_or("decoded picture is not RGBA")?;
    let mut rgba = Vec::new();
    image.copy_packed_into(&mut rgba);
    Ok(Picture {
        rgba,
        width: image.width,
        height: image.height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_stretches_and_follows_the_channel_order() {
        // Left half red, right half blue, 4x2.
        let rgba: Vec<u8> = (0..8)
            .flat_map(|i| {
                if i % 4 < 2 {
                    [255, 0, 0, 255]
                } else {
                    [0, 0, 255, 255]
                }
            })
            .collect();
        let picture = Picture {
            rgba,
            width: 4,
            height: 2,
        };
        let stretch = |layout| {
            scale_to_frame(&picture, 8, 3, layout, BackgroundFit::Stretch, [0; 3]).unwrap()
        };
        let rgb = stretch(PixelLayout::RGB);
        assert_eq!(rgb.len(), 8 * 3 * 4);
        assert_eq!(&rgb[..4], &[255, 0, 0, 255]);
        assert_eq!(&rgb[7 * 4..8 * 4], &[0, 0, 255, 255]);
        let bgr = stretch(PixelLayout::BGRX);
        assert_eq!(&bgr[..4], &[0, 0, 255, 255], "red where BGRx keeps it");
    }

    #[test]
    fn fill_crops_the_overflow_evenly_and_fit_centres_the_picture() {
        // A 400x100 panorama in a 200x200 frame: fill shows its middle 100x100, fit puts it
        // 200x50 in the middle.
        assert_eq!(fill_crop(400, 100, 200, 200), (150, 0, 100, 100));
        assert_eq!(fit_placement(400, 100, 200, 200), (0, 75, 200, 50));
        // A tall picture in a wide frame.
        assert_eq!(fill_crop(100, 400, 200, 100), (0, 175, 100, 50));
        assert_eq!(fit_placement(100, 400, 200, 100), (87, 0, 25, 100));
        // The same shape: all of it, everywhere.
        assert_eq!(fill_crop(640, 480, 320, 240), (0, 0, 640, 480));
        assert_eq!(fit_placement(640, 480, 320, 240), (0, 0, 320, 240));
    }

    #[test]
    fn fit_surrounds_the_picture_with_bars_and_fill_keeps_its_middle() {
        // A 4x1 picture: red, green, green, blue.
        let picture = Picture {
            rgba: [
                [255, 0, 0, 255],
                [0, 255, 0, 255],
                [0, 255, 0, 255],
                [0, 0, 255, 255],
            ]
            .concat(),
            width: 4,
            height: 1,
        };
        let fitted = scale_to_frame(
            &picture,
            4,
            4,
            PixelLayout::RGB,
            BackgroundFit::Fit,
            [9, 8, 7],
        )
        .unwrap();
        assert_eq!(&fitted[..4], &[9, 8, 7, 255], "a bar above");
        assert_eq!(
            &fitted[4 * 4 * 3..4 * 4 * 3 + 4],
            &[9, 8, 7, 255],
            "a bar below"
        );
        let filled = scale_to_frame(
            &picture,
            2,
            2,
            PixelLayout::RGB,
            BackgroundFit::Fill,
            [0; 3],
        )
        .unwrap();
        assert!(
            filled
                .chunks_exact(4)
                .all(|p| p[1] > 100 && p[0] < 100 && p[2] < 100),
            "fill shows the green middle: {filled:?}"
        );
    }

    #[test]
    fn a_missing_file_or_a_folder_is_named_at_once() {
        gst::init().unwrap();
        let mut missing = Background::decode_in_background("/nonexistent/beach.jpg");
        let err = missing.picture().unwrap_err();
        assert!(
            err.contains("/nonexistent/beach.jpg") && err.contains("does not exist"),
            "{err}"
        );
        let folder = std::env::temp_dir();
        let err = decode(folder.to_str().unwrap()).unwrap_err();
        assert!(err.contains("folder"), "{err}");
    }

    /// Why `path` is refused, asserting the refusal took under 5 s. The first decode in a process
    /// loads decodebin's plugins from disk (seconds on a loaded machine, seen in CI); the bound
    /// is on naming the file, so a second decode is timed.
    fn refusal_within_seconds(path: &std::path::Path) -> String {
        let _ = decode(path.to_str().unwrap());
        let started = Instant::now();
        let err = decode(path.to_str().unwrap()).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}: {err}",
            started.elapsed()
        );
        err
    }

    #[test]
    fn a_file_that_is_not_a_picture_fails_within_seconds() {
        gst::init().unwrap();
        let path =
            std::env::temp_dir().join(format!("neuralfx-not-a-picture-{}.txt", std::process::id()));
        std::fs::write(
            &path,
            b"hello, this is text and no picture at all\n".repeat(50),
        )
        .unwrap();
        let err = refusal_within_seconds(&path);
        assert!(
            err.contains("not an image") || err.contains("no picture"),
            "{err}"
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_sound_file_is_named_as_holding_no_picture() {
        gst::init().unwrap();
        let path = std::env::temp_dir().join(format!("neuralfx-sound-{}.wav", std::process::id()));
        let writer = gst::parse::launch(&format!(
            "audiotestsrc num-buffers=5 ! wavenc ! filesink location={}",
            path.display()
        ))
        .unwrap();
        writer.set_state(gst::State::Playing).unwrap();
        let bus = writer.bus().unwrap();
        bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        writer.set_state(gst::State::Null).unwrap();
        let err = refusal_within_seconds(&path);
        assert!(
            err.contains("holds no picture") && err.contains("audio/x-raw"),
            "{err}"
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_sound_file_with_no_samples_is_named_without_waiting_for_data() {
        gst::init().unwrap();
        // A WAV header whose data chunk is empty: the stream ends before any data could reach
        // the unlinked pad, so no "not linked" error ever comes; decodebin's list of streams
        // has to decide it.
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF");
        wav.extend_from_slice(&36u32.to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
        wav.extend_from_slice(&1u16.to_le_bytes()); // mono
        wav.extend_from_slice(&16_000u32.to_le_bytes());
        wav.extend_from_slice(&32_000u32.to_le_bytes());
        wav.extend_from_slice(&2u16.to_le_bytes());
        wav.extend_from_slice(&16u16.to_le_bytes());
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&0u32.to_le_bytes());
        let path =
            std::env::temp_dir().join(format!("neuralfx-empty-sound-{}.wav", std::process::id()));
        std::fs::write(&path, &wav).unwrap();
        let err = refusal_within_seconds(&path);
        assert!(
            err.contains("holds no picture") && err.contains("audio/"),
            "{err}"
        );
        std::fs::remove_file(path).unwrap();
    }
}
