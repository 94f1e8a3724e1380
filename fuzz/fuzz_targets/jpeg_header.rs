//! A JPEG's headers: any bytes give a non-empty size or an error.
#![no_main]

use gstneuralfx::talking_head::templates::jpeg_size;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((width, height)) = jpeg_size(data) {
        assert!(width > 0 && height > 0);
    }
});
