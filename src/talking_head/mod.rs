//! SyncTalk_2D's inference loop in plain Rust: template frames and landmarks, audio features and
//! their windows, the ping-pong frame order, the face crop fed to the U-Net and the paste-back.
//! No GStreamer types here.

pub mod features;
pub mod frame;
pub mod live;
pub mod speech;
pub mod templates;

pub use features::{AudioFeatures, FeatureError, Mode};
pub use frame::{
    FaceCache, FaceCrop, FrameError, LipsyncModel, PastedFace, TemplateFace, face_cache,
    non_finite_warning, paste_face, prepare, prepare_with_window, warm_cache, write_frame,
};
pub use templates::{CropRect, TemplateError, TemplateSet};

/// The template image used for output frame `frame` with `count` templates: an index that
/// starts at 1, rises to `count - 1`, falls to 0 and rises again, as SyncTalk_2D's loop does.
pub fn ping_pong_index(frame: u64, count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    let period = 2 * (count as u64 - 1);
    // The sequence 1, 2, .., n-1, n-2, .., 0, 1, .. is the triangle wave shifted by one.
    let phase = (frame + 1) % period;
    let index = if phase < count as u64 {
        phase
    } else {
        period - phase
    };
    index as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_pong_matches_synctalk_loop() {
        for count in 1..7usize {
            let (mut index, mut step) = (0i64, 0i64);
            for frame in 0..40u64 {
                // SyncTalk_2D's loop, with len_img = count - 1.
                if index > count as i64 - 2 {
                    step = -1;
                }
                if index < 1 {
                    step = 1;
                }
                index += step;
                let expected = if count == 1 { 0 } else { index as usize };
                assert_eq!(
                    ping_pong_index(frame, count),
                    expected,
                    "count {count} frame {frame}"
                );
            }
        }
    }
}
