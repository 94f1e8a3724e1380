# Sourced by the pipelines that run gst-launch-1.0.
#
# gst_launch ARGS... runs `gst-launch-1.0 ARGS`, passing its output on as it comes (stdout to
# stdout, stderr to stderr), and returns its status.
#
# Why not gst-launch-1.0 alone: GStreamer 1.22's gst-launch handles an error in its bus's sync
# handler, which asks the main loop to stop. An error raised while the pipeline is still being
# set to PAUSED (a file that is not a picture or a video: typefind says so at once) asks a main
# loop that is not running yet, and gst-launch then waits forever after printing the error.
# Under load about one run in twenty did (measured: 5 of 100 with 4 runs side by side on 2
# cores, with rembgfilter or without it). So a run that has printed an error and still runs
# two seconds later is ended here, with status 1. (The output is also copied to a temporary
# file, where the error is looked for: unlinked at once, written and read through the shell's
# own handle on it, /dev/fd/N, so nothing is left behind whenever the run ends.)
gst_launch() {
    local log copy status=0
    log=$(mktemp)
    exec {copy}>>"$log"
    rm -f "$log"
    gst-launch-1.0 "$@" > >(tee -a "/dev/fd/$copy") 2> >(tee -a "/dev/fd/$copy" >&2) &
    local pid=$! tenths_since_error=0
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$tenths_since_error" -gt 0 ] || grep -q '^ERROR: ' "/dev/fd/$copy"; then
            tenths_since_error=$((tenths_since_error + 1))
            if [ "$tenths_since_error" -gt 20 ]; then
                kill "$pid" 2>/dev/null || true
                break
            fi
        fi
        sleep 0.1
    done
    wait "$pid" || status=$?
    exec {copy}>&-
    if [ "$tenths_since_error" -gt 20 ]; then
        return 1
    fi
    return "$status"
}
