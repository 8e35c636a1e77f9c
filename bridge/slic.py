"""SLIC superpixels for a whole batch of images at once, in torch (``method="slic_torch"``).

scikit-image's :func:`~skimage.segmentation.slic` segments one image at a time and spends about
33 ms on a 224x224 image (10 iterations) on one CPU core, twice the forward pass of a small backbone.
This module runs the same algorithm on a ``(B, H, W, C)`` batch with tensor operations only (about
1.7 ms per 224x224 image in batches of 32 with one CPU thread; ``benchmarks/README.md``):

1. a working copy, area-averaged ``downsample`` times smaller per side when superpixels are large
   enough (:func:`auto_downsample`: 2 for 224 px and 75 segments; whole factors summed row pairs
   first in the channels-last layout, :func:`_shrink`), optional Gaussian
   pre-smoothing (``sigma``), every image stretched to ``[0, 1]`` by its own minimum and maximum
   over all channels, then colour to CIELAB (RGB) or the intensity as is (grayscale), as
   scikit-image does (so ``compactness`` means the same at any contrast; 8-bit images at full
   resolution through per-image tables of their 256 levels, :func:`_level_colour`); a batch of grey images
   given as RGB (``R = G = B``) is segmented on CIELAB's ``L`` alone, with the same labels but for
   float near-ties (none in the 11,045 grey images of elpv, mnist5k and digits);
2. scikit-image's initial grid (:func:`_seeds_per_side`: ``gh x gw`` centres, 81 for 75 asked on a
   square image), one cell of ``ceil(H / gh) x ceil(W / gw)`` working pixels per centre (cells
   start at ``floor(k * H / gh)``, so neighbours share under one pixel where ``H / gh`` is not
   whole);
3. ``max_iter`` k-means iterations on a coarser copy with ``cell_px`` pixels per cell side: every
   pixel compares itself only with the centres of its own cell and the 8 cells around it (the
   local search of SLIC, as in the GPU implementation gSLICr), with SLIC's distance
   ``d_lab^2 + (compactness / S)^2 * d_xy^2`` where ``S = sqrt(H * W / n_segments)``: the pixels of
   every cell times its 9 candidate centres is one batched matrix product (:func:`_nearest`), and
   the new centres are the means of their pixels (one ``index_add_``, :func:`_update`);
4. one assignment of every pixel of the working copy to the converged centres (the same product);
5. connectivity, in torch on the batch's device (:func:`_connect`): 4-connected components of
   the whole batch at once (min-label hooking and pointer jumping over horizontal runs of equal
   ids, a few iterations), components under ``min_size_factor * H * W / n_segments`` pixels merged
   into the region visited before them, as scikit-image does (one pass: the region above their
   first pixel), ids made contiguous per image in raster order;
6. each full-resolution pixel takes the label of its block of the working copy
   (:func:`repeat_blocks`; :func:`slic_batch_blocks` stops before it, and
   :meth:`bridge.convert.ImageToGraph.batch_tensor` takes the label runs and region borders from
   the small map, :func:`bridge.edges.repeat_runs`).

Every step is torch on the device of the images (CPU or CUDA, the same code): a batch given as a
CUDA tensor is segmented on the GPU and its labels come back as a CUDA tensor; NumPy images give
NumPy labels. Where the global settings would round float32 products (TF32 on a GPU, as Lightning
suggests there and cuDNN's convolutions do by default; bfloat16 on any device), the distances' matrix
products and the blur are computed in float64 instead (:func:`cnn.fusion.exact_float32`), so those
settings cannot move pixels by whole colour steps; float64 rounding still differs from float32's at
near-ties, like another device's. Float sums may round
differently on another device, thread count or torch version (on a GPU, ``index_add_`` also sums in
a varying order), so labels can differ there at rare near-ties; :data:`VERSION` changes with the
algorithm, not with rounding.

The result follows the contract of :func:`bridge.segmentation.superpixels`: ids ``0 .. N-1``, each
one 4-connected region. Segments differ from scikit-image's in detail (another implementation,
iterations on a coarse copy, 2-px borders at 224 px), not in kind: on the benchmark photos (224 px,
75 asked) both start from the same 81 centres; scikit-image keeps 60.8 superpixels on average and
this module 64.4 (the coarse iterations leave fewer small pieces to merge), with a colour RMS inside
a superpixel of 11.8 against 11.5 (version 6). On a flat image both keep every centre.
``benchmarks/bench_slic_parity.py`` compares them over sizes and counts.

Example:
    >>> import numpy as np
    >>> from skimage.data import astronaut, chelsea
    >>> from skimage.transform import resize
    >>> imgs = np.stack([resize(im, (224, 224)) for im in (astronaut(), chelsea())]).astype(np.float32)
    >>> labels = slic_batch(imgs, n_segments=75)
    >>> labels.shape, labels.dtype
    ((2, 224, 224), dtype('int64'))
"""

from __future__ import annotations

import math
from typing import overload

import numpy as np
import torch
import torch.nn.functional as F

from cnn.fusion import exact_float32

from .checks import (
    check_compactness,
    check_n_segments,
    check_positive_int,
    check_sigma,
    check_size,
    is_grey_rgb,
)

__all__ = [
    "VERSION",
    "auto_downsample",
    "block_sums",
    "repeat_blocks",
    "rgb_to_lab",
    "slic_batch",
    "slic_batch_blocks",
]

#: Version of the algorithm's results: the ``version`` of the ``slic_torch`` entry of the segmentation
#: table (:mod:`bridge.segmentation`), so part of the cache key of graphs built with it. Version 6
#: (2026-12-07) stretches every image's contrast as scikit-image does; version 5 segmented it as given.
VERSION = 6

# sRGB (D65) -> XYZ, divided by the D65 white point, so that white maps to (1, 1, 1).
_WHITE = (0.95047, 1.0, 1.08883)
_RGB2XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)


def rgb_to_lab(rgb: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """sRGB in ``[0, 1]`` to CIELAB (D65, 2 degree observer).

    Same formulae as :func:`skimage.color.rgb2lab` (agrees to about 1e-3 in float32).

    Args:
        rgb: float tensor in ``[0, 1]`` with 3 channels along ``dim``.
        dim: the channel axis (``-1`` channels last, ``1`` for ``(B, 3, H, W)``).

    Returns:
        tensor of the same shape: L in ``[0, 100]``, a and b roughly in ``[-128, 127]``.

    Example:
        >>> lab = rgb_to_lab(torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]))
        >>> lab.round().abs().tolist()  # white; red
        [[100.0, 0.0, 0.0], [53.0, 80.0, 67.0]]
    """
    if rgb.shape[dim] != 3:
        raise ValueError(f"rgb_to_lab needs 3 channels along dim {dim}, got shape {tuple(rgb.shape)}")
    return _lab_of_linear(_linear(rgb), dim)


def _lab_of_linear(lin: torch.Tensor, dim: int) -> torch.Tensor:
    """:func:`rgb_to_lab` from linear light (:func:`_linear` of the sRGB values), 3 channels along ``dim``."""
    r, g, b = lin.unbind(dim)
    fx, fy, fz = (_lab_f(_mix(r, g, b, k)) for k in range(3))
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=dim)


def _linear(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB's gamma undone: linear light of ``[0, 1]`` values, any shape."""
    # x^2.4 as exp(2.4 log x): about twice as fast as pow on the CPU; log(0) = -inf gives 0
    # in place where possible: the same operations with fewer temporaries
    power = (rgb + 0.055).div_(1.055).log_().mul_(2.4).exp_()
    return torch.where(rgb > 0.04045, power, rgb / 12.92)


def _mix(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """Row ``k`` of XYZ (0, 1, 2 = X, Y, Z) of linear RGB, divided by the white point's."""
    row, white = _RGB2XYZ[k], _WHITE[k]
    return (r * (row[0] / white)).add_(g, alpha=row[1] / white).add_(b, alpha=row[2] / white)


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    """CIELAB's companding of ``X / Xn``, ``Y / Yn`` or ``Z / Zn``: the cube root above ``(6/29)^3``."""
    eps = (6.0 / 29.0) ** 3
    cube = t.clamp_min(eps).log_().div_(3.0).exp_()
    return torch.where(t > eps, cube, t.div(3 * (6.0 / 29.0) ** 2).add_(4.0 / 29.0))


def _grey_lightness(grey: torch.Tensor) -> torch.Tensor:
    """CIELAB ``L`` of RGB pixels with ``R = G = B = grey``: the same operations as :func:`rgb_to_lab`,
    so the same values. Their ``a`` and ``b`` are not computed: under 0.005 in size (nonzero only by the
    rounded D65 white point) and proportional to ``L``'s companded value, they change a squared colour
    distance between greys by about 2e-9 of itself, under float32's resolution."""
    lin = _linear(grey)
    return 116.0 * _lab_f(_mix(lin, lin, lin, 1)) - 16.0


def _level_colour(x: torch.Tensor, lo: torch.Tensor, span: torch.Tensor) -> torch.Tensor | None:
    """The stretched CIELAB working copy of 8-bit images from per-image tables of their 256 levels.

    Images made from uint8 (:func:`bridge.segmentation.as_float_batch` divides by 255) hold at most
    256 values, ``k / 255``. Each image's levels are stretched (``(v - lo) / span``) and taken through
    :func:`_linear` (colour) or :func:`_grey_lightness` (one channel) once, and every pixel reads its
    level's entry: the same elementwise operations on the same values as on the pixels, so the same
    results, with the gamma's (colour) or all of ``L``'s (grey) logarithms and exponentials on 256
    values per image instead of every pixel. ``None`` when some pixel is not such a level (a blur, an
    area-averaged working copy, float images): the caller then converts every pixel.

    Shapes:
        - x: ``(B, C, H, W)`` float32 with ``C`` 1 (grey) or 3 (RGB), unstretched
        - lo, span: ``(B, 1, 1, 1)``, each image's minimum and range
        - output: ``(B, C, H, W)`` float32, ``L`` (grey) or ``L, a, b``; or ``None``
    """
    b, c = x.shape[:2]
    flat = x.reshape(b, -1)
    levels = torch.arange(256, dtype=torch.float32, device=x.device).div_(255.0)  # as_float_batch's k / 255

    def level_ids(v: torch.Tensor) -> torch.Tensor:
        return v.mul(255.0).round_().clamp_(0.0, 255.0).to(torch.int64)

    head = flat[:, :64]  # a few pixels of every image first: float images return after reading them
    if not torch.equal(levels.take(level_ids(head)), head):
        return None
    idx = level_ids(flat)
    if not torch.equal(levels.take(idx), flat):
        return None
    table = levels.expand(b, -1).sub(lo.view(b, 1)).div_(span.view(b, 1))  # (B, 256), stretched
    if c == 1:
        return torch.gather(_grey_lightness(table), 1, idx).view_as(x)
    return _lab_of_linear(torch.gather(_linear(table), 1, idx).view_as(x), 1)


def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)``, edge pixels repeated (``truncate=4``); in float64
    where float32 convolutions would be TF32 / bfloat16 (cuDNN's default on a GPU), so that a GPU blurs
    like the CPU up to float rounding."""
    if x.dtype == torch.float32 and not exact_float32(x.device, "conv"):
        return _gaussian(x.double(), sigma).float()
    radius = max(1, int(4.0 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _seeds_per_side(height: int, width: int, n_segments: int) -> tuple[int, int]:
    """Rows and columns of scikit-image's initial grid of SLIC centres for an image of this size.

    scikit-image (``skimage.util.regular_grid``) seeds every ``round(s)`` pixels from ``s // 2``, with
    ``s = sqrt(height * width / n_segments)``; a side shorter than ``s`` gets one seed and the other
    side ``s = long / n_segments``. So ``ceil((side - s // 2) / round(s))`` seeds per side: 81 for 75
    asked on a square image of 64, 160 or 224 px.

    Example:
        >>> _seeds_per_side(224, 224, 75), _seeds_per_side(64, 64, 75), _seeds_per_side(8, 400, 10)
        ((9, 9), (9, 9), (1, 10))
    """
    short, long_ = sorted((height, width))
    step_short = step_long = math.sqrt(height * width / n_segments)
    if short < step_short:
        step_short, step_long = float(short), long_ / n_segments
    steps = (step_short, step_long) if height <= width else (step_long, step_short)

    def count(side: int, step: float) -> int:
        start, stride = int(step // 2), max(1, round(step))
        return max(1, math.ceil((side - start) / stride))

    return count(height, steps[0]), count(width, steps[1])


def _cell_pixels(
    size: int, n: int, cell: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixels of ``n`` cells of ``cell`` pixels along a side of ``size``, cell ``k`` starting at
    ``floor(k * size / n)`` (the last one ending at ``size - 1``), and where each pixel is found.

    Returns:
        ``(n * cell,)`` pixel index of every cell's pixels; ``(size,)`` the cell of every pixel (the
        one that starts last before it) and ``(size,)`` its offset in that cell.

    Example:
        >>> pixels, owner, offset = _cell_pixels(10, 3, 4, torch.device("cpu"))
        >>> pixels.tolist(), owner.tolist(), offset.tolist()
        ([0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9], [0, 0, 0, 1, 1, 1, 2, 2, 2, 2], [0, 1, 2, 0, 1, 2, 0, 1, 2, 3])
    """
    k = torch.arange(n, device=device)
    start = ((k * size) // n).clamp_max_(size - cell)
    pixels = (start.view(n, 1) + torch.arange(cell, device=device)).view(-1)
    p = torch.arange(size, device=device)
    owner = torch.searchsorted(start, p, right=True) - 1
    return pixels, owner, p - start.index_select(0, owner)


def _cell_features(
    x: torch.Tensor,
    gh: int,
    gw: int,
    ys: torch.Tensor,
    xs: torch.Tensor,
    *,
    relative: bool = True,
    cell_major: bool = False,
) -> torch.Tensor:
    """Pixels of ``(B, C, gh * ch, gw * cw)`` grouped by grid cell, as the columns of a matrix per cell.

    Rows: the ``C`` colour channels, then ``y`` and ``x`` (``ys`` ``(gh, ch)`` and ``xs`` ``(gw, cw)``:
    scaled coordinates of every pixel row and column), relative to the first pixel of the cell unless
    ``relative=False``, then the pixel's squared norm ``|p|^2`` (absolute coordinates), then a row of
    ones; cells in the order ``(b, row, column)``, pixels in raster order.

    With ``cell_major=True``, ``x`` is ``(B, C, gh * gw * ch * cw)``: the pixels of every cell in a row,
    cells in raster order (a gathered copy).

    Shapes:
        - x: ``(B, C, gh * ch, gw * cw)``; ys: ``(gh, ch)``; xs: ``(gw, cw)``
        - output: ``(B * gh * gw, C + 4, ch * cw)``
    """
    if cell_major:  # (B, C, gh * gw * ch * cw): the pixels already grouped cell by cell
        b, c = x.shape[:2]
        ch, cw = ys.shape[1], xs.shape[1]
        pixels = x.view(b, c, gh, gw, ch, cw).permute(0, 2, 3, 1, 4, 5)
    else:
        b, c, h, w = x.shape
        ch, cw = h // gh, w // gw
        pixels = x.view(b, c, gh, ch, gw, cw).permute(0, 2, 4, 1, 3, 5)
    feat = x.new_empty(b, gh, gw, c + 4, ch, cw)
    feat[:, :, :, :c] = pixels
    norm = feat[:, :, :, c + 2]
    torch.mul(feat[:, :, :, 0], feat[:, :, :, 0], out=norm)
    for k in range(1, c):
        norm.addcmul_(feat[:, :, :, k], feat[:, :, :, k])
    norm += (ys * ys).view(1, gh, 1, ch, 1)
    norm += (xs * xs).view(1, 1, gw, 1, cw)
    if relative:
        ys, xs = ys - ys[:, :1], xs - xs[:, :1]
    feat[:, :, :, c] = ys.view(1, gh, 1, ch, 1)
    feat[:, :, :, c + 1] = xs.view(1, 1, gw, 1, cw)
    feat[:, :, :, c + 3] = 1.0
    return feat.view(b * gh * gw, c + 4, ch * cw)


def _candidates(centres: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The 9 centres around every cell as rows ``w`` with ``w . [colour, y, x, |p|^2, 1] = |c - p|^2``.

    ``centres``: ``(D, B, gh + 2, gw + 2)`` (colour, y, x; a border of far-away centres); ``y0``
    ``(gh,)`` and ``x0`` ``(gw,)``: the coordinates of the first pixel of each cell row and column,
    the origin of the pixels' relative coordinates (:func:`_cell_features`). Candidate ``o`` of a
    cell is the centre ``(dy, dx) = divmod(o, 3)`` of the padded grid around it.

    Shapes:
        - centres: ``(D, B, gh + 2, gw + 2)``
        - output: ``(B * gh * gw, 9, D + 2)``
    """
    d, b, gp, wp = centres.shape
    gh, gw = gp - 2, wp - 2
    cand = torch.stack([centres[:, :, dy : dy + gh, dx : dx + gw] for dy in range(3) for dx in range(3)], -1)
    # |c - p|^2 = |c|^2 - 2 c.p + |p|^2, with p = p_rel + (y0, x0) for y and x; |c|^2 summed row by row
    # (products, then additions: every element rounds alike): sum(0) rounds some elements differently
    # with the batch size, so an image's labels depended on the batch it came in
    const = cand[0] * cand[0]
    for k in range(1, d):
        const += cand[k] * cand[k]
    const -= 2.0 * y0.view(1, gh, 1, 1) * cand[d - 2] + 2.0 * x0.view(1, 1, gw, 1) * cand[d - 1]
    rows = torch.cat([cand * -2.0, torch.ones_like(const).unsqueeze(0), const.unsqueeze(0)])
    return rows.permute(1, 2, 3, 4, 0).reshape(b * gh * gw, 9, d + 2)


#: Distances computed at once by :func:`_nearest` on the CPU (float32 elements: 1 MiB stays in its cache).
_NEAREST_CHUNK = 1 << 18


def _nearest(feat: torch.Tensor, cand: torch.Tensor, *, exact: bool = True) -> torch.Tensor:
    """Index ``0..8`` of the nearest candidate centre of every pixel.

    One batched matrix product gives the 9 squared distances of every pixel. Non-negative floats
    order like their bit patterns as integers, so the candidate's index is written into the 4 lowest
    mantissa bits and one integer minimum over the 9 picks the nearest (distances that agree to
    about 2e-6 relative count as equal; then the first of them wins, as for exact ties). Cells are
    taken in chunks of about ``_NEAREST_CHUNK`` distances. ``exact=False`` (float32 products would be
    TF32 or bfloat16, :func:`cnn.fusion.exact_float32`) computes the products in float64: the expanded
    distance cancels, and TF32 operands moved about 5 % of the pixels of photos to another centre.

    Shapes:
        - feat: ``(N, D + 2, P)``; cand: ``(N, 9, D + 2)``
        - output: ``(N, P)`` int32
    """
    n, _, p = feat.shape
    index = torch.arange(9, dtype=torch.int32, device=feat.device).view(1, 9, 1)
    out = torch.empty(n, p, dtype=torch.int32, device=feat.device)
    # cells per chunk: on the CPU its distances stay in the cache; on a GPU one chunk does it all
    step = n if feat.is_cuda else max(1, _NEAREST_CHUNK // (9 * p))
    for i in range(0, n, step):
        if exact:
            dist = torch.bmm(cand[i : i + step], feat[i : i + step])
        else:
            dist = torch.bmm(cand[i : i + step].double(), feat[i : i + step].double()).float()
        dist = dist.clamp_min_(0.0).view(torch.int32)
        dist.bitwise_and_(~15).bitwise_or_(index)  # (chunk, 9, P)
        torch.amin(dist, 1, out=out[i : i + step])
    return out.bitwise_and_(15)


def _centre_ids(arg: torch.Tensor, gh: int, gw: int, *, cell_major: bool = False) -> torch.Tensor:
    """``(B, gh, ch, gw, cw)`` (``cell_major``: ``(B, gh, gw, ch, cw)``) choices ``0..8`` -> ids in the
    padded ``(gh + 2) x (gw + 2)`` grid."""
    gp = gw + 2
    dev = arg.device
    rows, cols = torch.arange(gh, device=dev) * gp, torch.arange(gw, device=dev)
    cell = rows.view(gh, 1, 1, 1) + (cols.view(1, gw, 1, 1) if cell_major else cols.view(1, 1, gw, 1))
    offs = torch.tensor([dy * gp + dx for dy in range(3) for dx in range(3)], device=dev)
    # index_select with the int32 choices: 4x faster than indexing with a long copy (torch 2.14 CPU)
    return offs.index_select(0, arg.reshape(-1)).view(arg.shape) + cell


def _update(
    rows: torch.Tensor, cells: torch.Tensor, offs: torch.Tensor, arg: torch.Tensor, old: torch.Tensor
) -> torch.Tensor:
    """New centres = mean of their pixels; centres that lost every pixel keep their place.

    ``rows`` are the pixels' features with absolute coordinates as rows (:func:`_cell_features` given
    absolute ``ys``, ``xs``, transposed once: ``feat.transpose(1, 2).reshape(-1, D + 2)``); every
    pixel's row is added to its centre of the padded grid with one ``index_add_`` (the row of ones
    counts the pixels). ``cells``, ``offs``: :func:`_padded_cells` of the grid (the padded id of every
    cell's top-left neighbour, and the offset of each of the 9 candidates from it).

    Shapes:
        - rows: ``(B * gh * gw * P, D + 2)``; cells: ``(B * gh * gw, 1)``; offs: ``(9,)``;
          arg: ``(B * gh * gw, P)``; old: ``(D, B, gh + 2, gw + 2)``
        - output: ``(D, B, gh + 2, gw + 2)``
    """
    d, b, gp, wp = old.shape
    ids = (offs.index_select(0, arg.reshape(-1)).view(arg.shape) + cells).reshape(-1)
    sums = rows.new_zeros(b * gp * wp, d + 2).index_add_(0, ids, rows)
    n = sums[:, d + 1 :]
    new = (sums[:, :d] / n.clamp_min(1.0)).T.reshape(d, b, gp, wp)
    return torch.where(n.T.reshape(1, b, gp, wp) > 0, new, old)


def _padded_cells(b: int, gh: int, gw: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Id of the top-left neighbour of every cell ``(b, row, column)`` in the ``(gh + 2) x (gw + 2)``
    padded grid of every image, and the offsets of the 9 candidates from it (candidate ``(dy, dx)`` is
    that id ``+ dy * (gw + 2) + dx``).

    Shapes:
        - output: ``(B * gh * gw, 1)`` and ``(9,)`` int64
    """
    gp, wp = gh + 2, gw + 2
    base = torch.arange(b, device=device).view(b, 1, 1) * gp + torch.arange(gh, device=device).view(1, gh, 1)
    offs = torch.tensor([dy * wp + dx for dy in range(3) for dx in range(3)], device=device)
    return (base * wp + torch.arange(gw, device=device).view(1, 1, gw)).reshape(-1, 1), offs


_FAR = -1.0e4  # coordinate of the absent centres around the grid (never the nearest)


def _padded_centres(inner: torch.Tensor) -> torch.Tensor:
    """``(C + 2, B, gh, gw)`` -> ``(C + 2, B, gh + 2, gw + 2)``; the border centres sit far away."""
    out = F.pad(inner, (1, 1, 1, 1), value=0.0)
    border = torch.ones(out.shape[-2:], dtype=torch.bool, device=out.device)
    border[1:-1, 1:-1] = False
    out[-2:, :, border] = _FAR
    return out


#: Iterations of :func:`_components` between two convergence checks (each check is a host sync).
_CHECK_EVERY = 2
#: Iterations of :func:`_components` with hooking alone before propagation is added (never reached on
#: the graphs measured: at most 12 iterations on paths of 200,000 nodes in any order).
_HOOK_ONLY = 64


def _components(u: torch.Tensor, v: torch.Tensor, n: int) -> torch.Tensor:
    """Connected components of an undirected graph: every node's smallest node id in its component.

    Every node has a label (its ``parent``: a node of its component, never larger than the node).
    Each iteration, for every edge ``u[i] -- v[i]`` the larger of the two end labels takes the
    smaller one as its own label (hooking), then every node jumps twice to its parent's parent
    (pointer jumping). This takes about ``log2`` of the graph's diameter iterations (4 on the run
    graphs of :func:`_connect`, 12 on a path of 200,000 nodes in random order). After
    ``_HOOK_ONLY`` iterations ``u`` and ``v`` also take the smaller label (propagation), which makes
    every label at most the smallest id within ``t`` edges after ``t`` more iterations: ``n`` more
    always suffice, so the cap is never reached. Convergence (the same label at both ends of every
    edge) is checked every ``_CHECK_EVERY`` iterations only (a host sync on a GPU).

    Shapes:
        - u, v: ``(E,)`` int64 node ids in ``0 .. n-1``
        - output: ``(n,)`` int64
    """
    parent = torch.arange(n, device=u.device)
    limit = _HOOK_ONLY + n + _CHECK_EVERY
    for step in range(limit):
        lu, lv = parent.index_select(0, u), parent.index_select(0, v)
        if step % _CHECK_EVERY == 0 and torch.equal(lu, lv):
            break
        lo, hi = torch.minimum(lu, lv), torch.maximum(lu, lv)
        if step >= _HOOK_ONLY:
            hi, lo = torch.cat([hi, u, v]), lo.repeat(3)
        parent = parent.scatter_reduce(0, hi, lo, "amin")
        parent = parent.index_select(0, parent)
        parent = parent.index_select(0, parent)
    else:
        raise RuntimeError(
            f"connected components did not converge in {limit} iterations on a graph of {n} nodes and "
            f"{u.numel()} edges; this is a bug in bridge.slic, please report it"
        )
    # every node now leads to the smallest node of its component: jump until every parent is a root
    while True:
        up = parent.index_select(0, parent)
        if torch.equal(up, parent):
            return parent
        parent = up


def _connect(labels: torch.Tensor, min_size: int) -> torch.Tensor:
    """4-connected, contiguous ids per image; components under ``min_size`` px merge into a neighbour.

    Torch on the device of ``labels``: one code path for CPU and CUDA, a few host syncs (the sizes
    of ``nonzero`` and the convergence checks of :func:`_components`). The graph work is done on
    horizontal runs of equal ids (numbered in raster order), not on pixels:

    1. two runs of adjacent rows overlap iff at some column of the overlap one of them starts, so
       the pixel pairs ``(p, p - W)`` where ``p`` or ``p - W`` starts a run give every vertical
       neighbour pair of runs;
    2. components: :func:`_components` over the vertical pairs of equal ids; a component is named by
       its first run, so names follow the raster order of first pixels;
    3. one pass of merging with scikit-image's choice of neighbour, the region visited before: every
       component under ``min_size`` pixels joins the group of the pixel above its first pixel (on
       the first row: of the pixel below when that component starts earlier, else of the pixel to
       the left); when the image's first component is small, the first large one joins it. Every
       link points to an earlier component, so a group (:func:`_components` of the links) is named
       by its first component. scikit-image takes the last visited neighbour met in its
       breadth-first search of the component, usually the same region (merging into the largest
       neighbour instead, before 2026-12-02, kept MNIST strokes in purer superpixels);
    4. groups are numbered per image from 0 in raster order of their first pixel.

    Shapes:
        - labels: ``(B, H, W)`` int64 (any ids)
        - output: ``(B, H, W)`` int64 with ids ``0 .. N_b - 1`` per image
    """
    b, h, w = labels.shape
    dev, i64 = labels.device, torch.int64
    flat = labels.reshape(-1)
    # 1. runs (pixel-level run numbers in int32 where they fit: half the memory traffic)
    starts = torch.ones(labels.shape, dtype=torch.bool, device=dev)
    starts[:, :, 1:] = labels[:, :, 1:] != labels[:, :, :-1]
    run_of = torch.cumsum(starts.view(-1), 0, dtype=torch.int32 if flat.numel() < 2**31 else i64)
    run_of -= 1
    first_px = torch.nonzero(starts.view(-1)).squeeze(1)
    n = first_px.numel()
    length = torch.diff(first_px, append=first_px.new_full((1,), flat.numel()))
    joint = torch.zeros(labels.shape, dtype=torch.bool, device=dev)
    joint[:, 1:] = starts[:, 1:] | starts[:, :-1]
    low = torch.nonzero(joint.view(-1)).squeeze(1)  # lower pixels of the vertical pairs
    lo_run = run_of.index_select(0, low).to(i64)
    up_run = run_of.index_select(0, low - w).to(i64)
    same = flat.index_select(0, low) == flat.index_select(0, low - w)
    # 2. components, named by their first run
    pick = torch.nonzero(same).squeeze(1)
    comp = _components(lo_run.index_select(0, pick), up_run.index_select(0, pick), n)
    size = torch.zeros(n, dtype=i64, device=dev).index_add_(0, comp, length)
    # 3. every small component joins the group of the pixel above its first pixel (on the first row:
    #    of the pixel below when that belongs to an earlier component, else of the pixel to the left);
    #    the image's first component has none: when small, the first large component joins it
    names = torch.nonzero(comp == torch.arange(n, device=dev)).squeeze(1)  # runs that name a component
    small = size.index_select(0, names) < min_size
    p = first_px.index_select(0, names)
    y, x = torch.div(p % (h * w), w, rounding_mode="floor"), p % w
    above = comp.index_select(0, run_of.index_select(0, (p - w).clamp_min(0)).to(i64))
    below = comp.index_select(0, run_of.index_select(0, (p + w).clamp_max(flat.numel() - 1)).to(i64))
    left = comp.index_select(0, run_of.index_select(0, (p - 1).clamp_min(0)).to(i64))
    target = torch.where(x > 0, left, names)
    target = torch.where((y == 0) & (h > 1) & (below < names), below, target)
    target = torch.where(y > 0, above, target)
    joins = torch.where(small, target, names)
    image_first = run_of.index_select(0, torch.arange(b, device=dev) * (h * w)).to(i64)
    first_name = comp.index_select(0, image_first)  # the first component of every image
    large_key = torch.where(small, torch.full_like(names, n), names)
    image = torch.div(p, h * w, rounding_mode="floor")
    first_large = names.new_full((b,), n).scatter_reduce_(0, image, large_key, "amin")
    lone = (first_large < n) & (size.index_select(0, first_name) < min_size)
    # groups: components of the links (each to an earlier component, so named by their first one)
    u = torch.cat([names, first_large[lone]])
    v = torch.cat([joins, first_name[lone]])
    group = _components(u, v, n).index_select(0, comp)  # of each run
    # 4. a group is named by its first run; number the groups of every image from 0
    count = torch.cumsum(group == torch.arange(n, device=dev), 0)
    final = count.index_select(0, group) - count.index_select(0, image_first).index_select(
        0, first_px // (h * w)
    )
    return final.index_select(0, run_of).view(b, h, w)


def _area(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Area-averaged resize of ``(B, C, H, W)`` to ``(h, w)`` (``F.interpolate(mode="area")``).

    Whole factors up to 4 per side are summed block by block in the order of the general kernel
    (rows of the window, then columns; then divided by the two factors), which gives the same values
    several times faster on the CPU.
    """
    hin, win = x.shape[-2:]
    if (hin, win) == (h, w):
        return x
    fy, fx = hin // h, win // w
    if hin != h * fy or win != w * fx or fy * fx > 16:
        return F.interpolate(x, size=(h, w), mode="area")
    blocks = x.view(*x.shape[:-2], h, fy, w, fx)
    out = blocks[..., 0, :, 0].clone()
    for dy in range(fy):
        for dx in range(fx):
            if dy or dx:
                out += blocks[..., dy, :, dx]
    return out.div_(fy).div_(fx)


def block_sums(x: torch.Tensor, fy: int, fx: int, dims: tuple[int, int] = (1, 2)) -> torch.Tensor:
    """Sums of every ``fy x fx`` block over the two axes ``dims`` (rows, then columns) of a tensor of
    any strides, as a new contiguous tensor (``x`` itself when both factors are 1): the rows of every
    block are added first (one strided pass per row of the block, the first two with
    ``torch.add(..., out=)``), then its columns.

    Shapes:
        - x: ``(..., H, ..., W, ...)`` with ``H`` and ``W`` at ``dims``, multiples of ``fy`` and ``fx``
        - output: the same with ``H / fy`` and ``W / fx`` there

    Example:
        >>> block_sums(torch.arange(16.0).view(1, 4, 4, 1), 2, 2)[0, ..., 0].tolist()
        [[10.0, 18.0], [42.0, 50.0]]
    """
    dy_dim, dx_dim = dims

    def step(t: torch.Tensor, dim: int, f: int) -> torch.Tensor:
        def part(k: int) -> torch.Tensor:  # row (column) k of every block
            return t[(slice(None),) * dim + (slice(k, None, f),)]

        if f == 1:
            return t
        shape = list(t.shape)
        shape[dim] //= f
        out = torch.empty(shape, dtype=t.dtype, device=t.device)
        torch.add(part(0), part(1), out=out)
        for k in range(2, f):
            out += part(k)
        return out

    return step(step(x, dy_dim, fy), dx_dim, fx)


def _shrink(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Area-averaged resize of a contiguous channels-last ``(B, H, W, C)`` batch by whole factors
    ``H / h`` and ``W / w``, returned as a contiguous ``(B, C, h, w)``.

    The rows of every window are summed first, then its columns (:func:`block_sums`: strided reads of
    the channels-last batch written into contiguous channel planes, each sum one pass); the same means
    as :func:`_area` up to float rounding, several times faster on the CPU than windows read across the
    channels-last layout.
    """
    fy, fx = x.shape[1] // h, x.shape[2] // w
    return block_sums(x.permute(0, 3, 1, 2), fy, fx, dims=(2, 3)).mul_(1.0 / (fy * fx))


def auto_downsample(height: int, width: int, n_segments: int, *, min_side: int = 12) -> int:
    """The working-resolution factor of :func:`slic_batch`: as large as possible while a superpixel
    keeps at least ``min_side`` pixels per side (1 = full resolution).

    Example:
        >>> auto_downsample(224, 224, 75), auto_downsample(32, 32, 75), auto_downsample(512, 512, 75)
        (2, 1, 4)
    """
    step = math.sqrt(height * width / n_segments)
    return max(1, int(step // min_side))


@overload
def slic_batch(
    images: np.ndarray,
    *,
    n_segments: int = ...,
    compactness: float = ...,
    max_iter: int = ...,
    sigma: float = ...,
    min_size_factor: float = ...,
    downsample: int | None = ...,
    cell_px: int = ...,
) -> np.ndarray: ...


@overload
def slic_batch(
    images: torch.Tensor,
    *,
    n_segments: int = ...,
    compactness: float = ...,
    max_iter: int = ...,
    sigma: float = ...,
    min_size_factor: float = ...,
    downsample: int | None = ...,
    cell_px: int = ...,
) -> torch.Tensor: ...


def slic_batch(
    images: np.ndarray | torch.Tensor,
    *,
    n_segments: int = 75,
    compactness: float = 10.0,
    max_iter: int = 5,
    sigma: float = 0.0,
    min_size_factor: float = 0.5,
    downsample: int | None = None,
    cell_px: int = 4,
) -> np.ndarray | torch.Tensor:
    """SLIC superpixels of a batch of equally sized images, ``(B, H, W)`` label maps.

    Args:
        images: ``(B, H, W, C)`` float in ``[0, 1]``, ``C`` = 3 (RGB, segmented in CIELAB; when
            every pixel of the batch has ``R = G = B``, on ``L`` alone, which gives the same labels
            faster but for float near-ties) or 1 (grayscale, segmented on the intensity, as
            scikit-image does); NumPy, or a tensor on any device (everything, connectivity
            included, runs on that device).
        n_segments: superpixels asked for (the grid has about this many cells; fewer may remain).
        compactness: SLIC's balance of colour (Lab units for RGB) and space, same meaning as in
            :func:`skimage.segmentation.slic`: both stretch each image to ``[0, 1]`` by its own
            minimum and maximum first, so a dim or low-contrast copy of an image gets the same
            superpixels.
        max_iter: k-means iterations on the coarse copy (scikit-image does 10 on the full image;
            on the benchmark photos 5 and 10 give the same colour homogeneity within 1 %).
        sigma: Gaussian pre-smoothing width in full-resolution pixels (0 = none).
        min_size_factor: components smaller than this fraction of ``H * W / n_segments`` pixels
            are merged into the region above their first pixel (scikit-image's choice).
        downsample: segment an area-averaged copy ``downsample`` times smaller per side and give
            every pixel the label of its block (borders exact to ``downsample`` pixels). ``None``
            picks :func:`auto_downsample` (2 for 224 px and 75 segments, 1 for small images);
            ``1`` = borders at full resolution.
        cell_px: the iterations run on a copy with at most this many pixels per cell side; the
            final assignment uses the working resolution. Larger = slower, closer to plain SLIC.

    Returns:
        ``(B, H, W)`` int64 of the input's kind: a NumPy array for NumPy images, a tensor on the
        images' device for a tensor; each image's ids are ``0 .. N_b - 1``, each a 4-connected
        region, numbered in raster order of their first pixel.

    Raises:
        ValueError: not a float ``(B, H, W, C)`` batch, empty, or more segments than pixels.

    Shapes:
        - images: ``(B, H, W, C)``
        - output: ``(B, H, W)``

    Example:
        >>> img = np.zeros((1, 32, 64, 3), np.float32); img[0, :, 32:] = 1.0
        >>> lab = slic_batch(img, n_segments=2)
        >>> np.unique(lab[0, :, :32]).tolist(), np.unique(lab[0, :, 32:]).tolist()
        ([0], [1])
    """
    labels, fy, fx = slic_batch_blocks(
        images,
        n_segments=n_segments,
        compactness=compactness,
        max_iter=max_iter,
        sigma=sigma,
        min_size_factor=min_size_factor,
        downsample=downsample,
        cell_px=cell_px,
    )
    labels = repeat_blocks(labels, fy, fx)
    return labels.numpy() if isinstance(images, np.ndarray) else labels


def slic_batch_blocks(
    images: np.ndarray | torch.Tensor,
    *,
    n_segments: int = 75,
    compactness: float = 10.0,
    max_iter: int = 5,
    sigma: float = 0.0,
    min_size_factor: float = 0.5,
    downsample: int | None = None,
    cell_px: int = 4,
) -> tuple[torch.Tensor, int, int]:
    """:func:`slic_batch` before its last step: the labels of the working copy when every pixel of a
    whole ``fy x fx`` block of the image takes its block's label, and ``(fy, fx)``.

    ``repeat_blocks(labels, fy, fx)`` is :func:`slic_batch`'s result (a tensor on the images'
    device). Statistics that only need the runs, borders and counts of the full-resolution map
    (:func:`bridge.edges.repeat_runs`, :func:`bridge.edges.batch_touching_pairs` with ``blocks``)
    are computed on the ``fy * fx`` times smaller map. Where the working size does not divide the
    image (or ``downsample=1``), the full-resolution labels come back with ``(1, 1)``.

    Args:
        images, n_segments, compactness, max_iter, sigma, min_size_factor, downsample, cell_px: as
            for :func:`slic_batch`.

    Returns:
        ``(labels, fy, fx)``: ``(B, H / fy, W / fx)`` int64 tensor on the images' device (NumPy
        images: on the CPU), ids ``0 .. N_b - 1`` per image, and the block size.

    Shapes:
        - images: ``(B, H, W, C)``
        - labels: ``(B, H / fy, W / fx)``

    Example:
        >>> img = torch.zeros(1, 224, 224, 3); img[0, :, 112:] = 1.0
        >>> labels, fy, fx = slic_batch_blocks(img, n_segments=75)
        >>> tuple(labels.shape), (fy, fx), torch.equal(repeat_blocks(labels, fy, fx), slic_batch(img))
        ((1, 112, 112), (2, 2), True)
    """
    if isinstance(images, np.ndarray) and any(step < 0 for step in images.strides):
        images = np.ascontiguousarray(images)  # e.g. a flipped view imgs[:, :, ::-1]: torch refuses those
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or not x.is_floating_point():
        raise ValueError(
            f"images must be a float (B, H, W, C) batch with C in {{1, 3}}, got {x.dtype} {tuple(x.shape)}"
        )
    b, h, w, c = x.shape
    if b == 0 or h == 0 or w == 0:
        raise ValueError(f"images is empty (shape {tuple(x.shape)}); expected at least one pixel")
    n_segments = check_n_segments(n_segments)
    check_compactness(compactness)
    check_sigma(sigma)
    cell_px = check_positive_int(cell_px, "cell_px")
    if isinstance(max_iter, (bool, np.bool_)) or not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise ValueError(f"max_iter must be an int >= 0, got {max_iter!r}")
    max_iter = int(max_iter)
    check_size(h, w, n_segments)
    x, dev = x.detach(), x.device
    # grey images given as RGB (R = G = B in every image): a and b are below float32's resolution of
    # their distances (_grey_lightness), so they are segmented on L alone, one channel from here on
    # (the same labels but for float near-ties, with a third of the colour work)
    grey = is_grey_rgb(x)
    factor = auto_downsample(h, w, n_segments) if downsample is None else int(downsample)
    if factor < 1:
        raise ValueError(f"downsample must be >= 1 or None, got {downsample!r}")
    # scikit-image stretches every image to [0, 1] (its min and max over all channels) before the
    # colour conversion, so that compactness means the same at any contrast; an affine map commutes
    # with the area averaging and the blur below, so it is applied to the working copy, except for
    # float64 images, stretched first (a contrast under float32's resolution would round away)
    if x.dtype != torch.float64:
        x = x.to(torch.float32)
    # the layout picks the averaging below (_shrink or _area, which round differently): the input's,
    # also when only its first channel is kept
    contiguous = x.is_contiguous()
    if grey and sigma == 0:  # with a blur, after it: a blur of one channel may round unlike one of three
        x, c = (x[..., :1].contiguous() if contiguous else x[..., :1]), 1
    flat = x.flatten(1)
    lo, hi = flat.amin(1), flat.amax(1)  # 20x faster than aminmax(dim=1) on the CPU (torch 2.14)
    # the extremes are the finiteness check: a NaN propagates through amin and amax, an infinity is one
    if not bool((torch.isfinite(lo) & torch.isfinite(hi)).all()):
        raise ValueError("images contain NaN or infinite values; expected finite values in [0, 1]")
    # a division, not a multiplication by 1 / span: 1 / span overflows for a subnormal span
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi)).view(b, 1, 1, 1)
    lo = lo.view(b, 1, 1, 1)
    stretched = x.dtype == torch.float64
    if stretched:
        x = ((x - lo) / span).to(torch.float32)
    # working resolution (hs, ws); coordinates below stay in full-resolution pixels
    hs, ws = max(1, math.ceil(h / factor)), max(1, math.ceil(w / factor))
    whole = h % hs == 0 and w % ws == 0 and (h // hs) * (w // ws) <= 16
    if sigma == 0 and (hs, ws) != (h, w) and whole and contiguous:
        x = _shrink(x, hs, ws)  # (B, C, hs, ws), contiguous channel planes
    else:
        x = x.permute(0, 3, 1, 2)
        if sigma > 0:
            x = _gaussian(x, float(sigma))
        if (hs, ws) != (h, w):
            x = _area(x, hs, ws)
        x = x.contiguous()
    # at full resolution without a blur, 8-bit images are converted level by level (the same values)
    lab = None
    if not stretched and sigma == 0 and (hs, ws) == (h, w) and (grey or c == 3):
        lab = _level_colour(x, lo, span)
    if lab is not None:
        x = lab
    else:
        if not stretched:
            x = x.sub(lo).div_(span)  # a new tensor: x may still be the caller's images
        if grey and c == 3:  # blurred as three channels: L alone if they are still equal
            grey = is_grey_rgb(x.movedim(1, -1))
            x, c = (x[:, :1], 1) if grey else (x, c)
        if grey:
            x = _grey_lightness(x)
        elif c == 3:
            x = rgb_to_lab(x, dim=1)
    # scikit-image's initial grid: gh x gw cells of ch x cw working pixels, cell k starting at
    # floor(k * hs / gh) (the last one ending at the edge), so neighbouring cells share under one
    # pixel when hs / gh is not whole; every pixel is assigned in the cell that starts last before it
    gh, gw = _seeds_per_side(h, w, n_segments)
    gh, gw = min(gh, hs), min(gw, ws)
    ch, cw = math.ceil(hs / gh), math.ceil(ws / gw)
    rows, row_cell, row_off = _cell_pixels(hs, gh, ch, dev)
    cols, col_cell, col_off = _cell_pixels(ws, gw, cw, dev)
    ratio = float(compactness) / math.sqrt(h * w / n_segments)
    sy, sx = h / hs, w / ws  # full-resolution pixels per working pixel
    # iterations on an area-averaged copy with lch x lcw pixels per cell
    lch, lcw = min(ch, cell_px), min(cw, cell_px)
    low = _area(x, gh * lch, gw * lcw)
    ys = (
        (torch.arange(gh * lch, dtype=torch.float32, device=dev) + 0.5) * (hs / (gh * lch)) * sy - 0.5
    ) * ratio
    xs = (
        (torch.arange(gw * lcw, dtype=torch.float32, device=dev) + 0.5) * (ws / (gw * lcw)) * sx - 0.5
    ) * ratio
    ys, xs = ys.view(gh, lch), xs.view(gw, lcw)
    # (B * gh * gw, C + 4, lch * lcw) with absolute coordinates (origin 0)
    feat = _cell_features(low, gh, gw, ys, xs, relative=False)
    # initial centres as the original SLIC seeds them: at the middle of every cell (the mean of its
    # coordinates), with the colour of the working pixel there (not the cell's mean colour: a seed on
    # a thin stroke starts as stroke, not as a blend of stroke and background)
    middle = x.index_select(2, rows.view(gh, ch)[:, ch // 2]).index_select(3, cols.view(gw, cw)[:, cw // 2])
    place = feat[:, c : c + 2].mean(2).view(b, gh, gw, 2).permute(3, 0, 1, 2)  # (2, B, gh, gw)
    centres = _padded_centres(torch.cat([middle.permute(1, 0, 2, 3), place]))
    zero_y, zero_x = ys.new_zeros(gh), xs.new_zeros(gw)
    exact = exact_float32(dev)  # else the distances' products in float64 (TF32 would move pixels)
    if max_iter:  # loop invariants: the pixels' rows and their cells' ids in the padded grid
        rows_t = feat.transpose(1, 2).reshape(-1, feat.shape[1])  # colour, y, x, |p|^2, 1
        cell_ids, offs = _padded_cells(b, gh, gw, dev)
    for _ in range(max_iter):
        arg = _nearest(feat, _candidates(centres, zero_y, zero_x), exact=exact)
        centres = _update(rows_t, cell_ids, offs, arg, centres)
    # final assignment of every pixel of the working copy, cell by cell
    ys = (((rows.to(torch.float32) + 0.5) * sy - 0.5) * ratio).view(gh, ch)
    xs = (((cols.to(torch.float32) + 0.5) * sx - 0.5) * ratio).view(gw, cw)
    y0, x0 = ys[:, 0].contiguous(), xs[:, 0].contiguous()
    cand = _candidates(centres, y0, x0)
    if gh * ch == hs and gw * cw == ws:  # the cells tile the working copy
        arg = _nearest(_cell_features(x, gh, gw, ys, xs), cand, exact=exact)
        arg = arg.view(b, gh, gw, ch, cw).permute(0, 1, 3, 2, 4)  # (B, gh, ch, gw, cw)
        ids = _centre_ids(arg, gh, gw).reshape(b, hs, ws)
    else:  # one gather of the cells' pixels, cell by cell; every pixel read back from its cell
        pix = (rows.view(gh, 1, ch, 1) * ws + cols.view(1, gw, 1, cw)).view(-1)
        # gathered as (B * C, H * W) rows: index_select along the last of three dims is ~5x slower, and
        # along dim 1 of two ~2.5x slower than gather with the index expanded (torch 2.14 CPU; same values)
        planes = x.reshape(-1, hs * ws)
        cells = torch.gather(planes, 1, pix.expand(planes.shape[0], -1)).view(b, -1, pix.numel())
        arg = _nearest(_cell_features(cells, gh, gw, ys, xs, cell_major=True), cand, exact=exact)
        ids = _centre_ids(arg.view(b, gh, gw, ch, cw), gh, gw, cell_major=True).reshape(b, -1)
        cell = row_cell.view(-1, 1) * gw + col_cell.view(1, -1)
        own = (cell * ch + row_off.view(-1, 1)) * cw + col_off.view(1, -1)
        ids = torch.gather(ids, 1, own.view(1, -1).expand(b, -1)).view(b, hs, ws)
    ids = ids.contiguous()
    min_size = max(1, int(min_size_factor * hs * ws / n_segments))
    labels = _connect(ids, min_size)
    if h % hs == 0 and w % ws == 0:  # every pixel takes its block's label (keeps regions 4-connected)
        return labels, h // hs, w // ws
    rows = ((torch.arange(h, device=dev) * hs) // h).clamp_max_(hs - 1)
    cols = ((torch.arange(w, device=dev) * ws) // w).clamp_max_(ws - 1)
    src = (rows * ws).view(h, 1) + cols.view(1, w)
    return labels.view(b, hs * ws).gather(1, src.view(1, h * w).expand(b, h * w)).view(b, h, w), 1, 1


def repeat_blocks(labels: torch.Tensor, fy: int, fx: int) -> torch.Tensor:
    """Every label of ``(B, h, w)`` repeated over a block of ``fy x fx`` pixels: ``(B, h * fy, w * fx)``.

    Example:
        >>> repeat_blocks(torch.tensor([[[0, 1]]]), 2, 2).tolist()
        [[[0, 0, 1, 1], [0, 0, 1, 1]]]
    """
    if fx != 1:  # whole rows repeated after columns: 2x faster than one expanded copy
        labels = labels.repeat_interleave(fx, dim=2)
    if fy != 1:
        labels = labels.repeat_interleave(fy, dim=1)
    return labels
