//! The oracles of foreground estimation, run in the reference venv and shared by
//! tests/foreground.rs and benches/foreground.rs: pymatting's `estimate_foreground_ml`
//! (tests/reference/estimate_foreground.py) and the paper's blur-fusion at full resolution
//! (tests/reference/blur_fusion.py).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// pymatting's foreground for packed `rgb` under `alpha` (0..1 floats, RGB per pixel), and how
/// long pymatting took (compiled by numba before it is timed).
pub fn estimate_foreground(
    rgb: &[u8],
    alpha: &[u8],
    width: usize,
    height: usize,
) -> (Vec<f32>, Duration) {
    run_oracle("estimate_foreground.py", rgb, alpha, width, height)
}

/// Blur-fusion's foreground as the paper computes it, at full resolution (0..1 floats), and how
/// long it took.
pub fn blur_fusion(rgb: &[u8], alpha: &[u8], width: usize, height: usize) -> (Vec<f32>, Duration) {
    run_oracle("blur_fusion.py", rgb, alpha, width, height)
}

/// Runs `tests/reference/<script>` on the image and alpha; it writes float32 RGB and prints
/// its seconds.
fn run_oracle(
    script: &str,
    rgb: &[u8],
    alpha: &[u8],
    width: usize,
    height: usize,
) -> (Vec<f32>, Duration) {
    let venv = std::env::var_os("NEURALFX_VENV")
        .expect("NEURALFX_VENV is not set: run scripts/test.sh, which sets up the oracles");
    let dir = std::env::temp_dir().join(format!(
        "neuralfx-{script}-{}-{width}x{height}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (rgb_path, alpha_path, out_path) =
        (dir.join("rgb"), dir.join("alpha"), dir.join("foreground"));
    std::fs::write(&rgb_path, rgb).unwrap();
    std::fs::write(&alpha_path, alpha).unwrap();
    let script_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(script);
    let output = Command::new(PathBuf::from(venv).join("bin/python"))
        .arg(script_path)
        .args([width.to_string(), height.to_string()])
        .args([&rgb_path, &alpha_path, &out_path])
        .output()
        .unwrap_or_else(|e| panic!("start {script}: {e}"));
    assert!(
        output.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = std::fs::read(&out_path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let foreground = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let seconds: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    (foreground, Duration::from_secs_f64(seconds))
}

/// Mean |colour - expected| in levels over the pixels of partial alpha (packed RGB, `expected`
/// in 0..255), and how many such pixels there are.
pub fn band_difference(colour: &[u8], expected: &[f64], alpha: &[u8]) -> (f64, usize) {
    let (mut total, mut pixels) = (0.0, 0);
    for (i, &a) in alpha.iter().enumerate() {
        if a != 0 && a != 255 {
            for c in 0..3 {
                total += (f64::from(colour[i * 3 + c]) - expected[i * 3 + c]).abs();
            }
            pixels += 1;
        }
    }
    (total / (3 * pixels).max(1) as f64, pixels)
}
