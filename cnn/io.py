"""Image files in and out with OpenCV: always uint8 RGB ``(H, W, 3)`` in memory.

OpenCV reads BGR, grey, BGRA, 16-bit and float images; :func:`read_image` turns every one of them
into the one layout the rest of pixgraph expects, and reports a missing, corrupt or truncated file
with an error that names it. :func:`resize` wraps ``cv2.resize`` with named interpolations and a
``(height, width)`` size (numpy order, not OpenCV's ``(width, height)``). :func:`write_image` writes
atomically: a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import cv2
import numpy as np

from engine.files import atomic_open

__all__ = [
    "IMAGE_EXTENSIONS",
    "INTERPOLATIONS",
    "UnreadableImageError",
    "atomic_open",
    "path_error",
    "read_image",
    "resize",
    "to_rgb_uint8",
    "write_image",
]


#: File name suffixes (lower case) that :func:`cnn.datasets.load_dataset` treats as images.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: Interpolation names accepted by :func:`resize` and the OpenCV flags they stand for.
INTERPOLATIONS: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST,
    "nearest_exact": cv2.INTER_NEAREST_EXACT,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
_INTERP_ALIASES = {"bilinear": "linear", "bicubic": "cubic", "lanczos4": "lanczos"}

_RESIZE_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)

# Suffixes whose OpenCV writer stores 16-bit pixels; the others store 8 bits (:func:`write_image`).
#: Formats OpenCV writes with 8 bits per channel only (a uint16 image would be clipped at 255 there).
_EIGHT_BIT_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".webp", ".bmp", ".dib", ".ras", ".sr")


def path_error(path: str | os.PathLike, *, what: str = "file") -> OSError | None:
    """Why ``path`` cannot be reached, as an error to raise: missing, a broken link or a link loop.

    ``os.path.exists`` says ``False`` for all three; this tells them apart, so that a symbolic link
    that points back to itself is reported as a link loop, not as a missing file.

    Args:
        path: the file or folder.
        what: how the message names it (``"image file"``, ``"dataset folder"``).

    Returns:
        ``None`` when ``os.stat(path)`` succeeds; else ``FileNotFoundError`` (missing, or a broken
        link) or ``OSError`` (a link loop, or another reason the OS gives), each with a message that
        names the path, the reason and the fix.

    Example:
        >>> import tempfile
        >>> loop = os.path.join(tempfile.mkdtemp(), "a.png")
        >>> os.symlink(loop, loop)
        >>> print(path_error(loop, what="image file"))  # doctest: +ELLIPSIS
        image file '...a.png' cannot be reached: its path runs into a symbolic link loop ...
    """
    p = os.fspath(path)
    try:
        os.stat(p)
        return None
    except OSError as err:
        code = err.errno
    if code == errno.ELOOP:
        out = OSError(
            f"{what} {p!r} cannot be reached: its path runs into a symbolic link loop (a link that points, "
            f"directly or through other links, back to itself); replace the link by the real {what} or "
            f"point it at one"
        )
    elif os.path.islink(p):
        out = FileNotFoundError(
            f"{what} {p!r} is a broken symbolic link (to {os.readlink(p)!r}, which does not exist); fix or "
            f"remove the link"
        )
    elif code == errno.ENOENT:
        out = FileNotFoundError(f"{what} {p!r} does not exist")
    else:
        out = OSError(f"{what} {p!r} cannot be opened ({os.strerror(code) if code else 'unknown error'})")
    return out


class UnreadableImageError(ValueError):
    """A file exists but is not a readable image (corrupt, truncated, empty or unsupported).

    Attributes:
        path: the file.
        reason: why it cannot be read, without the path (for lists of skipped files).
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path!r} is not a readable image: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # picklable across DataLoader workers
        return (type(self), (self.path, self.reason))


# ----------------------------------------------------------------------------------------------
# Reading


def _jpeg_problem(data: np.ndarray) -> str | None:
    """Why a JPEG byte stream is incomplete, or ``None`` when its structure is whole.

    Walks the marker segments from SOI to the first SOS (start of scan), then requires an EOI marker
    (``FF D9``) after it. Inside entropy-coded data every ``FF`` byte is followed by ``00`` or a restart
    marker, so the first ``FF D9`` after the scan header is the real end of the image; embedded EXIF
    thumbnails sit in segments before SOS and cannot fool the check, and data appended after EOI
    (e.g. motion photos) is allowed. OpenCV 4 decodes truncated JPEGs partially (grey lower half) without
    an error, which is why the check exists.
    """
    buf = data.tobytes()
    n = len(buf)
    pos = 2
    while True:
        if pos + 4 > n:
            return "truncated JPEG: the file ends inside its headers"
        if buf[pos] != 0xFF:
            return "corrupt JPEG: bad marker structure in the headers"
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan
            break
        if marker == 0xD9:
            return "corrupt JPEG: end-of-image marker before any image data"
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            pos += 2
            continue
        pos += 2 + int.from_bytes(buf[pos + 2 : pos + 4], "big")
    if buf.find(b"\xff\xd9", pos + 2) < 0:
        return "truncated JPEG: no end-of-image marker (FF D9) after the image data"
    return None


def to_rgb_uint8(img: np.ndarray, path: str = "<array>", *, bgr: bool = True) -> np.ndarray:
    """A decoded image array (grey, grey+alpha, BGR, BGRA; 8/16-bit or float) -> uint8 RGB, as
    :func:`read_image` converts what OpenCV decodes.

    Grey is repeated into 3 channels, alpha is composited over white, 16-bit values are scaled by
    ``1 / 257``, float values are taken as 0..1 (clipped).

    Args:
        img: ``(H, W)`` or ``(H, W, C)`` with ``C`` in 1..4; uint8, uint16, float32 or float64.
        path: where the array came from, for the error message.
        bgr: ``True`` (OpenCV's order) when colour channels are BGR(A); ``False`` when they are already
            RGB(A) (a PIL image's array, :class:`cnn.transforms.ToRGBImage`).

    Returns:
        ``(H, W, 3)`` uint8 RGB, a new array.

    Raises:
        UnreadableImageError: another channel count or pixel type.

    Example:
        >>> to_rgb_uint8(np.full((1, 1), 65535, np.uint16)).tolist()
        [[[255, 255, 255]]]
        >>> to_rgb_uint8(np.array([[[0, 0, 255]]], np.uint8)).tolist()  # BGR red
        [[[255, 0, 0]]]
    """
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels not in (1, 2, 3, 4):
        raise UnreadableImageError(path, f"unsupported number of channels ({channels})")
    if img.dtype == np.uint8 and channels in (1, 3):
        if channels == 3 and not bgr:
            return np.array(img)  # a writable copy, already RGB
        code = cv2.COLOR_GRAY2RGB if channels == 1 else cv2.COLOR_BGR2RGB
        return cv2.cvtColor(img, code)
    if img.dtype == np.uint8:
        top = 255.0
    elif img.dtype == np.uint16:
        top = 65535.0
    elif img.dtype in (np.float32, np.float64):
        top = 1.0
    else:
        raise UnreadableImageError(path, f"unsupported pixel type {img.dtype} (need 8-bit, 16-bit or float)")
    x = img.astype(np.float32) / np.float32(top)
    if x.ndim == 2:
        x = x[:, :, None]
    if channels in (2, 4):  # composite the colour over a white background
        alpha = np.clip(x[:, :, -1:], 0.0, 1.0)
        x = x[:, :, :-1] * alpha + (1.0 - alpha)
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    elif bgr:
        x = x[:, :, ::-1]  # BGR -> RGB
    return np.ascontiguousarray(np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB.

    Conversions: grey -> RGB (channel repeated); BGR -> RGB; an alpha channel is composited over a
    **white** background (transparent pixels become white, not black); 16-bit images are scaled from the
    full 0..65535 range to 0..255 (``round(v / 257)``; 12-bit data stored in 16 bits therefore looks
    dark: nothing is stretched); float images are taken as 0..1. JPEGs honour their EXIF orientation
    (like every photo viewer); other formats are read as stored.

    Args:
        path: the image file (any format OpenCV decodes: JPEG, PNG, BMP, TIFF, WebP, ...).

    Returns:
        The image.

    Shapes:
        - output: ``(H, W, 3)`` uint8, RGB channel order.

    Raises:
        FileNotFoundError: ``path`` does not exist, or is a broken symbolic link.
        OSError: ``path`` cannot be reached (a symbolic link loop: ``errno.ELOOP``) or opened.
        IsADirectoryError: ``path`` is a folder.
        TypeError: ``path`` is not a str or path-like object.
        UnreadableImageError: (a ``ValueError``) the file is empty, corrupt, truncated (a JPEG without its
            end-of-image marker) or of an unsupported pixel type; the message names the file.

    Example:
        >>> img = read_image("photo.jpg")
        >>> img.shape, img.dtype
        ((480, 640, 3), dtype('uint8'))
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"path must be a file path (a str or pathlib.Path), got {type(path).__name__} {path!r:.60}; "
            "pass the image file's path, e.g. read_image('photo.jpg')"
        )
    p = os.fspath(path)
    missing = path_error(p, what="image file")
    if missing is not None:
        raise missing
    if os.path.isdir(p):
        raise IsADirectoryError(
            f"{p!r} is a folder, not an image file; use cnn.load_dataset to load a folder of images"
        )
    data = np.fromfile(p, dtype=np.uint8)  # np.fromfile + imdecode also works for non-ASCII paths
    if data.size == 0:
        raise UnreadableImageError(p, "the file is empty")
    is_jpeg = data.size >= 3 and data[0] == 0xFF and data[1] == 0xD8 and data[2] == 0xFF
    if is_jpeg:
        problem = _jpeg_problem(data)
        if problem:
            raise UnreadableImageError(p, problem)
    # IMREAD_UNCHANGED keeps alpha and 16 bits but ignores EXIF orientation; JPEGs have neither, so they
    # are decoded as colour, which applies the orientation (grey JPEGs come back with 3 equal channels).
    flags = cv2.IMREAD_COLOR if is_jpeg else cv2.IMREAD_UNCHANGED
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error as err:
        raise UnreadableImageError(p, f"OpenCV failed to decode it ({str(err).strip()[-120:]})") from err
    if img is None or img.size == 0:
        raise UnreadableImageError(p, "OpenCV could not decode it (corrupt file or unsupported format)")
    return to_rgb_uint8(img, p)


# ----------------------------------------------------------------------------------------------
# Resizing


def _interp_flag(interpolation: str | int) -> int:
    if isinstance(interpolation, bool):
        pass
    elif isinstance(interpolation, (int, np.integer)):
        if int(interpolation) in INTERPOLATIONS.values():
            return int(interpolation)
    elif isinstance(interpolation, str):
        key = interpolation.lower()
        key = _INTERP_ALIASES.get(key, key)
        if key in INTERPOLATIONS:
            return INTERPOLATIONS[key]
    raise ValueError(
        f"interpolation={interpolation!r} is not known; use 'auto' or one of "
        f"{', '.join(repr(k) for k in INTERPOLATIONS)} (or the matching cv2.INTER_* flag)"
    )


def _positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and int(value) > 0


def resize(img: np.ndarray, size: int | tuple[int, int], *, interpolation: str | int = "auto") -> np.ndarray:
    """Resize an image with OpenCV.

    Args:
        img: the image (any number of channels; uint8, uint16, int16, float32 or float64). OpenCV's
            area interpolation handles at most 4 channels: more are resized 4 at a time.
        size: an ``int`` sets the **shorter side** to ``size`` and keeps the aspect ratio (like
            ``torchvision.transforms.Resize(int)``); a pair is the exact ``(height, width)`` output,
            in numpy order (``cv2.resize`` itself takes ``(width, height)``; this function swaps them).
        interpolation: ``"auto"`` (``"area"`` when shrinking both sides, the best anti-aliasing for
            downsampling; ``"linear"`` otherwise), ``"nearest"``, ``"nearest_exact"``, ``"linear"``,
            ``"cubic"``, ``"area"``, ``"lanczos"`` (``"bilinear"``/``"bicubic"`` are accepted as
            aliases), or a ``cv2.INTER_*`` flag.

    Returns:
        A new array with the same dtype and number of channels.

    Shapes:
        - input: ``(H, W)`` or ``(H, W, C)``.
        - output: ``(h, w)`` or ``(h, w, C)``.

    Raises:
        ValueError: bad ``size`` or unknown ``interpolation`` (the message lists the known ones).
        TypeError: ``img`` is not a numpy image of a dtype OpenCV resizes.

    Example:
        >>> small = resize(np.zeros((480, 640, 3), np.uint8), 240)
        >>> small.shape
        (240, 320, 3)
        >>> resize(small, (100, 50), interpolation="nearest").shape
        (100, 50, 3)
    """
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3) or img.size == 0:
        shape = getattr(img, "shape", None)
        raise TypeError(
            f"img must be a non-empty numpy array of shape (H, W) or (H, W, C), got "
            f"{type(img).__name__} with shape {shape}"
        )
    if img.dtype.type not in _RESIZE_DTYPES:
        raise TypeError(
            f"img has dtype {img.dtype}, which cv2.resize does not handle; convert it first, e.g. "
            "img.astype(np.float32) (supported: uint8, uint16, int16, float32, float64)"
        )
    h, w = img.shape[:2]
    if _positive_int(size):
        s = int(size)  # type: ignore[arg-type]
        if h <= w:
            out_h, out_w = s, max(1, int(round(w * s / h)))
        else:
            out_h, out_w = max(1, int(round(h * s / w))), s
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(_positive_int(v) for v in size):
        out_h, out_w = int(size[0]), int(size[1])
    else:
        raise ValueError(
            f"size={size!r} is not understood; pass a positive int (the shorter side) or a "
            "(height, width) pair of positive ints"
        )
    if isinstance(interpolation, str) and interpolation.lower() == "auto":
        flag = cv2.INTER_AREA if (out_h <= h and out_w <= w) else cv2.INTER_LINEAR
    else:
        flag = _interp_flag(interpolation)
    src = np.ascontiguousarray(img)
    if flag == cv2.INTER_AREA and src.ndim == 3 and src.shape[2] > 4:  # cv2's area resize: <= 4 channels
        chunks = [
            resize(src[:, :, i : i + 4], (out_h, out_w), interpolation=flag)
            for i in range(0, src.shape[2], 4)
        ]
        return np.concatenate(chunks, axis=2)
    out = cv2.resize(src, (out_w, out_h), interpolation=flag)
    if img.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis
        out = out[:, :, None]
    return out


# ----------------------------------------------------------------------------------------------
# Writing


def write_image(path: str | os.PathLike, img: np.ndarray, *, quality: int | None = None) -> Path:
    """Write an RGB (or grey, or RGBA) image atomically; the format follows the file suffix.

    The bytes go to a temporary file in the destination folder, which is then renamed over ``path``
    (``os.replace``), so an interrupted write never leaves a half-written file or destroys the old one.
    Missing parent folders are created.

    Args:
        path: destination; its suffix picks the format (``.png``, ``.jpg``, ``.webp``, ``.bmp``, ``.tif``).
        img: uint8 or uint16 pixels, or float pixels in ``[0, 1]`` (clipped, scaled to uint8; e.g. the
            output of :func:`cnn.transforms.to_display`). Channel order is RGB(A), as :func:`read_image`
            returns it. uint16 is passed on to OpenCV for every format that can hold it (PNG, TIFF,
            PNM, JPEG 2000, ...); the 8-bit-only formats (JPEG, WebP, BMP, Sun raster) get it scaled
            to uint8 as :func:`read_image` scales it (``round(v / 257)``), so 65535 is written as 255
            and 40000 as 156 (not clipped to 255).
        quality: JPEG / WebP quality 1..100 (OpenCV's default, 95, when ``None``).

    Returns:
        The written path.

    Shapes:
        - img: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA.

    Raises:
        ValueError: unknown suffix, bad shape, bad ``quality``, or NaN / inf pixels in a float ``img``.
        TypeError: ``img`` is not a numpy array of a supported dtype.

    Example:
        >>> write_image("out/cat.png", np.full((32, 32, 3), 200, np.uint8))
        PosixPath('out/cat.png')
    """
    p = Path(os.fspath(path))
    if not isinstance(img, np.ndarray):
        raise TypeError(f"img must be a numpy array, got {type(img).__name__}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))) or img.size == 0:
        raise ValueError(f"img must have shape (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")
    if img.dtype.kind == "f":
        finite = np.isfinite(img)
        if not finite.all():
            bad = np.argwhere(~finite)
            raise ValueError(
                f"img contains {len(bad)} NaN or infinite value(s) (first at index "
                f"{tuple(bad[0].tolist())}); an image file cannot store them (they would be written as 0): "
                f"replace them first, e.g. "
                f"np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0), or find where they come from"
            )
        img = np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif img.dtype not in (np.uint8, np.uint16):
        raise TypeError(
            f"img has dtype {img.dtype}; write uint8, uint16 or float in [0, 1] "
            "(convert with img.astype(np.uint8) after scaling to 0..255)"
        )
    suffix = p.suffix.lower()
    if not suffix or not cv2.haveImageWriter("x" + suffix):
        raise ValueError(
            f"cannot write {str(p)!r}: no image writer for suffix {p.suffix!r}; use one of "
            ".png, .jpg, .jpeg, .webp, .bmp, .tif, .tiff"
        )
    if img.dtype == np.uint16 and suffix in _EIGHT_BIT_SUFFIXES:  # OpenCV would clip it to 255
        img = np.rint(img / 257.0).astype(np.uint8)
    params: list[int] = []
    if quality is not None:
        if not _positive_int(quality) or int(quality) > 100:
            raise ValueError(f"quality must be an int in 1..100, got {quality!r}")
        if suffix in (".jpg", ".jpeg"):
            params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        elif suffix == ".webp":
            params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
        else:
            raise ValueError(f"quality only applies to .jpg/.jpeg/.webp files, not {p.suffix!r}")
    if img.ndim == 3:
        code = cv2.COLOR_RGB2BGR if img.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        img = cv2.cvtColor(np.ascontiguousarray(img), code)
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(img), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {img.dtype} image of shape {img.shape} as {suffix}")
    with atomic_open(p) as fh:
        fh.write(buf.tobytes())
    return p
