//! Folder mode against `rembg p`, measured in one run on the same folder: the sample photos
//! (skimage's, 451x300 to 1481x987, PNG and JPEG) and a JPEG copy of each at another size, so
//! that sizes and formats change from file to file. For each: pictures per second, the ratio,
//! the process's peak memory, the PNGs' total size, and the mean difference of our alpha from
//! rembg's.
//! `pipelines/cutout-folder.sh` runs with u2netp and its defaults (foreground colour estimation
//! on: it changes the edges' colour, not the alpha), then with u2netp-int8, the fast variant whose
//! masks hold on unseen photos; `rembg p -m u2netp` (rembg's own command,
//! tests/reference/rembg_p.py) with its own.
//!
//! `scripts/bench.sh folder`; BENCH_FRAMES=N copies each photo N times more (default 0).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{bench_frames, python};

/// Runs `command` through a Python that reports its child's peak resident memory: seconds and
/// MiB. The command must succeed.
fn timed(command: &[&str]) -> (f64, f64) {
    let measure = "import resource, subprocess, sys\n\
                   status = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n\
                   print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, status)";
    let started = Instant::now();
    let output = Command::new("python3")
        .args(["-c", measure])
        .args(command)
        .output()
        .expect("python3");
    let seconds = started.elapsed().as_secs_f64();
    let printed = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = printed.split_whitespace().collect();
    assert_eq!(
        fields.get(1),
        Some(&"0"),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (seconds, fields[0].parse::<f64>().unwrap() / 1024.0)
}

/// The alpha plane of a PNG.
fn alpha(path: &Path) -> Vec<u8> {
    common::first_frame(&format!(
        "filesrc location=\"{}\" ! pngdec ! videoconvert ! video/x-raw,format=RGBA \
         ! appsink name=sink",
        path.display()
    ))
    .chunks_exact(4)
    .map(|pixel| pixel[3])
    .collect()
}

fn main() {
    gst::init().unwrap();
    let copies = bench_frames(0);
    let samples = PathBuf::from(std::env::var("NEURALFX_SAMPLES").expect("NEURALFX_SAMPLES"));
    let dir = std::env::temp_dir().join(format!("neuralfx-folder-bench-{}", std::process::id()));
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&samples)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    photos.sort();
    // A JPEG of each at 3/4 of its size (Pillow, as a camera or a web page would make them).
    let resize = "import sys\nfrom PIL import Image\n\
                  for source, target in zip(sys.argv[1::2], sys.argv[2::2]):\n    \
                  image = Image.open(source).convert('RGB')\n    \
                  image.resize((image.width * 3 // 4, image.height * 3 // 4)).save(target, quality=90)";
    let mut resize_args = Vec::new();
    for photo in &photos {
        let name = photo.file_name().unwrap().to_str().unwrap();
        std::fs::copy(photo, input.join(name)).unwrap();
        for copy in 0..copies {
            std::fs::copy(photo, input.join(format!("copy{copy}-{name}"))).unwrap();
        }
        let stem = photo.file_stem().unwrap().to_str().unwrap();
        resize_args.push(photo.display().to_string());
        resize_args.push(
            input
                .join(format!("{stem}-small.jpg"))
                .display()
                .to_string(),
        );
    }
    common::run(
        Command::new(python())
            .args(["-c", resize])
            .args(&resize_args),
    );
    let count = std::fs::read_dir(&input).unwrap().count();
    let rembg_p = common::reference("rembg_p.py");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pipelines/cutout-folder.sh");
    let rembg_out = dir.join("rembg");
    println!("folder benchmark: {count} pictures, each tool once, same folder");
    let (rembg_s, rembg_mib) = timed(&[
        python().to_str().unwrap(),
        rembg_p.to_str().unwrap(),
        "-m",
        "u2netp",
        input.to_str().unwrap(),
        rembg_out.to_str().unwrap(),
    ]);
    println!(
        "{:>36} {:>10} {:>10} {:>12} {:>10} {:>10} {:>16}",
        "", "seconds", "images/s", "peak MiB", "x rembg p", "PNGs MB", "alpha diff"
    );
    let row = |name: &str, seconds: f64, mib: f64, out: &Path, difference: &str| {
        println!(
            "{name:>36} {seconds:>10.2} {:>10.2} {mib:>12.0} {:>10.2} {:>10.1} {difference:>16}",
            count as f64 / seconds,
            rembg_s / seconds,
            megabytes(out)
        );
    };
    row("rembg p -m u2netp", rembg_s, rembg_mib, &rembg_out, "");
    // The exact model, then the fastest variant whose masks hold on unseen photos (#27).
    for (label, properties) in [
        ("cutout-folder.sh", None),
        (
            "cutout-folder.sh model=u2netp-int8",
            Some("model=u2netp-int8"),
        ),
    ] {
        let out = dir.join(label.replace([' ', '=', '.'], "-"));
        let mut command = vec![
            script.to_str().unwrap(),
            input.to_str().unwrap(),
            out.to_str().unwrap(),
        ];
        command.extend(properties);
        let (seconds, mib) = timed(&command);
        let (mean, worst) = alpha_difference(&out, &rembg_out);
        row(
            label,
            seconds,
            mib,
            &out,
            &format!("{mean:.3} ({:.2})", worst.0),
        );
        println!("{:>36} worst: {}", "", worst.1);
    }
    println!(
        "alpha diff: mean |ours - rembg p's| in levels over every picture (the worst picture's)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn megabytes(dir: &Path) -> f64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum::<u64>() as f64
        / 1e6
}

/// The mean alpha difference of the cutouts in `ours` from rembg's in `theirs`, in levels over
/// all pictures, and the worst picture's with its name.
fn alpha_difference(ours: &Path, theirs: &Path) -> (f64, (f64, String)) {
    let mut differences = Vec::new();
    for entry in std::fs::read_dir(theirs).unwrap() {
        let theirs = entry.unwrap().path();
        let name = theirs.file_name().unwrap();
        let (a, b) = (alpha(&ours.join(name)), alpha(&theirs));
        assert_eq!(a.len(), b.len(), "{}: sizes differ", name.display());
        let sum: u64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        differences.push((sum as f64 / a.len() as f64, name.display().to_string()));
    }
    differences.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mean = differences.iter().map(|d| d.0).sum::<f64>() / differences.len().max(1) as f64;
    (mean, differences.pop().unwrap_or_default())
}
