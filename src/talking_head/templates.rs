//! A SyncTalk_2D template folder: `full_body_img/<i>.jpg`, `landmarks/<i>.lms`, optional
//! `parsing/<i>.png`; face rectangles read once, decoded frames kept in a bounded cache.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A decoded image, packed, 3 bytes per pixel in B, G, R order (as OpenCV reads it).
#[derive(Debug, Clone, PartialEq)]
pub struct BgrImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// The square face crop of one template: `size x size` pixels from (`x`, `y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropRect {
    pub x: usize,
    pub y: usize,
    pub size: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template folder {0}: {1}")]
    Folder(PathBuf, String),
    #[error("{0}: {1}")]
    File(PathBuf, String),
}

fn file_error(path: &Path, reason: impl Into<String>) -> TemplateError {
    TemplateError::File(path.to_path_buf(), reason.into())
}

/// The landmarks the crop uses: x of point 1, x of point 31, y of point 52.
const CROP_POINTS: [(usize, usize); 3] = [(1, 0), (31, 0), (52, 1)];

/// Coordinates beyond this cannot be pixel positions (numpy's int32 cast of them is undefined).
const MAX_COORDINATE: f32 = 2_147_483_520.0;

/// Reads a landmarks file ("x y" per line, as float, truncated to int) and returns SyncTalk_2D's
/// face square: x from point 1 to point 31, y from point 52 down by the same width. As with
/// SyncTalk_2D's `np.loadtxt`, every line must hold numbers; points the crop does not use may be
/// NaN or infinite, the three it uses must be finite pixel positions.
pub fn read_crop_rect(path: &Path, width: usize, height: usize) -> Result<CropRect, TemplateError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))?;
    parse_crop_rect(&text, path, width, height)
}

/// [`read_crop_rect`] on the text of a landmarks file; `path` names it in errors.
pub fn parse_crop_rect(
    text: &str,
    path: &Path,
    width: usize,
    height: usize,
) -> Result<CropRect, TemplateError> {
    // (x, y, line number) per point.
    let mut points: Vec<(f32, f32, usize)> = Vec::new();
    for (line_index, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let line_number = line_index + 1;
        let values: Vec<&str> = line.split_whitespace().collect();
        let [x, y, ..] = values.as_slice() else {
            return Err(file_error(
                path,
                format!("line {line_number}: '{line}' is not an 'x y' pair"),
            ));
        };
        match (x.parse::<f32>(), y.parse::<f32>()) {
            (Ok(x), Ok(y)) => points.push((x, y, line_number)),
            _ => {
                return Err(file_error(
                    path,
                    format!("line {line_number}: '{line}' is not two numbers"),
                ));
            }
        }
    }
    if points.len() < 53 {
        return Err(file_error(
            path,
            format!(
                "has {} points; at least 53 are needed (the crop uses points 1, 31 and 52)",
                points.len()
            ),
        ));
    }
    let mut used = [0i64; 3];
    for (value, (point, axis)) in used.iter_mut().zip(CROP_POINTS) {
        let (x, y, line_number) = points[point];
        let coordinate = if axis == 0 { x } else { y };
        if !coordinate.is_finite() || coordinate.abs() > MAX_COORDINATE {
            return Err(file_error(
                path,
                format!(
                    "line {line_number}: point {point} {} = {coordinate} is not a pixel position",
                    ["x", "y"][axis]
                ),
            ));
        }
        // numpy's float32 -> int32 cast truncates toward zero.
        *value = coordinate as i64;
    }
    // Each value fits in 32 bits, so none of this arithmetic can overflow an i64.
    let [x_min, x_max, y_min] = used;
    let size = x_max - x_min;
    if size <= 0 {
        return Err(file_error(
            path,
            format!("empty face crop: point 31 x ({x_max}) is not right of point 1 x ({x_min})"),
        ));
    }
    if x_min < 0 || y_min < 0 || x_max > width as i64 || y_min + size > height as i64 {
        return Err(file_error(
            path,
            format!(
                "face crop x {x_min}..{x_max}, y {y_min}..{} falls outside the {width}x{height} image",
                y_min + size
            ),
        ));
    }
    Ok(CropRect {
        x: x_min as usize,
        y: y_min as usize,
        size: size as usize,
    })
}

/// What a JPEG's headers say, read without decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegHeader {
    pub width: usize,
    pub height: usize,
    /// No end-of-image marker near the end: the file was cut off. It still decodes (the missing
    /// part grey), as OpenCV decodes it with a warning.
    pub truncated: bool,
}

/// Reads the size from a JPEG's frame header, skipping the segments before it, and looks for
/// the end-of-image marker in its last bytes: a few kilobytes read whatever the file's size.
pub fn read_jpeg_header(path: &Path) -> Result<JpegHeader, TemplateError> {
    use std::io::{BufReader, Read, Seek, SeekFrom};

    let file = std::fs::File::open(path).map_err(|e| file_error(path, e.to_string()))?;
    let length = file
        .metadata()
        .map_err(|e| file_error(path, e.to_string()))?
        .len();
    let mut reader = BufReader::new(file);
    let (width, height) = jpeg_size(&mut reader)
        .map_err(|reason| file_error(path, format!("not a readable JPEG: {reason}")))?;
    let mut file = reader.into_inner();
    let tail_len = length.min(4096);
    let mut tail = vec![0u8; tail_len as usize];
    file.seek(SeekFrom::Start(length - tail_len))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(|e| file_error(path, e.to_string()))?;
    let truncated = !tail.windows(2).any(|pair| pair == [0xFF, 0xD9]);
    Ok(JpegHeader {
        width,
        height,
        truncated,
    })
}

/// Width and height from the frame header of the JPEG `reader` is at the start of, skipping the
/// segments before it; reads no further.
pub fn jpeg_size(reader: impl std::io::BufRead) -> Result<(usize, usize), String> {
    let mut bytes = reader.bytes();
    let mut byte = || -> Result<u8, String> {
        match bytes.next() {
            Some(Ok(byte)) => Ok(byte),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("it ends before its frame header".into()),
        }
    };
    if (byte()?, byte()?) != (0xFF, 0xD8) {
        return Err("no start-of-image marker".into());
    }
    let (width, height) = loop {
        if byte()? != 0xFF {
            return Err("a segment does not start with a marker".into());
        }
        let mut marker = byte()?;
        while marker == 0xFF {
            marker = byte()?;
        }
        if matches!(marker, 0x01 | 0xD0..=0xD7) {
            continue;
        }
        if matches!(marker, 0xD9 | 0xDA) {
            return Err("image data before a frame header".into());
        }
        let segment = usize::from(u16::from_be_bytes([byte()?, byte()?]));
        if segment < 2 {
            return Err("a segment shorter than its length field".into());
        }
        let is_frame = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_frame {
            if segment < 8 {
                return Err("a frame header too short for a size".into());
            }
            let _precision = byte()?;
            let height = usize::from(u16::from_be_bytes([byte()?, byte()?]));
            let width = usize::from(u16::from_be_bytes([byte()?, byte()?]));
            break (width, height);
        }
        for _ in 0..segment - 2 {
            byte()?;
        }
    };
    if width == 0 || height == 0 {
        return Err(format!("its frame header gives a size of {width}x{height}"));
    }
    Ok((width, height))
}

/// Decodes a JPEG into packed BGR as OpenCV's `imread` does: grey images become three equal
/// channels, CMYK (Adobe's inverted, as Photoshop and Pillow write it) is converted with
/// OpenCV's formula.
pub fn decode_jpeg(path: &Path) -> Result<BgrImage, TemplateError> {
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;

    let bytes = std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?;
    let unreadable = |e: zune_jpeg::errors::DecodeErrors| {
        file_error(path, format!("not a readable JPEG: {e:?}"))
    };
    let mut headers = zune_jpeg::JpegDecoder::new(&bytes[..]);
    headers.decode_headers().map_err(unreadable)?;
    let out = match headers.get_input_colorspace() {
        Some(ColorSpace::CMYK | ColorSpace::YCCK) => ColorSpace::CMYK,
        _ => ColorSpace::BGR,
    };
    let options = DecoderOptions::default().jpeg_set_out_colorspace(out);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(&bytes[..], options);
    let decoded = decoder.decode().map_err(unreadable)?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| file_error(path, "JPEG without dimensions"))?;
    let (pixels, decoded_len) = (width * height, decoded.len());
    let data = match decoded_len / pixels.max(1) {
        _ if decoded_len % pixels.max(1) != 0 => Vec::new(),
        3 => decoded,
        1 => decoded.iter().flat_map(|&v| [v; 3]).collect(),
        4 => decoded
            .chunks_exact(4)
            .flat_map(|cmyk| {
                let k = u32::from(cmyk[3]);
                // OpenCV's icvCvt_CMYK2BGR_8u_C4C3R on libjpeg's raw (inverted) values.
                let channel = |v: u8| (k - (((255 - u32::from(v)) * k) >> 8)) as u8;
                [channel(cmyk[2]), channel(cmyk[1]), channel(cmyk[0])]
            })
            .collect(),
        _ => Vec::new(),
    };
    if data.len() != pixels * 3 {
        return Err(file_error(
            path,
            format!(
                "JPEG decoded to {decoded_len} bytes for {width}x{height} pixels; 1, 3 or 4 \
                 channels expected"
            ),
        ));
    }
    Ok(BgrImage {
        width,
        height,
        data,
    })
}

/// Decodes a PNG (any 8-bit colour type) into packed BGR.
pub fn decode_png(path: &Path) -> Result<BgrImage, TemplateError> {
    let file = std::fs::File::open(path).map_err(|e| file_error(path, e.to_string()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| file_error(path, format!("not a readable PNG: {e}")))?;
    let mut buffer = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader
        .next_frame(&mut buffer)
        .map_err(|e| file_error(path, format!("not a readable PNG: {e}")))?;
    let (width, height) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let mut data = Vec::with_capacity(width * height * 3);
    for pixel in buffer[..info.buffer_size()].chunks_exact(channels) {
        match channels {
            1 | 2 => data.extend_from_slice(&[pixel[0]; 3]),
            _ => data.extend_from_slice(&[pixel[2], pixel[1], pixel[0]]),
        }
    }
    Ok(BgrImage {
        width,
        height,
        data,
    })
}

/// A bounded cache, least recently used dropped first.
#[derive(Debug)]
pub struct LruCache<T> {
    capacity: usize,
    frames: HashMap<usize, Arc<T>>,
    order: VecDeque<usize>,
}

impl<T> LruCache<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            frames: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&mut self, index: usize) -> Option<Arc<T>> {
        let frame = self.frames.get(&index)?.clone();
        self.order.retain(|&i| i != index);
        self.order.push_back(index);
        Some(frame)
    }

    pub fn insert(&mut self, index: usize, frame: Arc<T>) {
        if self.capacity == 0 {
            return;
        }
        while self.frames.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.frames.remove(&oldest);
        }
        self.frames.insert(index, frame);
        self.order.push_back(index);
    }
}

/// The usable templates of a folder, from `start_frame` on.
#[derive(Debug)]
pub struct TemplateSet {
    folder: PathBuf,
    start_frame: usize,
    count: usize,
    width: usize,
    height: usize,
    rects: Vec<CropRect>,
    parsing: bool,
    cache: Mutex<LruCache<BgrImage>>,
    cache_frames: usize,
    /// What a user should hear about the folder that does not stop it (truncated JPEGs).
    warnings: Vec<String>,
}

impl TemplateSet {
    /// Checks the folder and reads every landmarks file, so bad input fails here, at start.
    pub fn open(
        folder: &Path,
        start_frame: usize,
        parsing: bool,
        cache_frames: usize,
    ) -> Result<Self, TemplateError> {
        let folder_error = |reason: String| TemplateError::Folder(folder.to_path_buf(), reason);
        if folder.is_file() {
            return Err(folder_error(
                "is a file; expected a folder holding full_body_img/ and landmarks/".into(),
            ));
        }
        let images = folder.join("full_body_img");
        if !images.is_dir() {
            return Err(folder_error("has no full_body_img folder".into()));
        }
        let jpegs = std::fs::read_dir(&images)
            .map_err(|e| folder_error(e.to_string()))?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".jpg"))
            .count();
        if jpegs == 0 {
            return Err(folder_error("full_body_img holds no .jpg files".into()));
        }
        for index in 0..jpegs {
            let path = images.join(format!("{index}.jpg"));
            if !path.is_file() {
                return Err(file_error(
                    &path,
                    format!("missing: full_body_img holds {jpegs} .jpg files, numbered from 0"),
                ));
            }
        }
        if start_frame >= jpegs {
            return Err(folder_error(format!(
                "start-frame {start_frame} is past its {jpegs} templates"
            )));
        }
        let first = decode_jpeg(&images.join(format!("{start_frame}.jpg")))?;
        let (width, height) = (first.width, first.height);
        // Every template's headers now, so a broken or odd-sized one fails at start rather
        // than when the video reaches it.
        let mut truncated = Vec::new();
        for index in start_frame..jpegs {
            let path = images.join(format!("{index}.jpg"));
            let header = read_jpeg_header(&path)?;
            if (header.width, header.height) != (width, height) {
                return Err(file_error(
                    &path,
                    format!(
                        "is {}x{}, template {start_frame}.jpg is {width}x{height}",
                        header.width, header.height
                    ),
                ));
            }
            if header.truncated {
                truncated.push(path.display().to_string());
            }
        }
        let mut warnings = Vec::new();
        if !truncated.is_empty() {
            let shown = truncated.len().min(5);
            warnings.push(format!(
                "{} template JPEG(s) end before their end-of-image marker and decode with a grey \
                 remainder, as OpenCV's 'Premature end of JPEG file': {}{}",
                truncated.len(),
                truncated[..shown].join(", "),
                if truncated.len() > shown {
                    format!(" and {} more", truncated.len() - shown)
                } else {
                    String::new()
                }
            ));
        }
        let count = jpegs - start_frame;
        let rects = (start_frame..jpegs)
            .map(|index| {
                read_crop_rect(
                    &folder.join("landmarks").join(format!("{index}.lms")),
                    width,
                    height,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        if parsing {
            for index in start_frame..jpegs {
                let path = folder.join("parsing").join(format!("{index}.png"));
                if !path.is_file() {
                    return Err(file_error(&path, "missing (property 'parsing' is on)"));
                }
            }
        }
        let set = Self {
            folder: folder.to_path_buf(),
            start_frame,
            count,
            width,
            height,
            rects,
            parsing,
            cache: Mutex::new(LruCache::new(cache_frames)),
            cache_frames,
            warnings,
        };
        set.cache
            .lock()
            .unwrap()
            .insert(start_frame, Arc::new(first));
        Ok(set)
    }

    /// Things found at start that do not stop the element, for the bus.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Templates in the ping-pong cycle (those from `start_frame` on).
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// How many decoded templates the cache keeps.
    pub fn cache_capacity(&self) -> usize {
        self.cache_frames
    }

    pub fn uses_parsing(&self) -> bool {
        self.parsing
    }

    /// The face square of cycle position `position` (0 = template `start_frame`).
    pub fn rect(&self, position: usize) -> CropRect {
        self.rects[position]
    }

    /// The decoded template at cycle position `position`, from the cache when it is there.
    pub fn image(&self, position: usize) -> Result<Arc<BgrImage>, TemplateError> {
        let index = position + self.start_frame;
        if let Some(frame) = self.cache.lock().unwrap().get(index) {
            return Ok(frame);
        }
        let path = self
            .folder
            .join("full_body_img")
            .join(format!("{index}.jpg"));
        let frame = decode_jpeg(&path)?;
        if (frame.width, frame.height) != (self.width, self.height) {
            return Err(file_error(
                &path,
                format!(
                    "is {}x{}, the other templates {}x{}",
                    frame.width, frame.height, self.width, self.height
                ),
            ));
        }
        let frame = Arc::new(frame);
        self.cache.lock().unwrap().insert(index, frame.clone());
        Ok(frame)
    }

    /// The parsing map of cycle position `position`; its face square is kept with the prepared
    /// template, so it is decoded once per template while that stays cached.
    pub fn parsing_map(&self, position: usize) -> Result<BgrImage, TemplateError> {
        let path = self
            .folder
            .join("parsing")
            .join(format!("{}.png", position + self.start_frame));
        let map = decode_png(&path)?;
        if (map.width, map.height) != (self.width, self.height) {
            return Err(file_error(
                &path,
                format!(
                    "is {}x{}, the templates {}x{}",
                    map.width, map.height, self.width, self.height
                ),
            ));
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes 68 landmark lines (point i at `point(i)`) and reads the crop of a 200x200 image.
    fn crop_of(name: &str, point: impl Fn(usize) -> String) -> Result<CropRect, String> {
        // A file of its own per call: tests run in parallel and may pass the same name.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "neuralfx-landmarks-{}-{call}-{name}.lms",
            std::process::id()
        ));
        let text: String = (0..68).map(|i| point(i) + "\n").collect();
        std::fs::write(&path, text).unwrap();
        let result = read_crop_rect(&path, 200, 200).map_err(|e| e.to_string());
        std::fs::remove_file(&path).unwrap();
        result
    }

    /// Points 1, 31 and 52 give a 100-pixel square at (20, 30); the rest sit at `others`.
    fn face(others: &'static str) -> impl Fn(usize) -> String {
        move |i| match i {
            1 => "20.7 99".into(),
            31 => "120.2 99".into(),
            52 => "99 30.9".into(),
            _ => others.into(),
        }
    }

    #[test]
    fn the_crop_comes_from_points_1_31_and_52_truncated() {
        let rect = crop_of("plain", face("10 10")).unwrap();
        assert_eq!((rect.x, rect.y, rect.size), (20, 30, 100));
    }

    #[test]
    fn points_the_crop_does_not_use_may_be_nan_or_infinite_as_numpy_reads_them() {
        let rect = crop_of("nan", face("nan inf")).unwrap();
        assert_eq!((rect.x, rect.y, rect.size), (20, 30, 100));
    }

    #[test]
    fn absurd_or_non_finite_crop_points_are_named_with_line_and_value() {
        for (name, point, line) in [
            ("huge", "0 10000000000000000000", 53),
            ("huge-x", "-10000000000000000000 5", 2),
            ("nan", "NaN 5", 2),
            ("inf", "20 -inf", 53),
        ] {
            let which = if line == 53 { 52 } else { 1 };
            let err = crop_of(name, |i| {
                if i == which {
                    point.to_string()
                } else {
                    face("10 10")(i)
                }
            })
            .unwrap_err();
            assert!(
                err.contains(&format!("line {line}:"))
                    && err.contains("not a pixel position")
                    && err.contains(&format!("point {which}")),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn a_crop_that_would_overflow_is_outside_the_image_not_a_panic() {
        let err = crop_of("wide", |i| match i {
            1 => "-2147483000 0".into(),
            31 => "2147483000 0".into(),
            52 => "0 2147483000".into(),
            _ => "1 1".into(),
        })
        .unwrap_err();
        assert!(err.contains("falls outside the 200x200 image"), "{err}");
    }
}
