# Sourced by the rembgfilter scripts: a catalog model that is not installed yet is downloaded
# before the script's own pipeline, its progress shown as it goes (pipelines/lib/fetch_model.py).
#
# prefetch_model DEFAULT [rembgfilter properties...]: the model the properties name (the last
# model=, else DEFAULT), unless the model runs on a server, is a file path, is installed, or the
# properties turn downloading off.
prefetch_model() {
    local model="$1" backend=onnxruntime argument
    shift
    for argument in "$@"; do
        case "$argument" in
            model=*) model="${argument#model=}" ;;
            backend=*) backend="${argument#backend=}" ;;
            # Downloading turned off: nothing to fetch, rembgfilter says where it looked.
            download=false | download=0 | download=no) return 0 ;;
        esac
    done
    case "$backend" in triton | triton-http) return 0 ;; esac
    case "$model" in */* | *.onnx) return 0 ;; esac
    # Where rembgfilter looks (as rembg does): $U2NET_HOME, else ~/.u2net; then
    # $REMBG_HOME/models/MODEL ($XDG_DATA_HOME/rembg, else ~/.rembg, when unset).
    local rembg_home="${REMBG_HOME:-${XDG_DATA_HOME:+$XDG_DATA_HOME/rembg}}"
    rembg_home="${rembg_home:-$HOME/.rembg}"
    [ -f "${U2NET_HOME:-$HOME/.u2net}/$model.onnx" ] && return 0
    [ -f "$rembg_home/models/$model/$model.onnx" ] && return 0
    local python=python3
    python3 -c 'import gi' 2>/dev/null || python=/usr/bin/python3
    "$python" "$(dirname "${BASH_SOURCE[0]}")/fetch_model.py" "$model" || true
}
