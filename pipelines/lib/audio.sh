# Sourced by the pipelines that rewrite a video file: keeps the input's sound.
#
# audio_branch INPUT DECODER MUX CONTAINER sets two variables for a pipeline whose decodebin is
# named DECODER and whose muxer is named MUX (CONTAINER: mp4 or mkv):
#   DECODER_CAPS  where that decodebin stops decoding (its `caps` property)
#   AUDIO_BRANCH  the gst-launch-1.0 words that carry INPUT's audio from DECODER into MUX
# Both are empty when INPUT has no audio. The sound is passed through untouched when the
# container takes its codec (AAC or MP3 in MP4; AAC, MP3, Opus, Vorbis, FLAC, AC-3 in Matroska),
# else decoded and re-encoded (AAC in MP4, FLAC in Matroska). It comes from the same demuxer as
# the video, with the input's timestamps, so it stays in sync.
audio_branch() {
    local input="$1" decoder="$2" mux="$3" container="$4"
    DECODER_CAPS="" AUDIO_BRANCH=""
    local caps codec
    if ! command -v gst-discoverer-1.0 >/dev/null; then
        echo "gst-discoverer-1.0 not found (Debian/Ubuntu: gstreamer1.0-plugins-base-apps): the sound is not kept" >&2
        return 0
    fi
    caps=$(gst-discoverer-1.0 -v "$input" 2>/dev/null | grep -m1 -E '^ *audio #[0-9]+: ' || true)
    [ -n "$caps" ] || return 0
    codec=$(sed -E 's/^ *audio #[0-9]+: ([^,]+).*/\1/' <<<"$caps")
    local passes=0
    case "$container:$codec" in
        mp4:audio/mpeg) passes=1 ;;
        mkv:audio/mpeg | mkv:audio/x-opus | mkv:audio/x-vorbis | mkv:audio/x-flac | mkv:audio/x-ac3 | mkv:audio/x-eac3) passes=1 ;;
    esac
    # An unbounded queue: the sound waits at the muxer for the slower video without ever
    # holding the demuxer, and so the video, back.
    local queue="queue max-size-time=0 max-size-bytes=0 max-size-buffers=0"
    if [ "$passes" = 1 ]; then
        DECODER_CAPS="video/x-raw(ANY);$codec"
        # The codec's parser puts its headers in the caps, which muxers need.
        local parser
        case "$codec" in
            audio/mpeg) parser=aacparse; grep -q 'mpegversion=(int)1' <<<"$caps" && parser=mpegaudioparse ;;
            audio/x-opus) parser=opusparse ;;
            audio/x-vorbis) parser=vorbisparse ;;
            audio/x-flac) parser=flacparse ;;
            *) parser=ac3parse ;;
        esac
        AUDIO_BRANCH="$decoder. ! $codec ! $queue ! $parser ! $mux.audio_%u"
    else
        local encoder="flacenc ! flacparse"
        [ "$container" = mp4 ] && encoder="avenc_aac ! aacparse"
        AUDIO_BRANCH="$decoder. ! audio/x-raw ! $queue ! audioconvert ! audioresample ! $encoder ! $mux.audio_%u"
    fi
}
