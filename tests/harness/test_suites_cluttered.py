"""cluttered60 / cluttered112 (harness/suites/cluttered.py): deterministic, built from the split's
own digits only, with the clutter, placement and boxes it claims; bad parameters are one line."""
from __future__ import annotations

import pytest
import torch

from harness.errors import HarnessError
from harness.suites.cluttered import (DIGIT, INK, MIN_INK, ClutteredMnist, _crops, digit_pixels, generate,
                                      ink_boxes, paste)
from harness.suites.mnist5k import MNIST_MEAN, MNIST_STD, Mnist5k
from harness_testutils import assert_one_line_error, run_cli

SUITES = [(60, 4), (112, 16)]  # the two suites' canvas sizes and fragment counts


def _rebuild(split: str, n: int, size: int, fragment_size: int, layout) -> torch.Tensor:
    """The first n canvases again, from the split's digits and the layout alone."""
    pixels = digit_pixels(split)
    canvas = torch.zeros(n, size, size, dtype=torch.uint8)
    paste(canvas, pixels[layout.digit[:n]], layout.pos[:n])
    for j in range(layout.clutter_from.shape[1]):
        paste(canvas, _crops(pixels, layout.clutter_from[:n, j], layout.crop[:n, j], fragment_size),
              layout.clutter_pos[:n, j])
    return canvas


def test_the_generator_is_deterministic_from_its_seed():
    build = generate.__wrapped__  # past the per-process cache
    a, b, c = build("test", 60, 4, 1, 8, 0), build("test", 60, 4, 1, 8, 0), build("test", 60, 4, 1, 8, 1)
    for x, y in zip(a[2], b[2]):
        assert torch.equal(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[2].pos, c[2].pos)
    assert torch.equal(a[1], c[1])  # the same digits, placed elsewhere
    assert ClutteredMnist("test").canvases is ClutteredMnist("test").canvases  # built once per process


@pytest.mark.parametrize("size, fragments", SUITES)
def test_test_canvases_hold_the_held_out_digits_and_clutter_cut_from_them_only(size, fragments):
    ds = ClutteredMnist("test", img_size=size, fragments=fragments)
    lay, held_out = ds.layout, Mnist5k("test")
    assert len(ds) == 1000 and ds.canvases.shape == (1000, size, size)
    assert torch.equal(lay.digit, torch.arange(1000))            # each held-out digit once
    assert torch.equal(ds.labels, held_out.labels)
    assert lay.clutter_from.shape == (1000, fragments)           # the clutter count
    assert bool((lay.clutter_from != lay.digit[:, None]).all())  # never the canvas's own digit
    # the canvases are exactly the held-out digits and crops of held-out digits, nothing else
    assert torch.equal(_rebuild("test", 1000, size, 8, lay), ds.canvases)


def test_training_canvases_are_two_per_training_digit_from_training_digits():
    ds = ClutteredMnist("train", img_size=60, fragments=4, placements=2)
    lay = ds.layout
    assert len(ds) == 8000
    assert torch.equal(torch.bincount(lay.digit), torch.full((4000,), 2))
    assert torch.equal(ds.labels, Mnist5k("train").labels[lay.digit])
    first, second = lay.pos[:4000], lay.pos[4000:]  # the same digits in both halves, placed anew
    assert torch.equal(lay.digit[:4000], lay.digit[4000:]) and (first != second).any(dim=1).float().mean() > 0.9
    assert torch.equal(_rebuild("train", 300, 60, 8, lay), ds.canvases[:300])


@pytest.mark.parametrize("size, fragments", SUITES)
def test_digits_lie_inside_the_canvas_and_fragments_show_stroke(size, fragments):
    ds = ClutteredMnist("test", img_size=size, fragments=fragments)
    lay = ds.layout
    assert bool(((lay.pos >= 0) & (lay.pos <= size - DIGIT)).all())
    assert bool(((lay.clutter_pos >= 0) & (lay.clutter_pos <= size - 8)).all())
    assert bool(((lay.crop >= 0) & (lay.crop <= DIGIT - 8)).all())
    crops = _crops(digit_pixels("test"), lay.clutter_from.flatten(), lay.crop.flatten(0, 1), 8)
    assert bool(((crops >= INK).flatten(1).sum(1) >= MIN_INK).all())
    # positions spread over the whole canvas (uniform), not bunched in the middle
    assert lay.pos.min() == 0 and lay.pos.max() == size - DIGIT


@pytest.mark.parametrize("size, fragments", SUITES)
def test_boxes_bound_the_digit_and_the_fragments(size, fragments):
    ds = ClutteredMnist("test", img_size=size, fragments=fragments, limit=200)
    assert ds.boxes.shape == (200, 4) and ds.clutter_boxes.shape == (200, fragments, 4)
    x0, y0, x1, y1 = ds.boxes.unbind(1)
    assert bool(((0 <= x0) & (x0 < x1) & (x1 <= size) & (0 <= y0) & (y0 < y1) & (y1 <= size)).all())
    # outside the digit's box and the fragments' boxes the canvas is blank
    covered = torch.zeros_like(ds.canvases, dtype=torch.bool)
    for i in range(len(ds)):
        for bx0, by0, bx1, by1 in [ds.boxes[i].tolist()] + ds.clutter_boxes[i].tolist():
            covered[i, by0:by1, bx0:bx1] = True
    assert int(ds.canvases[~covered].max()) == 0
    # the box is tight: a one-pixel digit
    dot = torch.zeros(1, DIGIT, DIGIT, dtype=torch.uint8)
    dot[0, 5, 7] = 255
    assert ink_boxes(dot, torch.tensor([[10, 20]])).tolist() == [[27, 15, 28, 16]]


def test_items_are_normalised_like_mnist5k_and_limit_keeps_every_class():
    ds = ClutteredMnist("test", img_size=60, fragments=4, limit=50)
    item = ds[0]
    assert item["inputs"].shape == (1, 60, 60) and item["inputs"].dtype == torch.float32
    background = -MNIST_MEAN[0] / MNIST_STD[0]
    assert float(item["inputs"].min()) == pytest.approx(background)
    assert int(item["data_samples"]) == int(ds.labels[0])
    assert set(ds.labels.tolist()) == set(range(10))
    assert ds.img_size == 60 and ds.in_chans == 1 and ds.num_classes == 10


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(img_size=27), "img_size must be an integer >= 28"),
    (dict(img_size=60.0), "img_size must be an integer >= 28"),
    (dict(fragments=-1), "fragments must be an integer >= 0"),
    (dict(placements=0), "placements must be an integer >= 1"),
    (dict(fragment_size=29), "fragment_size must be an integer in [1, 28]"),
    (dict(split="val"), "split must be 'train' or 'test'"),
])
def test_bad_parameters_are_refused_in_one_line(kwargs, fragment):
    with pytest.raises(HarnessError, match="ClutteredMnist") as e:
        ClutteredMnist(**{"split": "test", **kwargs})
    assert fragment in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("suite, option, fragment", [
    ("cluttered60", "test_dataloader.dataset.img_size=20", "img_size must be an integer >= 28"),
    ("cluttered112", "test_dataloader.dataset.fragments=-3", "fragments must be an integer >= 0"),
])
def test_a_bad_suite_parameter_is_one_line_and_exit_2(tmp_path, capsys, suite, option, fragment):
    code, _, err = run_cli(["run", "--models", "dhvn_nano", "--suite", suite, "--work-dir", str(tmp_path / "w"),
                            "--results", str(tmp_path / "r.jsonl"), "--cfg-options", option], capsys)
    assert_one_line_error(code, err, "ClutteredMnist", fragment)
    assert not (tmp_path / "r.jsonl").exists()
