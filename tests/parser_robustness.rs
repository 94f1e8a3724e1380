//! Property-based tests of every reader of outside data: landmark files, `.npy` headers, `.bin`
//! sidecar JSON, JPEG headers, and servers' answers (KServe v2 over HTTP and gRPC, SageMaker's
//! content types, mask pictures and raw masks). Arbitrary and mutated input never panics, what is accepted is
//! consistent, and no single allocation grows beyond a small bound whatever a header declares
//! (a counting allocator watches this test binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use gstneuralfx::inference::image_payload::decode_mask;
use gstneuralfx::inference::sagemaker::json_header_size;
use gstneuralfx::inference::triton::grpc::parse_infer_response as parse_grpc_answer;
use gstneuralfx::inference::triton::grpc::proto::{
    ModelInferResponse, model_infer_response::InferOutputTensor,
};
use gstneuralfx::inference::triton::http::parse_infer_response as parse_http_answer;
use gstneuralfx::talking_head::features::{bin_layout, check_npy_header};
use gstneuralfx::talking_head::templates::{jpeg_size, parse_crop_rect};
use proptest::prelude::*;

/// Records the largest single allocation made by this process.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// No reader allocated more than this for inputs of a few kilobytes (the `.npy` header cap is
/// 1 MiB).
const ALLOCATION_BOUND: usize = 4 << 20;

fn assert_small_allocations() {
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest < ALLOCATION_BOUND,
        "an allocation of {largest} bytes"
    );
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// 68 landmark lines whose crop (points 1, 31, 52) fits a 200x200 image.
fn valid_landmarks() -> String {
    (0..68)
        .map(|i| match i {
            1 => "20.5 90\n".to_string(),
            31 => "120.5 90\n".to_string(),
            52 => "80 30.5\n".to_string(),
            _ => format!("{}.25 {}.75\n", i + 10, i + 20),
        })
        .collect()
}

/// A version-1 `.npy` header declaring float32 `shape`.
fn npy_header(shape: &str) -> Vec<u8> {
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while !(10 + dict.len() + 1).is_multiple_of(64) {
        dict.push(' ');
    }
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((dict.len() as u16).to_le_bytes());
    bytes.extend(dict.as_bytes());
    bytes
}

/// The headers of a small real JPEG: SOI, an APP0 segment, a frame header of 640x480.
fn jpeg_start() -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    bytes.extend(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    bytes.extend([0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01, 0xE0, 0x02, 0x80, 0x03]);
    bytes.extend([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    bytes
}

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
    for &(at, value) in edits {
        if !bytes.is_empty() {
            let at = at % bytes.len();
            bytes[at] = value;
        }
    }
    bytes
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_landmark_text_gives_a_crop_inside_the_image_or_an_error(text in ".{0,2000}") {
        if let Ok(rect) = parse_crop_rect(&text, Path::new("any.lms"), 200, 200) {
            prop_assert!(rect.size > 0 && rect.x + rect.size <= 200 && rect.y + rect.size <= 200);
        }
        assert_small_allocations();
    }

    #[test]
    fn mutated_landmarks_never_panic(
        edits in prop::collection::vec((any::<usize>(), prop::sample::select(
            vec![b'0', b'9', b'-', b'.', b'e', b' ', b'\n', b'x', b'N', 0xFF]
        )), 1..12),
    ) {
        let bytes = mutate(valid_landmarks().into_bytes(), &edits);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(rect) = parse_crop_rect(&text, Path::new("any.lms"), 200, 200) {
            prop_assert!(rect.x + rect.size <= 200 && rect.y + rect.size <= 200);
        }
        assert_small_allocations();
    }

    #[test]
    fn any_npy_start_is_accepted_only_when_its_shape_fits_the_file(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        file_len in any::<u64>(),
    ) {
        let _ = check_npy_header(&bytes[..], file_len);
        assert_small_allocations();
    }

    #[test]
    fn npy_headers_declaring_any_shape_allocate_nothing_large(
        dims in prop::collection::vec(any::<u64>(), 0..5),
        data_len in 0u64..1 << 40,
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let shape = format!(
            "({})",
            dims.iter().map(|d| format!("{d},")).collect::<String>()
        );
        let header = mutate(npy_header(&shape), &edits);
        let file_len = header.len() as u64 + data_len;
        let accepted = check_npy_header(&header[..], file_len).is_ok();
        let declared = dims.iter().try_fold(4u64, |n, &d| n.checked_mul(d));
        if edits.is_empty() {
            prop_assert_eq!(accepted, declared == Some(data_len));
        }
        assert_small_allocations();
    }

    #[test]
    fn any_bin_json_is_accepted_only_when_it_adds_up_to_the_file(
        frames in any::<u64>(),
        feature_size in any::<u64>(),
        shape in prop::option::of(prop::collection::vec(any::<u64>(), 0..4)),
        file_len in any::<u64>(),
        noise in ".{0,40}",
    ) {
        let shape = shape.map_or(String::new(), |dims| format!(", \"shape\": {dims:?}"));
        let json = format!(
            "{{\"num_frames\": {frames}, \"feature_size\": {feature_size}{shape}}}{noise}"
        );
        if let Ok((f, s)) = bin_layout(&json, "features.bin.json", file_len) {
            prop_assert_eq!((f as u64).checked_mul(s as u64).and_then(|n| n.checked_mul(4)), Some(file_len));
        }
        let _ = bin_layout(&noise, "features.bin.json", file_len);
        assert_small_allocations();
    }

    #[test]
    fn any_bytes_as_a_jpeg_give_a_size_or_an_error(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        if let Ok((width, height)) = jpeg_size(&bytes[..]) {
            prop_assert!(width > 0 && height > 0);
        }
        assert_small_allocations();
    }

    #[test]
    fn mutated_jpeg_headers_never_panic(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in 0usize..40,
    ) {
        let mut bytes = mutate(jpeg_start(), &edits);
        bytes.truncate(bytes.len().saturating_sub(cut % 8));
        let size = jpeg_size(&bytes[..]);
        if edits.is_empty() && cut % 8 == 0 {
            prop_assert_eq!(size, Ok((640, 480)));
        }
        assert_small_allocations();
    }

    #[test]
    fn any_http_answer_gives_consistent_tensors_or_an_error(
        body in prop::collection::vec(any::<u8>(), 0..600),
        header_len in prop::option::of(0usize..700),
    ) {
        if let Ok(tensors) = parse_http_answer(header_len, &body, &["mask".into()]) {
            let elements: usize = tensors[0].shape.iter().product();
            prop_assert_eq!(elements, tensors[0].data.len());
        }
        assert_small_allocations();
    }

    #[test]
    fn http_answers_declaring_any_shape_allocate_nothing_large(
        dims in prop::collection::vec(any::<i64>(), 0..5),
        binary_size in any::<u64>(),
        data in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let header = format!(
            "{{\"outputs\":[{{\"name\":\"mask\",\"datatype\":\"FP32\",\"shape\":{dims:?},\
             \"parameters\":{{\"binary_data_size\":{binary_size}}}}}]}}"
        );
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(&data);
        if let Ok(tensors) = parse_http_answer(Some(header.len()), &body, &["mask".into()]) {
            prop_assert_eq!(tensors[0].data.len() * 4, data.len());
        }
        assert_small_allocations();
    }

    #[test]
    fn grpc_answers_declaring_any_shape_give_consistent_tensors_or_an_error(
        dims in prop::collection::vec(any::<i64>(), 0..5),
        raw in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..3),
        datatype in prop::sample::select(vec!["FP32", "FP16", "INT64", ""]),
    ) {
        let response = ModelInferResponse {
            outputs: vec![InferOutputTensor {
                name: "mask".into(),
                datatype: datatype.into(),
                shape: dims,
                ..Default::default()
            }],
            raw_output_contents: raw,
            ..Default::default()
        };
        if let Ok(tensors) = parse_grpc_answer(response, &["mask"]) {
            let elements: usize = tensors[0].shape.iter().product();
            prop_assert_eq!(elements, tensors[0].data.len());
        }
        assert_small_allocations();
    }

    #[test]
    fn any_content_type_gives_a_header_size_or_an_error(text in ".{0,200}") {
        let _ = json_header_size(Some(&text));
        assert_small_allocations();
    }

    #[test]
    fn any_answer_as_a_mask_gives_a_mask_or_an_error(
        body in prop::collection::vec(any::<u8>(), 0..2000),
        content_type in prop::sample::select(vec![
            "image/png", "image/jpeg", "application/octet-stream", "application/json", "",
        ]),
        width in 1usize..80,
        height in 1usize..60,
    ) {
        let content_type = (!content_type.is_empty()).then_some(content_type);
        if let Ok(mask) = decode_mask(&body, content_type, width, height) {
            let elements: usize = mask.shape.iter().product();
            prop_assert_eq!(elements, mask.data.len());
        }
        assert_small_allocations();
    }

    #[test]
    fn mutated_mask_pictures_never_panic_or_allocate_much(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        claimed_width in prop_oneof![4 => 0u32..20_000, 1 => any::<u32>()],
        claimed_height in prop_oneof![4 => 0u32..20_000, 1 => any::<u32>()],
    ) {
        let mut png = mask_png(32, 24);
        // The IHDR's width and height, whatever they say, with a CRC that matches: a header a
        // hostile or broken server could send.
        png[16..20].copy_from_slice(&claimed_width.to_be_bytes());
        png[20..24].copy_from_slice(&claimed_height.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        let png = mutate(png, &edits);
        let _ = decode_mask(&png, Some("image/png"), 32, 24);
        assert_small_allocations();
    }
}

/// A greyscale PNG mask of `width` x `height`.
fn mask_png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer
        .write_image_data(&vec![200; (width * height) as usize])
        .unwrap();
    writer.finish().unwrap();
    out
}

/// PNG's chunk CRC (CRC-32, ISO 3309) of a chunk's type and data.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
