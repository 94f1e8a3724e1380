//! A `.bin`'s sidecar JSON: the first eight bytes are the `.bin`'s length, the rest the JSON;
//! what is accepted adds up to the file.
#![no_main]

use gstneuralfx::talking_head::features::bin_layout;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (length, json) = data.split_at(8);
    let file_len = u64::from_le_bytes(length.try_into().unwrap());
    let json = String::from_utf8_lossy(json);
    if let Ok((frames, feature_size)) = bin_layout(&json, "fuzz.bin.json", file_len) {
        let bytes = (frames as u64)
            .checked_mul(feature_size as u64)
            .and_then(|n| n.checked_mul(4));
        assert_eq!(bytes, Some(file_len));
    }
});
