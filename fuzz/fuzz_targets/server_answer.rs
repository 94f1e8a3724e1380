//! A server's answer as the remote backends read it: the first byte picks the reader (a mask
//! picture or raw mask of SageMaker's picture payload, or a KServe v2 HTTP answer with a header
//! length from the next two bytes), the rest is the answer. What is accepted is consistent.
#![no_main]

use gstneuralfx::inference::image_payload::decode_mask;
use gstneuralfx::inference::triton::http::parse_infer_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    if choice % 2 == 0 {
        let content_type = ["image/png", "image/jpeg", "application/octet-stream"]
            [usize::from(choice / 2) % 3];
        if let Ok(mask) = decode_mask(rest, Some(content_type), 64, 48) {
            assert_eq!(mask.shape.iter().product::<usize>(), mask.data.len());
        }
    } else if rest.len() >= 2 {
        let header_len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        if let Ok(tensors) = parse_infer_response(Some(header_len), &rest[2..], &["mask".into()]) {
            assert_eq!(tensors[0].shape.iter().product::<usize>(), tensors[0].data.len());
        }
    }
});
