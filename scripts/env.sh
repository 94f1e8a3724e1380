# Paths shared by the set-up, demo, test and benchmark scripts. Sourced, not run.
# Everything downloaded lives outside the checkout, so a fresh clone reuses it.
export NEURALFX_CACHE="${NEURALFX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/neuralfx}"
export ORT_VERSION=1.31.1
# ort's load-dynamic needs an absolute path.
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$NEURALFX_CACHE/onnxruntime/libonnxruntime.so.$ORT_VERSION}"
export OPENVINO_VERSION=2026.4.0
# The OpenVINO libraries neuralfx needs (C API, core, CPU plugin, ONNX reader, TBB); the set-up
# also puts a copy beside the plugin, where the plugin looks for it.
export NEURALFX_OPENVINO_DIR="$NEURALFX_CACHE/openvino-$OPENVINO_VERSION"
export OPENVINO_DYLIB_PATH="${OPENVINO_DYLIB_PATH:-$NEURALFX_OPENVINO_DIR}"
# rembg's own model folder, so models are shared with a Python rembg install.
export U2NET_HOME="${U2NET_HOME:-$HOME/.u2net}"
export NEURALFX_SAMPLES="$NEURALFX_CACHE/samples"
export NEURALFX_VENV="$NEURALFX_CACHE/venv"
export NEURALFX_CONVERT_VENV="$NEURALFX_CACHE/convert-venv"
export NEURALFX_MEDIAPIPE_VENV="$NEURALFX_CACHE/mediapipe-venv"
export NEURALFX_TRITON_VENV="$NEURALFX_CACHE/triton-venv"
export NEURALFX_LIBROSA_VENV="$NEURALFX_CACHE/librosa-venv"
# Only with scripts/setup.sh --cuda: ONNX Runtime's GPU build and NVIDIA's runtime wheels.
export NEURALFX_CUDA_VENV="$NEURALFX_CACHE/cuda-venv"
# Only with scripts/setup.sh --torch; tests/export_audio_encoder.rs is skipped without it.
export NEURALFX_TORCH_VENV="$NEURALFX_CACHE/torch-venv"
export GST_USER_PLUGIN_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/gstreamer-1.0/plugins"
export PATH="$HOME/.cargo/bin:$PATH"
