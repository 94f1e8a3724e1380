//! The start of a `.npy`: the first eight bytes are the file's claimed length, the rest its
//! content; nothing panics and nothing large is allocated from a header.
#![no_main]

use gstneuralfx::talking_head::features::check_npy_header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (length, content) = data.split_at(8);
    let file_len = u64::from_le_bytes(length.try_into().unwrap());
    let _ = check_npy_header(content, file_len);
});
