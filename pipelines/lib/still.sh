# Sourced by the pipelines that read still pictures: decode them as Python rembg (Pillow) does.
#
# still_source FILE prints the gst-launch-1.0 words that decode FILE upright, as Pillow and
# rembg's fix_image_orientation see it; they name the file as "$INPUT" (the caller's eval
# expands it, so no character of a file name is read as pipeline syntax):
# - JPEG through gdkpixbufdec, whose RGB is libjpeg's own, as Pillow's (GStreamer 1.22's jpegdec
#   goes through I420, whose chroma upsampling differs by up to 22/255 in the mask), then turned
#   by its EXIF orientation (1-8), which nothing in GStreamer 1.22 reports for JPEG;
# - anything else through decodebin, with videoflip applying any orientation tag it reports.
still_source() {
    local file="$1"
    if [ "$(head -c 3 "$file" | od -An -tx1 | tr -d ' \n')" = "ffd8ff" ]; then
        local direction
        case "$(jpeg_orientation "$file")" in
            2) direction=horiz ;;
            3) direction=180 ;;
            4) direction=vert ;;
            5) direction=ul-lr ;;
            6) direction=90r ;;
            7) direction=ur-ll ;;
            8) direction=90l ;;
            *) direction=identity ;;
        esac
        echo 'filesrc location="$INPUT"'" ! gdkpixbufdec ! videoflip video-direction=$direction"
    else
        echo 'filesrc location="$INPUT"'" ! decodebin ! videoflip video-direction=auto"
    fi
}

# jpeg_orientation FILE prints the EXIF orientation tag (1-8) of a JPEG, 1 when it has none or
# it cannot be read. Only the first 64 KB are read: EXIF sits in APP1, near the start.
jpeg_orientation() {
    local hex
    hex=$(head -c 65536 "$1" | od -An -v -tx1 | tr -d ' \n')
    # APP1 marker, two length bytes, then "Exif\0\0" and the TIFF header.
    local at=${hex%%ffe1????457869660000*}
    if [ ${#at} = ${#hex} ]; then
        echo 1
        return
    fi
    local tiff=$((${#at} / 2 + 10))
    local order=${hex:tiff*2:4}
    # Reads an unsigned integer of $2 bytes at byte $1 in the TIFF's byte order.
    read_uint() {
        local bytes=${hex:$1*2:$2*2} value=""
        [ ${#bytes} = $(($2 * 2)) ] || { echo -1; return; }
        if [ "$order" = 4949 ]; then
            local i
            for ((i = $2 - 1; i >= 0; i--)); do value+=${bytes:i*2:2}; done
        else
            value=$bytes
        fi
        echo $((16#$value))
    }
    if [ "$order" != 4949 ] && [ "$order" != 4d4d ]; then
        echo 1
        return
    fi
    local ifd entries i entry
    ifd=$(read_uint $((tiff + 4)) 4)
    entries=$(read_uint $((tiff + ifd)) 2)
    [ "$ifd" -ge 8 ] && [ "$entries" -ge 0 ] && [ "$entries" -le 500 ] || { echo 1; return; }
    for ((i = 0; i < entries; i++)); do
        entry=$((tiff + ifd + 2 + i * 12))
        if [ "$(read_uint "$entry" 2)" = 274 ]; then
            local orientation
            orientation=$(read_uint $((entry + 8)) 2)
            if [ "$orientation" -ge 1 ] && [ "$orientation" -le 8 ]; then
                echo "$orientation"
                return
            fi
        fi
    done
    echo 1
}
