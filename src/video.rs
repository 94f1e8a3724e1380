//! GStreamer raw video frames as `imageops` sees them: the one mapping from a `VideoFormat` to a
//! packed pixel layout that both elements use.

use gst_video::VideoFormat;
use gst_video::prelude::*;

use crate::imageops::{ImageRef, PixelLayout};

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
