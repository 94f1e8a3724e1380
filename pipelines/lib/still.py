"""Decode still pictures as Python rembg (Pillow) does: `source(path)` gives the gst-launch-1.0
words that decode a file upright, as Pillow and rembg's fix_image_orientation see it; they name
the file as "$INPUT" (the caller substitutes it, so no character of a file name is read as
pipeline syntax):

- JPEG through gdkpixbufdec, whose RGB is libjpeg's own, as Pillow's (GStreamer 1.22's jpegdec
  goes through I420, whose chroma upsampling differs by up to 22/255 in the mask), then turned by
  its EXIF orientation (1-8), which nothing in GStreamer 1.22 reports for JPEG;
- BMP, GIF and TIFF through gdkpixbufdec too: decodebin has no parser for them, so avdec_bmp and
  avdec_tiff see the file in 4 KiB pieces and decode nothing, and a GIF never ends (first frame
  or page only, as Pillow opens them; TIFF turned by its orientation tag);
- anything else (PNG, WebP...) through decodebin, with videoflip applying any orientation tag it
  reports.

Run as `still.py FILE` it prints them (pipelines/lib/still.sh does, for the shell scripts).
"""
import struct
import sys

# EXIF orientation (1-8) -> videoflip's video-direction that makes a JPEG upright.
JPEG_DIRECTIONS = {2: "horiz", 3: "180", 4: "vert", 5: "ul-lr", 6: "90r", 7: "ur-ll", 8: "90l"}
# gdk-pixbuf reads TIFF through libtiff, which already mirrors by the orientation tag but cannot
# rotate: 5-8 come out as 1-4 would. What remains to make them upright is a transpose: along the
# main diagonal for 5 and 7, the other for 6 and 8.
TIFF_DIRECTIONS = {5: "ul-lr", 7: "ul-lr", 6: "ur-ll", 8: "ur-ll"}
# Only the start of a JPEG is searched for EXIF: it sits in APP1, near the start.
EXIF_SEARCH_BYTES = 65536
# More entries than any real first IFD has: the header is not one.
MAX_IFD_ENTRIES = 500


def tiff_orientation(read, tiff=0):
    """The orientation tag (274, values 1-8) of the TIFF header at byte `tiff` (0: a TIFF file;
    inside a JPEG: its EXIF block), 1 when it has none or it cannot be read; `read(offset, size)`
    gives the bytes there (fewer past the end). The first IFD may sit anywhere in the file, so it
    is read where it points."""
    order = read(tiff, 2)
    if order not in (b"II", b"MM"):
        return 1
    endian = "<" if order == b"II" else ">"

    def uint(at, size):
        data = read(tiff + at, size) if at >= 0 else b""
        if len(data) != size:
            return -1
        return struct.unpack(endian + ("H" if size == 2 else "I"), data)[0]

    ifd = uint(4, 4)
    entries = uint(ifd, 2)
    if ifd < 8 or not 0 <= entries <= MAX_IFD_ENTRIES:
        return 1
    for index in range(entries):
        entry = ifd + 2 + index * 12
        if uint(entry, 2) == 274:
            orientation = uint(entry + 8, 2)
            if 1 <= orientation <= 8:
                return orientation
    return 1


def jpeg_orientation(head):
    """The EXIF orientation tag (1-8) of a JPEG whose first bytes are `head`, 1 when it has none
    or it cannot be read."""
    at = 0
    while True:
        # APP1 marker, two length bytes, then "Exif\0\0" and the TIFF header.
        at = head.find(b"\xff\xe1", at)
        if at < 0:
            return 1
        if head[at + 4:at + 10] == b"Exif\0\0":
            return tiff_orientation(lambda offset, size: head[offset:offset + size], at + 10)
        at += 2


DECODEBIN = 'filesrc location="$INPUT" ! decodebin ! videoflip video-direction=auto'


def source(path):
    """The gst-launch-1.0 words that decode the picture at `path` upright (see the module). A
    file that cannot be read goes to decodebin, whose error names it."""
    try:
        return sniffed_source(path)
    except OSError:
        return DECODEBIN


def sniffed_source(path):
    with open(path, "rb") as picture:
        head = picture.read(EXIF_SEARCH_BYTES)

        def read(offset, size):
            picture.seek(offset)
            return picture.read(size)

        direction = "identity"
        if head[:3] == b"\xff\xd8\xff":
            direction = JPEG_DIRECTIONS.get(jpeg_orientation(head), "identity")
        elif head[:4] in (b"II*\0", b"MM\0*"):
            direction = TIFF_DIRECTIONS.get(tiff_orientation(read), "identity")
        elif head[:2] != b"BM" and head[:4] != b"GIF8":
            return DECODEBIN
    return f'filesrc location="$INPUT" ! gdkpixbufdec ! videoflip video-direction={direction}'


if __name__ == "__main__":
    print(source(sys.argv[1]))
