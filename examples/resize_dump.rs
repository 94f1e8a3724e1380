//! Dumps a Lanczos resize of a raw RGB file, to compare neuralfx's resampling with PIL's.
//! Usage: resize_dump IN.raw WIDTH HEIGHT CHANNELS OUT_WIDTH OUT_HEIGHT OUT.raw [cubic]
//! ("cubic" resizes as OpenCV's INTER_CUBIC instead of PIL's Lanczos.)
use gstneuralfx::imageops::{Filter, ImageRef, PixelLayout, Resizer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&args[1]).unwrap();
    let n = |i: usize| args[i].parse::<usize>().unwrap();
    let (w, h, c, ow, oh) = (n(2), n(3), n(4), n(5), n(6));
    let layout = PixelLayout::new(c, 0, 1.min(c - 1), 2.min(c - 1));
    let mut out = vec![0u8; ow * oh * c];
    if args.get(8).is_some_and(|a| a == "cubic") {
        gstneuralfx::imageops::resize_cubic(&data, w, h, w * c, c, &mut out, ow, oh);
        std::fs::write(&args[7], out).unwrap();
        return;
    }
    Resizer::new()
        .resize(
            &ImageRef::packed(&data, w, h, layout),
            &mut out,
            ow,
            oh,
            Filter::Lanczos3,
        )
        .unwrap();
    std::fs::write(&args[7], out).unwrap();
}
