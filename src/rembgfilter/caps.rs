//! rembgfilter's formats: which input format becomes which output format in each mode, and
//! the caps transformation between the pads.

use gst_video::VideoFormat;

use super::RembgMode;

/// Input formats, each with the output format that keeps its channel order.
pub const FORMAT_PAIRS: [(VideoFormat, VideoFormat); 6] = [
    (VideoFormat::Rgb, VideoFormat::Rgba),
    (VideoFormat::Rgbx, VideoFormat::Rgba),
    (VideoFormat::Rgba, VideoFormat::Rgba),
    (VideoFormat::Bgr, VideoFormat::Bgra),
    (VideoFormat::Bgrx, VideoFormat::Bgra),
    (VideoFormat::Bgra, VideoFormat::Bgra),
];

/// Every output format of any mode.
pub const OUTPUT_FORMATS: [VideoFormat; 3] =
    [VideoFormat::Rgba, VideoFormat::Bgra, VideoFormat::Gray8];

/// Input formats with what each becomes in `mode`.
fn format_pairs(mode: RembgMode) -> Vec<(VideoFormat, VideoFormat)> {
    match mode {
        RembgMode::Mask => FORMAT_PAIRS
            .iter()
            .map(|(input, _)| (*input, VideoFormat::Gray8))
            .collect(),
        _ => FORMAT_PAIRS.to_vec(),
    }
}

/// Whether a caps structure names only grey formats.
fn outputs_gray(structure: &gst::StructureRef) -> bool {
    allowed_formats(structure, &[VideoFormat::Gray8]) == [VideoFormat::Gray8]
}

/// The formats a caps structure allows; all of `candidates` when it names none.
fn allowed_formats(structure: &gst::StructureRef, candidates: &[VideoFormat]) -> Vec<VideoFormat> {
    let Ok(value) = structure.value("format") else {
        return candidates.to_vec();
    };
    let names: Vec<String> = if let Ok(name) = value.get::<String>() {
        vec![name]
    } else if let Ok(list) = value.get::<gst::List>() {
        list.iter().filter_map(|v| v.get::<String>().ok()).collect()
    } else {
        return Vec::new();
    };
    names
        .iter()
        .map(|name| VideoFormat::from_string(name))
        .filter(|format| candidates.contains(format))
        .collect()
}

/// The caps on the other pad for `caps` on the pad of `direction`, in `mode` (what BaseTransform's
/// `transform_caps` answers): [`other_side`] intersected with `filter`, in its order.
pub fn transform_caps(
    mode: RembgMode,
    direction: gst::PadDirection,
    caps: &gst::Caps,
    filter: Option<&gst::Caps>,
) -> gst::Caps {
    let result = other_side(mode, direction, caps);
    match filter {
        Some(filter) => filter.intersect_with_mode(&result, gst::CapsIntersectMode::First),
        None => result,
    }
}

/// The caps on the other pad for `caps` on the pad of `direction`, in `mode`: the same size,
/// rate and other fields, the format mapped by the mode's pairs.
fn other_side(mode: RembgMode, direction: gst::PadDirection, caps: &gst::Caps) -> gst::Caps {
    let pairs = format_pairs(mode);
    let (inputs, outputs): (Vec<_>, Vec<_>) = pairs.iter().copied().unzip();
    let mut result = gst::Caps::new_empty();
    let result_mut = result.get_mut().expect("new caps are writable");
    for (structure, features) in caps.iter_with_features() {
        let mut targets: Vec<VideoFormat> = Vec::new();
        if direction == gst::PadDirection::Sink {
            for format in allowed_formats(structure, &inputs) {
                for (_, out) in pairs.iter().filter(|(i, _)| *i == format) {
                    if !targets.contains(out) {
                        targets.push(*out);
                    }
                }
            }
        } else {
            for format in allowed_formats(structure, &outputs) {
                targets.extend(pairs.iter().filter(|(_, o)| *o == format).map(|(i, _)| *i));
            }
        }
        if targets.is_empty() {
            continue;
        }
        let mut transformed = structure.to_owned();
        if targets.contains(&VideoFormat::Gray8) != outputs_gray(structure) {
            // RGB colorimetry does not describe grey frames, and the other way round.
            transformed.remove_fields(["colorimetry", "chroma-site"]);
        }
        if let [only] = targets[..] {
            transformed.set("format", only.to_str());
        } else {
            transformed.set("format", gst::List::new(targets.iter().map(|f| f.to_str())));
        }
        result_mut.append_structure_full(transformed, Some(features.to_owned()));
    }
    result
}

/// The element's pads: RGB-family video in, each mode's formats out.
pub fn pad_templates() -> Vec<gst::PadTemplate> {
    let sink_caps = gst_video::VideoCapsBuilder::new()
        .format_list(FORMAT_PAIRS.iter().map(|(input, _)| *input))
        .build();
    let src_caps = gst_video::VideoCapsBuilder::new()
        .format_list(OUTPUT_FORMATS)
        .build();
    let template = |name, direction, caps| {
        gst::PadTemplate::new(name, direction, gst::PadPresence::Always, caps)
            .expect("a valid template")
    };
    vec![
        template("src", gst::PadDirection::Src, &src_caps),
        template("sink", gst::PadDirection::Sink, &sink_caps),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init() {
        gst::init().unwrap();
    }

    fn transform(mode: RembgMode, direction: gst::PadDirection, caps: &str) -> String {
        other_side(mode, direction, &caps.parse().unwrap()).to_string()
    }

    #[test]
    fn each_input_format_keeps_its_channel_order() {
        init();
        let sink = gst::PadDirection::Sink;
        assert_eq!(
            transform(
                RembgMode::Alpha,
                sink,
                "video/x-raw,format=BGR,width=4,height=2"
            ),
            "video/x-raw, format=(string)BGRA, width=(int)4, height=(int)2"
        );
        assert_eq!(
            transform(RembgMode::Composite, sink, "video/x-raw,format={RGB,BGRx}"),
            "video/x-raw, format=(string){ RGBA, BGRA }"
        );
        assert_eq!(
            transform(RembgMode::Alpha, sink, "video/x-raw,format=I420"),
            "EMPTY"
        );
    }

    #[test]
    fn mask_mode_outputs_grey_without_rgb_colorimetry() {
        init();
        assert_eq!(
            transform(
                RembgMode::Mask,
                gst::PadDirection::Sink,
                "video/x-raw,format=RGB,colorimetry=sRGB,width=4"
            ),
            "video/x-raw, format=(string)GRAY8, width=(int)4"
        );
        // Upstream of GRAY8 in mask mode: every input format.
        let upstream = transform(
            RembgMode::Mask,
            gst::PadDirection::Src,
            "video/x-raw,format=GRAY8",
        );
        for format in ["RGB", "RGBx", "RGBA", "BGR", "BGRx", "BGRA"] {
            assert!(upstream.contains(format), "{upstream}");
        }
    }

    #[test]
    fn upstream_of_rgba_are_the_rgb_order_inputs() {
        init();
        assert_eq!(
            transform(
                RembgMode::Alpha,
                gst::PadDirection::Src,
                "video/x-raw,format=RGBA"
            ),
            "video/x-raw, format=(string){ RGB, RGBx, RGBA }"
        );
        // Grey is not an output of alpha mode.
        assert_eq!(
            transform(
                RembgMode::Alpha,
                gst::PadDirection::Src,
                "video/x-raw,format=GRAY8"
            ),
            "EMPTY"
        );
    }
}
