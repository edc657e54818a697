"""cluttered60 / cluttered112: the mnist5k digits, translated onto a larger canvas among clutter.

The protocol of Mnih, Heess, Graves and Kavukcuoglu, "Recurrent Models of Visual Attention"
(NeurIPS 2014), section 4.1: each 28x28 digit goes at a uniformly random position, wholly inside
the canvas, and 8x8 fragments cut from *other* digits go at random positions as clutter. The
paper's Table 2 (trained on the 60,000 MNIST training digits, ours on 4,000):

* 60x60 with 4 fragments: 2-layer convolutional network 8.09 % error, its attention model (RAM,
  8 glimpses) 4.04 %;
* 100x100 with 8 fragments: convolutional network 14.35 %, RAM (8 glimpses) 8.11 %.

Ours:

* the digits and their fixed 4,000 / 1,000 split are mnist5k's (`Mnist5k`); a canvas of the test
  split holds a held-out digit and clutter cut from held-out digits only;
* `cluttered60`: 60x60, 4 fragments, as the paper;
* `cluttered112`: 112x112 (4 x 28, and divisible by 16, so every family's patch grid and U-Net
  stages tile it; the crossover sweep in benchmarks/ times 28, 60, 112 and 224 px) with 16
  fragments: the 60x60 density (4 per 3,600 px, 7.1 % of the canvas) at 12,544 px is 14, rounded
  up to 16 (8.2 %), where the paper's 100x100 with 8 thinned it to 5.1 %;
* a fragment shows stroke, not blank margin: its crop is drawn uniformly among the 8x8 crops of
  the source digit with at least 4 pixels at half intensity (a blank corner would be no clutter);
* 2 canvases per training digit (8,000), each with its own position and clutter, so a digit is
  not tied to one position or one clutter layout; one per test digit (1,000);
* overlaps keep the brighter pixel (max), as ink over ink.

Canvases are generated once per process (about a second; `lru_cache`), kept as uint8 (29 MB at
60 px, 100 MB at 112 px for the training split) and normalised with MNIST's mean and std per item.
Each item is dict(inputs=(1, S, S) float, data_samples=label); `boxes` holds each digit's ink box
on its canvas and `clutter_boxes` each fragment's box, as (x0, y0, x1, y1) pixel edges.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import torch
from mmengine.registry import DATASETS
from torch.utils.data import Dataset

from .generated import check_int, check_split, evenly_spaced, stream
from .mnist5k import MNIST_MEAN, MNIST_STD, Mnist5k

__all__ = ["ClutteredMnist", "Layout", "generate", "digit_pixels", "paste", "ink_boxes", "GENERATOR_VERSION"]

DIGIT = 28
GENERATOR_VERSION = 1      # bump when the canvases change for the same parameters
INK, MIN_INK = 128, 4      # a fragment has >= MIN_INK pixels >= INK (of 255)
MAX_REDRAWS = 1000


class Layout(NamedTuple):
    """Where everything on the canvases came from; indices are into the split's digits."""
    digit: torch.Tensor        # (N,) the digit of each canvas
    pos: torch.Tensor          # (N, 2) its top-left corner on the canvas, (y, x)
    clutter_from: torch.Tensor  # (N, F) the digit each fragment is cut from (never the canvas's own)
    crop: torch.Tensor         # (N, F, 2) the fragment's top-left corner in that digit, (y, x)
    clutter_pos: torch.Tensor  # (N, F, 2) the fragment's top-left corner on the canvas, (y, x)


def digit_pixels(split: str) -> torch.Tensor:
    """mnist5k's digits of `split` as (D, 28, 28) uint8, the 0-255 pixels they were decoded from."""
    images = Mnist5k(split).images[:, 0]
    return (images * MNIST_STD[0] + MNIST_MEAN[0]).mul(255).round().clamp(0, 255).to(torch.uint8)


def paste(canvas: torch.Tensor, patches: torch.Tensor, pos: torch.Tensor) -> None:
    """canvas[n, y:y+h, x:x+w] = max(itself, patches[n]) for every n, (y, x) = pos[n]."""
    n, h, w = patches.shape
    rows = (pos[:, 0, None] + torch.arange(h))[:, :, None]
    cols = (pos[:, 1, None] + torch.arange(w))[:, None, :]
    idx = torch.arange(n)[:, None, None]
    canvas[idx, rows, cols] = torch.maximum(canvas[idx, rows, cols], patches)


def _crops(pixels: torch.Tensor, src: torch.Tensor, corner: torch.Tensor, size: int) -> torch.Tensor:
    """(M, size, size) crops of pixels[src] at corner (M, 2)."""
    rows = (corner[:, 0, None] + torch.arange(size))[:, :, None]
    cols = (corner[:, 1, None] + torch.arange(size))[:, None, :]
    return pixels[src[:, None, None], rows, cols]


def _stroke_crops(pixels, src, size, gen):
    """A corner for each crop of pixels[src], uniform among the crops showing stroke (redrawn
    until each does), and the crops."""
    corner = torch.randint(0, DIGIT - size + 1, (len(src), 2), generator=gen)
    for _ in range(MAX_REDRAWS):
        crops = _crops(pixels, src, corner, size)
        blank = (crops >= INK).flatten(1).sum(1) < MIN_INK
        if not blank.any():
            return corner, crops
        corner[blank] = torch.randint(0, DIGIT - size + 1, (int(blank.sum()), 2), generator=gen)
    raise RuntimeError("could not draw fragments that show stroke")  # every mnist5k digit has one


@functools.lru_cache(maxsize=4)
def generate(split: str, img_size: int, fragments: int, placements: int, fragment_size: int, seed: int):
    """(canvases (N, S, S) uint8, labels (N,), Layout) for one parameter set, once per process."""
    pixels, labels = digit_pixels(split), Mnist5k(split).labels
    d = len(pixels)
    gen = stream("cluttered", GENERATOR_VERSION, split, img_size, fragments, placements, fragment_size, seed)
    digit = torch.arange(d).repeat(placements)
    n = len(digit)
    canvas = torch.zeros(n, img_size, img_size, dtype=torch.uint8)
    pos = torch.randint(0, img_size - DIGIT + 1, (n, 2), generator=gen)
    paste(canvas, pixels[digit], pos)
    # another digit of the split: an offset of 1..d-1 from the canvas's own
    clutter_from = (digit[:, None] + torch.randint(1, d, (n, fragments), generator=gen)) % d
    crop = torch.zeros(n, fragments, 2, dtype=torch.long)
    clutter_pos = torch.randint(0, img_size - fragment_size + 1, (n, fragments, 2), generator=gen)
    for j in range(fragments):
        crop[:, j], patches = _stroke_crops(pixels, clutter_from[:, j], fragment_size, gen)
        paste(canvas, patches, clutter_pos[:, j])
    return canvas, labels[digit].clone(), Layout(digit, pos, clutter_from, crop, clutter_pos)


def ink_boxes(pixels: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """(N, 4) boxes (x0, y0, x1, y1) of the nonzero pixels of pixels (N, 28, 28) put at pos (y, x)."""
    (y0, y1), (x0, x1) = _span(pixels.amax(dim=2) > 0), _span(pixels.amax(dim=1) > 0)
    return torch.stack([pos[:, 1] + x0, pos[:, 0] + y0, pos[:, 1] + x1, pos[:, 0] + y1], dim=1)


def _span(mask: torch.Tensor):
    """The first index where mask (N, 28) is set, and one past the last."""
    ar = torch.arange(DIGIT)
    return torch.where(mask, ar, DIGIT).amin(1), torch.where(mask, ar, -1).amax(1) + 1


@DATASETS.register_module()
class ClutteredMnist(Dataset):
    """Items are dict(inputs=(1, S, S) normalised float tensor, data_samples=label)."""

    num_classes, in_chans = 10, 1
    mean, std = MNIST_MEAN, MNIST_STD

    def __init__(self, split: str = "train", img_size: int = 60, fragments: int = 4, placements: int = 1,
                 fragment_size: int = 8, seed: int = 0, limit: Optional[int] = None):
        """limit: keep `limit` evenly spaced canvases (quick checks and tests)."""
        name = "ClutteredMnist"
        check_split(name, split)
        check_int(name, "img_size", img_size, DIGIT, why="the canvas holds a whole 28x28 digit")
        check_int(name, "fragments", fragments, 0)
        check_int(name, "placements", placements, 1, why="canvases per digit")
        check_int(name, "fragment_size", fragment_size, 1, DIGIT, why="cut from a 28x28 digit")
        check_int(name, "seed", seed, 0)
        self.split, self.img_size, self.fragments = split, img_size, fragments
        canvases, labels, layout = generate(split, img_size, fragments, placements, fragment_size, seed)
        keep = evenly_spaced(len(labels), limit)
        if keep is not None:
            canvases, labels = canvases[keep], labels[keep]
            layout = Layout(*(t[keep] for t in layout))
        self.canvases, self.labels, self.layout = canvases, labels, layout
        self.boxes = ink_boxes(digit_pixels(split)[layout.digit], layout.pos)
        corner = layout.clutter_pos.flip(-1)  # (x, y)
        self.clutter_boxes = torch.cat([corner, corner + fragment_size], dim=-1)
        self.metainfo = dict(classes=tuple(str(i) for i in range(10)), img_size=img_size, fragments=fragments,
                             placements=placements, fragment_size=fragment_size, seed=seed,
                             generator_version=GENERATOR_VERSION, digits=int(layout.digit.unique().numel()))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        x = self.canvases[i].float().div_(255.0).sub_(MNIST_MEAN[0]).div_(MNIST_STD[0])
        return dict(inputs=x[None], data_samples=self.labels[i])
