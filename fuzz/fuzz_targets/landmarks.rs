//! A landmarks file's text: any bytes give a crop inside the image or an error.
#![no_main]

use gstneuralfx::talking_head::templates::parse_crop_rect;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(rect) = parse_crop_rect(&text, std::path::Path::new("fuzz.lms"), 640, 480) {
        assert!(rect.size > 0 && rect.x + rect.size <= 640 && rect.y + rect.size <= 480);
    }
});
