//! The streams a decodebin (or uridecodebin) exposes, watched so that a file holding streams but
//! none of the kind wanted (a .wav given as a picture, a picture given as speech) is named as
//! soon as decodebin has exposed them all. The "not linked" error that would otherwise name it
//! never comes when the stream ends before any data reaches the unlinked pad.

use std::sync::{Arc, Mutex};

use gst::prelude::*;

#[derive(Debug, Default)]
struct Found {
    /// Media types of the exposed streams (`audio/x-raw`, `video/x-raw`, ...).
    kinds: Vec<String>,
    /// decodebin has said there are no more (`no-more-pads`).
    complete: bool,
}

impl Found {
    fn has(&self, wanted: &str) -> bool {
        self.kinds.iter().any(|kind| kind.starts_with(wanted))
    }

    fn only_others(&self, wanted: &str) -> bool {
        !self.kinds.is_empty() && !self.has(wanted)
    }
}

/// What one decodebin has exposed so far.
#[derive(Debug)]
pub struct StreamWatch {
    wanted: &'static str,
    found: Arc<Mutex<Found>>,
}

impl StreamWatch {
    /// Watches `decodebin`'s pads; `link` is given each pad whose media type starts with
    /// `wanted` (`"video/"`, `"audio/"`).
    pub fn new(
        decodebin: &gst::Element,
        wanted: &'static str,
        link: impl Fn(&gst::Pad) + Send + Sync + 'static,
    ) -> Self {
        let watch = Self {
            wanted,
            found: Arc::default(),
        };
        let found = watch.found.clone();
        decodebin.connect_pad_added(move |_, pad| {
            let kind = pad
                .current_caps()
                .or_else(|| Some(pad.query_caps(None)))
                .and_then(|caps| caps.structure(0).map(|s| s.name().to_string()))
                .unwrap_or_default();
            let is_wanted = kind.starts_with(wanted);
            found.lock().unwrap().kinds.push(kind);
            if is_wanted {
                link(pad);
            }
        });
        let found = watch.found.clone();
        decodebin.connect_no_more_pads(move |_| found.lock().unwrap().complete = true);
        watch
    }

    /// A stream of the wanted kind was exposed.
    pub fn found_wanted(&self) -> bool {
        self.found.lock().unwrap().has(self.wanted)
    }

    /// Streams were exposed and none is of the wanted kind.
    pub fn found_only_others(&self) -> bool {
        self.found.lock().unwrap().only_others(self.wanted)
    }

    /// Every stream is exposed and none is of the wanted kind: nothing more can come.
    pub fn settled_without_wanted(&self) -> bool {
        let found = self.found.lock().unwrap();
        found.complete && found.only_others(self.wanted)
    }

    /// "GStreamer found only audio/x-raw, ...", for the caller's error.
    pub fn found_only(&self) -> String {
        format!(
            "GStreamer found only {}",
            self.found.lock().unwrap().kinds.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_other_streams_needs_some_streams_and_none_wanted() {
        let found = |kinds: &[&str]| Found {
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            complete: true,
        };
        assert!(
            !found(&[]).only_others("video/"),
            "nothing found says nothing yet"
        );
        assert!(found(&["audio/x-raw"]).only_others("video/"));
        assert!(!found(&["audio/x-raw", "video/x-raw"]).only_others("video/"));
        assert!(found(&["audio/x-raw", "video/x-raw"]).has("audio/"));
    }
}
