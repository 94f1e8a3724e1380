# Sourced by the pipelines that run gst-launch-1.0.
#
# gst_launch LOG ARGS... runs `gst-launch-1.0 ARGS` with its output (stdout and stderr) written
# to the file LOG, and also passed on as it comes (stdout to stdout, stderr to stderr) when
# GST_LAUNCH_SHOW is set; it returns gst-launch's status.
#
# Why not gst-launch-1.0 alone: GStreamer 1.22's gst-launch handles an error in its bus's sync
# handler, which asks the main loop to stop. An error raised while the pipeline is still being
# set to PAUSED (a file that is not a picture or a video: typefind says so at once) asks a main
# loop that is not running yet, and gst-launch then waits forever after printing the error.
# Under load about one run in twenty did (measured: 5 of 100 with 4 runs side by side on 2
# cores, with rembgfilter or without it). So a run that has printed an error and still runs
# two seconds later is ended here, with status 1.
gst_launch() {
    local log=$1
    shift
    : >"$log"
    if [ -n "${GST_LAUNCH_SHOW:-}" ]; then
        gst-launch-1.0 "$@" > >(tee -a "$log") 2> >(tee -a "$log" >&2) &
    else
        gst-launch-1.0 "$@" >"$log" 2>&1 &
    fi
    local pid=$! tenths_since_error=0
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$tenths_since_error" -gt 0 ] || grep -q '^ERROR: ' "$log"; then
            tenths_since_error=$((tenths_since_error + 1))
            if [ "$tenths_since_error" -gt 20 ]; then
                kill "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
                return 1
            fi
        fi
        sleep 0.1
    done
    wait "$pid"
}
