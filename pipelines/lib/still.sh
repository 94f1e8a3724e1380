# Sourced by the pipelines that read still pictures: decode them as Python rembg (Pillow) does.
#
# still_source FILE prints the gst-launch-1.0 words that decode FILE upright, as Pillow and
# rembg's fix_image_orientation see it; they name the file as "$INPUT" (the caller's eval
# expands it, so no character of a file name is read as pipeline syntax):
# - JPEG through gdkpixbufdec, whose RGB is libjpeg's own, as Pillow's (GStreamer 1.22's jpegdec
#   goes through I420, whose chroma upsampling differs by up to 22/255 in the mask), then turned
#   by its EXIF orientation (1-8), which nothing in GStreamer 1.22 reports for JPEG;
# - BMP, GIF and TIFF through gdkpixbufdec too: decodebin has no parser for them, so avdec_bmp
#   and avdec_tiff see the file in 4 KiB pieces and decode nothing, and a GIF never ends (first
#   frame or page only, as Pillow opens them; TIFF turned by its orientation tag);
# - anything else (PNG, WebP...) through decodebin, with videoflip applying any orientation tag
#   it reports.
still_source() {
    local file="$1" direction=identity
    case "$(head -c 4 "$file" | od -An -tx1 | tr -d ' \n')" in
        ffd8ff*)
            case "$(jpeg_orientation "$file")" in
                2) direction=horiz ;;
                3) direction=180 ;;
                4) direction=vert ;;
                5) direction=ul-lr ;;
                6) direction=90r ;;
                7) direction=ur-ll ;;
                8) direction=90l ;;
            esac
            ;;
        49492a00 | 4d4d002a)
            # gdk-pixbuf reads TIFF through libtiff, which already mirrors by the orientation
            # tag but cannot rotate: 5-8 come out as 1-4 would. What remains to make them
            # upright is a transpose: along the main diagonal for 5 and 7, the other for 6 and 8.
            case "$(tiff_orientation "$file")" in
                5 | 7) direction=ul-lr ;;
                6 | 8) direction=ur-ll ;;
            esac
            ;;
        424d* | 47494638) ;;
        *)
            echo 'filesrc location="$INPUT"'" ! decodebin ! videoflip video-direction=auto"
            return
            ;;
    esac
    echo 'filesrc location="$INPUT"'" ! gdkpixbufdec ! videoflip video-direction=$direction"
}

# jpeg_orientation FILE prints the EXIF orientation tag (1-8) of a JPEG, 1 when it has none or
# it cannot be read. Only the first 64 KB are searched: EXIF sits in APP1, near the start.
jpeg_orientation() {
    local hex
    hex=$(head -c 65536 "$1" | od -An -v -tx1 | tr -d ' \n')
    # APP1 marker, two length bytes, then "Exif\0\0" and the TIFF header.
    local at=${hex%%ffe1????457869660000*}
    if [ ${#at} = ${#hex} ]; then
        echo 1
        return
    fi
    tiff_orientation "$1" $((${#at} / 2 + 10))
}

# tiff_orientation FILE [START] prints the orientation tag (274, values 1-8) of the TIFF header
# at byte START of FILE (0: a TIFF file; inside a JPEG: its EXIF block), 1 when it has none or
# it cannot be read. The first IFD may sit anywhere in the file, so it is read where it points.
tiff_orientation() {
    local file="$1" tiff="${2:-0}" order
    order=$(od -An -v -tx1 -j "$tiff" -N 2 "$file" | tr -d ' \n')
    if [ "$order" != 4949 ] && [ "$order" != 4d4d ]; then
        echo 1
        return
    fi
    # Reads an unsigned integer of $2 bytes at byte $1 (from the TIFF header) in its byte order.
    read_uint() {
        local bytes value="" i
        bytes=$(od -An -v -tx1 -j $((tiff + $1)) -N "$2" "$file" | tr -d ' \n')
        [ ${#bytes} = $(($2 * 2)) ] || { echo -1; return; }
        if [ "$order" = 4949 ]; then
            for ((i = $2 - 1; i >= 0; i--)); do value+=${bytes:i*2:2}; done
        else
            value=$bytes
        fi
        echo $((16#$value))
    }
    local ifd entries i entry orientation
    ifd=$(read_uint 4 4)
    entries=$(read_uint "$ifd" 2)
    [ "$ifd" -ge 8 ] && [ "$entries" -ge 0 ] && [ "$entries" -le 500 ] || { echo 1; return; }
    for ((i = 0; i < entries; i++)); do
        entry=$((ifd + 2 + i * 12))
        if [ "$(read_uint "$entry" 2)" = 274 ]; then
            orientation=$(read_uint $((entry + 8)) 2)
            if [ "$orientation" -ge 1 ] && [ "$orientation" -le 8 ]; then
                echo "$orientation"
                return
            fi
        fi
    done
    echo 1
}
