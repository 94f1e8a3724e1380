# Sourced by the pipelines that read still pictures: decode them as Python rembg (Pillow) does.
#
# still_source FILE prints the gst-launch-1.0 words that decode FILE upright, as Pillow and
# rembg's fix_image_orientation see it (JPEG, BMP, GIF and TIFF through gdkpixbufdec, turned by
# their orientation tag; anything else through decodebin): see pipelines/lib/still.py, which
# cutout_folder.py also uses. They name the file as "$INPUT" (the caller's eval expands it, so no
# character of a file name is read as pipeline syntax).
still_source() {
    python3 "$(dirname "${BASH_SOURCE[0]}")/still.py" "$1"
}
