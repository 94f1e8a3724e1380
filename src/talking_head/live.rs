//! Time in a live talking head: where each piece of audio sits on the stream's timeline (a gap
//! becomes silence so later speech keeps its place, an overlap is cut), and which of three ways
//! a frame is made. No GStreamer types: times are nanoseconds of the audio's timestamps.

use super::speech::SAMPLE_RATE;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Differences between a buffer's timestamp and where the audio so far ends that are jitter,
/// not a gap or an overlap (GStreamer's audio sinks use the same 40 ms by default).
pub const ALIGNMENT_TOLERANCE_NS: u64 = 40_000_000;

/// The longest gap in the audio's timestamps filled with silence; a longer jump is an error
/// rather than minutes of frames nobody asked for (live pipelines fill stalls as they happen).
pub const MAX_GAP_NS: u64 = 60 * NANOS_PER_SECOND;

/// What to do with a piece of audio before pushing it into the speech stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Samples of silence that come first: the audio starts this far after the last piece ended.
    pub silence_before: u64,
    /// Samples to drop from the piece's start: they repeat time the stream already has.
    pub skip: usize,
}

/// The audio's timeline: the timestamp of its first sample and how many samples (speech and
/// inserted silence) the stream holds since, so sample `n` sits at `origin + n / 16 kHz`.
#[derive(Debug, Default, Clone)]
pub struct AudioTimeline {
    origin_ns: Option<u64>,
    samples: u64,
}

impl AudioTimeline {
    /// The timestamp of the first sample, once audio has come.
    pub fn origin(&self) -> Option<u64> {
        self.origin_ns
    }

    /// Where the audio so far ends.
    pub fn end(&self) -> Option<u64> {
        self.origin_ns
            .map(|origin| origin + samples_to_ns(self.samples))
    }

    /// The timestamp of video frame `frame` at `fps` (frame f shows the audio at origin + f / fps).
    pub fn frame_time(&self, frame: u64, fps: u64) -> Option<u64> {
        self.origin_ns
            .map(|origin| origin + (frame as u128 * NANOS_PER_SECOND as u128 / fps as u128) as u64)
    }

    /// Places `len` samples stamped `pts` (none: right after the last piece) and counts what the
    /// placement keeps. A piece that starts more than [`ALIGNMENT_TOLERANCE_NS`] after the audio
    /// so far ends is preceded by silence up to its time; one that starts before loses the
    /// samples it repeats. A gap over [`MAX_GAP_NS`] is refused, and nothing is placed.
    pub fn place(&mut self, pts_ns: Option<u64>, len: usize) -> Result<Placement, GapTooLong> {
        let Some(end) = self.end() else {
            self.origin_ns = Some(pts_ns.unwrap_or(0));
            self.samples = len as u64;
            return Ok(Placement {
                silence_before: 0,
                skip: 0,
            });
        };
        let mut placement = Placement {
            silence_before: 0,
            skip: 0,
        };
        match pts_ns {
            Some(pts) if pts > end + MAX_GAP_NS => {
                return Err(GapTooLong {
                    audio_end_ns: end,
                    next_pts_ns: pts,
                });
            }
            Some(pts) if pts > end + ALIGNMENT_TOLERANCE_NS => {
                placement.silence_before = ns_to_samples(pts - end);
            }
            Some(pts) if pts + ALIGNMENT_TOLERANCE_NS < end => {
                placement.skip = ns_to_samples(end - pts).min(len as u64) as usize;
            }
            _ => {}
        }
        self.samples += placement.silence_before + (len - placement.skip) as u64;
        Ok(placement)
    }

    /// Samples of silence that bring the audio up to `time_ns` (a GAP event's end, or the time
    /// by which a live source's audio should have come), counted as placed; zero before any
    /// audio or when the audio already reaches that far.
    pub fn silence_until(&mut self, time_ns: u64) -> u64 {
        let Some(end) = self.end() else {
            return 0;
        };
        if time_ns <= end {
            return 0;
        }
        let silence = ns_to_samples(time_ns - end);
        self.samples += silence;
        silence
    }
}

/// Audio whose timestamps jump further ahead than [`MAX_GAP_NS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapTooLong {
    pub audio_end_ns: u64,
    pub next_pts_ns: u64,
}

impl std::fmt::Display for GapTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = |ns: u64| ns as f64 / NANOS_PER_SECOND as f64;
        write!(
            f,
            "the audio so far ends at {:.3} s but the next buffer is stamped {:.3} s: a gap of \
             {:.1} s, more than the {} s filled with silence (timestamps that jump like this are \
             usually broken; audiorate or a new segment fixes them)",
            seconds(self.audio_end_ns),
            seconds(self.next_pts_ns),
            seconds(self.next_pts_ns - self.audio_end_ns),
            MAX_GAP_NS / NANOS_PER_SECOND
        )
    }
}

impl std::error::Error for GapTooLong {}

fn samples_to_ns(samples: u64) -> u64 {
    (samples as u128 * NANOS_PER_SECOND as u128 / SAMPLE_RATE as u128) as u64
}

fn ns_to_samples(ns: u64) -> u64 {
    (ns as u128 * SAMPLE_RATE as u128 / NANOS_PER_SECOND as u128) as u64
}

/// How a frame is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameSource {
    /// The U-Net on the frame's features: the reference.
    Model,
    /// The template frame itself, untouched: its features come from silence and skipping
    /// silence is on (LiveTalking's idle frames, in the same ping-pong order).
    Template,
    /// The last U-Net mouth pasted into this frame's template: the frame would reach the sink
    /// after its time if the U-Net ran on it, so a live stream keeps its pace.
    LastMouth,
}

/// What decides a frame's source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameConditions {
    /// The largest |sample| its features read (1.0 = full scale).
    pub peak: f32,
    /// Frames quieter than this (a linear level) skip the U-Net; none: never.
    pub silence_below: Option<f32>,
    /// Running the U-Net now would make it late (live pipelines only).
    pub late: bool,
    /// A U-Net mouth exists to reuse.
    pub has_last_mouth: bool,
}

pub fn frame_source(conditions: FrameConditions) -> FrameSource {
    if conditions
        .silence_below
        .is_some_and(|level| conditions.peak < level)
    {
        FrameSource::Template
    } else if conditions.late && conditions.has_last_mouth {
        FrameSource::LastMouth
    } else {
        FrameSource::Model
    }
}

/// A level in dBFS as a linear peak (0 dBFS = 1.0).
pub fn db_to_linear(db: f64) -> f32 {
    10f64.powf(db / 20.0) as f32
}

/// Whether a frame due at `deadline_ns` (its running time plus the pipeline's latency) would be
/// late if the U-Net, taking about `model_ns`, started at `now_ns`.
pub fn would_be_late(now_ns: u64, model_ns: u64, deadline_ns: u64) -> bool {
    now_ns.saturating_add(model_ns) > deadline_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn contiguous_audio_is_placed_as_it_comes() {
        let mut timeline = AudioTimeline::default();
        assert_eq!(timeline.end(), None);
        let none = Placement {
            silence_before: 0,
            skip: 0,
        };
        assert_eq!(timeline.place(Some(500 * MS), 1600), Ok(none));
        assert_eq!(timeline.origin(), Some(500 * MS));
        assert_eq!(timeline.end(), Some(600 * MS));
        // Jitter within the tolerance, either way, and no timestamp at all.
        assert_eq!(timeline.place(Some(630 * MS), 1600), Ok(none));
        assert_eq!(timeline.place(Some(670 * MS), 1600), Ok(none));
        assert_eq!(timeline.place(None, 1600), Ok(none));
        assert_eq!(timeline.end(), Some(900 * MS));
        assert_eq!(timeline.frame_time(10, 25), Some(900 * MS));
    }

    #[test]
    fn a_gap_becomes_silence_and_an_overlap_is_cut() {
        let mut timeline = AudioTimeline::default();
        timeline.place(Some(0), 16000).unwrap();
        // Resumes at 2.5 s: 1.5 s of silence first.
        assert_eq!(
            timeline.place(Some(2500 * MS), 800),
            Ok(Placement {
                silence_before: 24000,
                skip: 0
            })
        );
        assert_eq!(timeline.end(), Some(2550 * MS));
        // Starts 0.3 s back: its first 4800 samples are time already there.
        assert_eq!(
            timeline.place(Some(2250 * MS), 8000),
            Ok(Placement {
                silence_before: 0,
                skip: 4800
            })
        );
        assert_eq!(timeline.end(), Some(2750 * MS));
        // Entirely in the past: all of it dropped, nothing moves.
        assert_eq!(
            timeline.place(Some(MS), 160),
            Ok(Placement {
                silence_before: 0,
                skip: 160
            })
        );
        assert_eq!(timeline.end(), Some(2750 * MS));
        // A jump of over a minute is refused and places nothing.
        let err = timeline
            .place(Some(2750 * MS + MAX_GAP_NS + MS), 160)
            .unwrap_err();
        assert!(err.to_string().contains("2.750 s"), "{err}");
        assert!(err.to_string().contains("62.751 s"), "{err}");
        assert_eq!(timeline.end(), Some(2750 * MS));
    }

    #[test]
    fn silence_fills_up_to_a_time_and_never_back() {
        let mut timeline = AudioTimeline::default();
        assert_eq!(timeline.silence_until(1000 * MS), 0, "no audio yet");
        timeline.place(Some(100 * MS), 1600).unwrap();
        assert_eq!(timeline.silence_until(150 * MS), 0);
        assert_eq!(timeline.silence_until(1200 * MS), 16000);
        assert_eq!(timeline.end(), Some(1200 * MS));
        // Audio stamped inside the filled time is cut.
        assert_eq!(timeline.place(Some(1100 * MS), 3200).unwrap().skip, 1600);
    }

    #[test]
    fn silence_skipping_comes_before_catching_up() {
        let quiet = FrameConditions {
            peak: 0.001,
            silence_below: Some(db_to_linear(-50.0)),
            late: true,
            has_last_mouth: true,
        };
        assert_eq!(frame_source(quiet), FrameSource::Template);
        let loud = FrameConditions { peak: 0.5, ..quiet };
        assert_eq!(frame_source(loud), FrameSource::LastMouth);
        assert_eq!(
            frame_source(FrameConditions {
                has_last_mouth: false,
                ..loud
            }),
            FrameSource::Model
        );
        assert_eq!(
            frame_source(FrameConditions {
                late: false,
                ..loud
            }),
            FrameSource::Model
        );
        // Skipping off: even digital silence goes through the U-Net.
        assert_eq!(
            frame_source(FrameConditions {
                peak: 0.0,
                silence_below: None,
                late: false,
                has_last_mouth: true,
            }),
            FrameSource::Model
        );
        assert!((db_to_linear(-20.0) - 0.1).abs() < 1e-7);
        assert!(would_be_late(100, 50, 120));
        assert!(!would_be_late(100, 20, 120));
    }
}
