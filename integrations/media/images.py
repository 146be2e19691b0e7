"""Opening untrusted images safely: restricted formats, a pixel cap that is an error (not a
warning), EXIF rotation, and the photo's GPS position and capture time when EXIF has them."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from datetime import datetime

from PIL import Image, ImageOps, UnidentifiedImageError

from integrations.media.errors import BadImage

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")  # JPEG covers MPO (phone photos)
DEFAULT_MAX_PIXELS = 40_000_000  # JPEG: decoded at 1/2…1/8 scale (``draft``), so cheap
FULL_DECODE_PIXELS = 16_000_000  # PNG, WebP …: decoded whole (16 Mpx ≈ 48 MB of RGB)
# Pillow's own guard (warning at MAX, error at 2×MAX) is lowered too, for any other caller.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS

NOT_IMAGE = "这不是可识别的图片（支持 JPEG/PNG/WebP）。/ This file is not an image I can read."
TOO_BIG = "图片尺寸过大，请发送普通照片。/ The image is too large; please send a normal photo."


@dataclass
class Photo:
    image: Image.Image  # RGB, upright, possibly downscaled
    width: int  # original size, as the file declared it
    height: int
    gps: tuple[float, float] | None = None  # (lat, lon)
    taken_at: datetime | None = None


def _ratio(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        num, den = v
        return float(num) / float(den) if den else 0.0


def _dms(values, ref) -> float | None:
    try:
        d, m, s = (_ratio(x) for x in values)
    except (TypeError, ValueError):
        return None
    deg = d + m / 60 + s / 3600
    if str(ref).upper().startswith(("S", "W")):
        deg = -deg
    return deg


def exif_gps(im: Image.Image) -> tuple[float, float] | None:
    try:
        gps = im.getexif().get_ifd(0x8825)
    except Exception:  # noqa: BLE001 - broken EXIF must not break the photo
        return None
    if not gps or 2 not in gps or 4 not in gps:
        return None
    lat, lon = _dms(gps[2], gps.get(1, "N")), _dms(gps[4], gps.get(3, "E"))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    if lat == 0 and lon == 0:
        return None
    return round(lat, 6), round(lon, 6)


def exif_time(im: Image.Image) -> datetime | None:
    try:
        raw = im.getexif().get_ifd(0x8769).get(36867)  # DateTimeOriginal
        return datetime.strptime(str(raw).strip("\x00 "), "%Y:%m:%d %H:%M:%S") if raw else None
    except Exception:  # noqa: BLE001
        return None


def open_photo(data: bytes, max_side: int | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """Decode ``data`` into an upright RGB photo, downscaled so its long side ≤ ``max_side``.

    Raises ``BadImage`` for anything that is not a supported image, or whose declared size is
    above ``max_pixels`` (checked from the header, before any pixel is decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=FORMATS)
            w, h = im.size
            if w * h > max_pixels or w <= 0 or h <= 0:
                raise BadImage(f"image of {w}x{h} px is over the cap", TOO_BIG)
            if im.format not in ("JPEG", "MPO") and w * h > min(max_pixels, FULL_DECODE_PIXELS):
                # only JPEG decodes at a fraction of its size; others decode in full first
                raise BadImage(f"{im.format} of {w}x{h} px is over the full-decode cap", TOO_BIG)
            gps, taken = exif_gps(im), exif_time(im)
            if max_side and im.format in ("JPEG", "MPO"):
                im.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4, 1/8 scale: fast
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB")
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"decompression bomb: {exc}", TOO_BIG) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadImage(f"not an image: {exc.__class__.__name__}", NOT_IMAGE) from exc
    if max_side and max(im.size) > max_side:
        s = max_side / max(im.size)
        im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))),
                       Image.LANCZOS)
    return Photo(image=im, width=w, height=h, gps=gps, taken_at=taken)
