//! GStreamer raw video frames as `imageops` sees them: the one mapping from a `VideoFormat` to a
//! packed pixel layout that the elements use; and the GStreamer side both talking-head elements
//! share: their template set opened, and their frames written into buffers.

use gst::prelude::*;
use gst_video::VideoFormat;
use gst_video::prelude::*;

use crate::imageops::{ImageRef, PixelLayout};
use crate::talking_head::{self, FaceCrop};

/// One frame's time from the caps' frame rate; 1/30 s when the rate is unknown (variable or
/// unset), the guess a frame's wait for its mask needs.
pub fn frame_duration(info: &gst_video::VideoInfo) -> std::time::Duration {
    let fps = info.fps();
    let nanos = if fps.numer() > 0 && fps.denom() > 0 {
        1_000_000_000u64 * fps.denom() as u64 / fps.numer() as u64
    } else {
        1_000_000_000 / 30
    };
    std::time::Duration::from_nanos(nanos)
}

/// The packed 8-bit RGB-family layout of `format`; a fourth byte (x or alpha) is carried along.
pub fn pixel_layout(format: VideoFormat) -> Option<PixelLayout> {
    match format {
        VideoFormat::Rgb => Some(PixelLayout::RGB),
        VideoFormat::Bgr => Some(PixelLayout::BGR),
        VideoFormat::Rgbx | VideoFormat::Rgba => Some(PixelLayout::RGBX),
        VideoFormat::Bgrx | VideoFormat::Bgra => Some(PixelLayout::BGRX),
        _ => None,
    }
}

/// The pixels of a mapped frame of a format [`pixel_layout`] knows; `None` for any other.
pub fn image_of<T>(frame: &gst_video::VideoFrameRef<T>) -> Option<ImageRef<'_>> {
    Some(ImageRef {
        data: frame.plane_data(0).ok()?,
        width: frame.width() as usize,
        height: frame.height() as usize,
        stride: usize::try_from(frame.plane_stride()[0]).ok()?,
        layout: pixel_layout(frame.format())?,
    })
}

/// Maps `buffer` readable as a frame of `info`; a buffer too short for it is refused with a
/// text that says both sizes.
pub fn map_frame<'a>(
    buffer: &'a gst::BufferRef,
    info: &gst_video::VideoInfo,
) -> Result<gst_video::VideoFrameRef<&'a gst::BufferRef>, String> {
    gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info).map_err(|_| {
        format!(
            "input buffer of {} bytes does not hold a {}x{} {} frame ({} bytes)",
            buffer.size(),
            info.width(),
            info.height(),
            info.format().to_str(),
            info.size()
        )
    })
}

/// Opens the `template` property's folder, posting its warnings (frames it will skip, parsing
/// maps missing) on the bus; an error names the property.
pub fn open_templates(
    element: &impl IsA<gst::Element>,
    folder: &std::path::Path,
    start_frame: u32,
    parsing: bool,
    max_cached_frames: u32,
) -> Result<talking_head::TemplateSet, gst::ErrorMessage> {
    let templates = talking_head::TemplateSet::open(
        folder,
        start_frame as usize,
        parsing,
        max_cached_frames as usize,
    )
    .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("property 'template': {}", e)))?;
    for warning in templates.warnings() {
        gst::element_warning!(
            element,
            gst::StreamError::Decode,
            ("property 'template': {}", warning)
        );
    }
    Ok(templates)
}

/// Where a talking-head frame goes on the timeline.
#[derive(Debug, Clone, Copy)]
pub struct FramePlacement {
    pub index: u64,
    pub pts: gst::ClockTime,
    pub end: gst::ClockTime,
}

/// A talking-head frame (the template of `face`, with `square` pasted in, or alone) in a buffer
/// from `pool` when one is active and large enough: a fresh multi-megabyte allocation per frame
/// costs page faults on every write.
pub fn talking_head_buffer(
    pool: Option<&gst::BufferPool>,
    info: &gst_video::VideoInfo,
    face: &FaceCrop,
    square: Option<&[u8]>,
    placement: FramePlacement,
) -> Result<gst::Buffer, gst::FlowError> {
    let layout = pixel_layout(info.format()).ok_or(gst::FlowError::NotNegotiated)?;
    let pooled = pool
        .filter(|pool| pool.is_active())
        .and_then(|pool| pool.acquire_buffer(None).ok())
        .filter(|buffer| buffer.size() >= info.size());
    let mut buffer = match pooled {
        Some(buffer) => buffer,
        None => gst::Buffer::with_size(info.size()).map_err(|_| gst::FlowError::Error)?,
    };
    let buffer_ref = buffer.get_mut().ok_or(gst::FlowError::Error)?;
    buffer_ref.set_pts(placement.pts);
    buffer_ref.set_duration(placement.end.saturating_sub(placement.pts));
    buffer_ref.set_offset(placement.index);
    buffer_ref.set_offset_end(placement.index + 1);
    let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer_ref, info)
        .map_err(|_| gst::FlowError::Error)?;
    let stride = usize::try_from(frame.plane_stride()[0]).map_err(|_| gst::FlowError::Error)?;
    let data = frame.plane_data_mut(0).map_err(|_| gst::FlowError::Error)?;
    talking_head::write_frame(face, square, data, stride, layout);
    drop(frame);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rgb_family_format_keeps_its_channel_order() {
        for (format, red, blue, bpp) in [
            (VideoFormat::Rgb, 0, 2, 3),
            (VideoFormat::Bgr, 2, 0, 3),
            (VideoFormat::Rgbx, 0, 2, 4),
            (VideoFormat::Rgba, 0, 2, 4),
            (VideoFormat::Bgrx, 2, 0, 4),
            (VideoFormat::Bgra, 2, 0, 4),
        ] {
            let layout = pixel_layout(format).unwrap();
            assert_eq!(
                (
                    layout.red,
                    layout.green,
                    layout.blue,
                    layout.bytes_per_pixel
                ),
                (red, 1, blue, bpp),
                "{format:?}"
            );
        }
        assert_eq!(pixel_layout(VideoFormat::I420), None);
    }
}
