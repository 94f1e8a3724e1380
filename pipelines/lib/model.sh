# Sourced by the rembgfilter scripts: a catalog model that is not installed yet is downloaded
# before the script's own pipeline, its progress shown as it goes (pipelines/lib/fetch_model.py).
#
# model_properties DEFAULT [rembgfilter properties...]: what the properties say of the model, in
# MODEL (the last model=, else DEFAULT), BACKEND and PRECISION (the last given, else empty) and
# DOWNLOAD_OFF (1 when any of them turns downloading off).
model_properties() {
    MODEL="$1" BACKEND="" PRECISION="" DOWNLOAD_OFF=0
    shift
    local argument
    for argument in "$@"; do
        case "$argument" in
            model=*) MODEL="${argument#model=}" ;;
            backend=*) BACKEND="${argument#backend=}" ;;
            precision=*) PRECISION="${argument#precision=}" ;;
            download=false | download=0 | download=no) DOWNLOAD_OFF=1 ;;
        esac
    done
}

# prefetch_model DEFAULT [rembgfilter properties...]: the model the properties name (the last
# model=, else DEFAULT), unless the model runs on a server, is a file path, is installed, or the
# properties turn downloading off.
prefetch_model() {
    model_properties "$@"
    local model="$MODEL" backend="$BACKEND"
    # Downloading turned off: nothing to fetch, rembgfilter says where it looked.
    [ "$DOWNLOAD_OFF" = 1 ] && return 0
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

# say_model DEFAULT [rembgfilter properties...]: one line on stderr naming the model that runs
# (the last model=, else DEFAULT) with what a 720p frame costs it on two CPU cores (measured with
# gst-launch on this project's machines), and for a slow one a second line saying what is faster.
say_model() {
    model_properties "$@"
    local model="$MODEL" backend="$BACKEND" precision="$PRECISION"
    case "$backend" in
        triton | triton-http | sagemaker)
            echo "neuralfx: model $model runs on the server (backend=$backend)" >&2
            return 0
            ;;
    esac
    local cost
    case "$model:$precision" in
        selfie*:*) cost="about 15 ms a 720p frame on two cores" ;;
        u2netp:bf16 | u2netp-int8:*) cost="about 0.15 s a 720p frame on two cores" ;;
        u2netp:*) cost="about 0.25 s a 720p frame on two cores: a minute of 30 fps video takes 8 or more" ;;
        u2net:* | u2net_human_seg:* | silueta:* | isnet-*:*) cost="a second or more a frame on two cores" ;;
        birefnet-* | bria-rmbg:*) cost="several seconds a frame on two cores" ;;
        *) cost="its own speed" ;;
    esac
    echo "neuralfx: model $model ($cost)" >&2
    case "$model" in
        selfie*) ;;
        *) echo "neuralfx: faster: model=selfie (people, about 15 ms), model=u2netp-int8 or" \
            "precision=bf16 on CPUs with bfloat16 (about 0.15 s), or a server (pipelines/remote-cutout.sh)" >&2 ;;
    esac
}
