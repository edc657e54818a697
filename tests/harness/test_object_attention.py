"""harness.measure.object_attention: on-digit patches found right, and the shares counted from the
decisions the model actually took."""
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from esh_testutils import tiny  # noqa: E402

import zoo  # noqa: E402
from harness.measure.object_attention import object_attention, patch_overlap  # noqa: E402
from harness.suites.cluttered import ClutteredMnist  # noqa: E402


def test_patch_overlap_by_hand():
    # a 60 px canvas in a 4 x 4 grid: patches are 15 px; a box over x 14..16, y 30..45 touches
    # columns 0 and 1 (14 < 15 <= 16) and exactly row 2 (30..45 is that row; 45 is exclusive)
    hit = patch_overlap(torch.tensor([[14, 30, 16, 45]]), 4, 60).reshape(4, 4)
    want = torch.zeros(4, 4, dtype=torch.bool)
    want[2, 0] = want[2, 1] = True
    assert torch.equal(hit, want)


def test_patch_overlap_whole_canvas_and_uneven_grid():
    assert bool(patch_overlap(torch.tensor([[0, 0, 60, 60]]), 7, 60).all())
    # 60 / 7 px patches: a 1-pixel box at x = 59 is in the last column only
    hit = patch_overlap(torch.tensor([[59, 0, 60, 1]]), 7, 60).reshape(7, 7)
    assert hit.sum() == 1 and bool(hit[0, 6])


@pytest.fixture(scope="module")
def canvases():
    return ClutteredMnist(split="test", img_size=32, fragments=2, limit=6)


def test_counts_follow_the_decisions(canvases):
    net = tiny(img_size=32).eval()
    boxes = canvases.boxes

    def on_digit(router, shape):  # attention exactly on the patches that overlap the digit
        hit = patch_overlap(boxes[:shape[0]], math.isqrt(shape[1]), 32)
        return torch.where(hit, router.choices.index("attention"), router.choices.index("ssm"))

    with zoo.routing.force(net, on_digit):
        rows = object_attention(net, canvases, batch_size=6)
    assert len(rows) == len([r for r in zoo.routing.routers(net)])
    for r in rows:
        assert r["on_share"] == 1.0 and r["off_share"] == 0.0 and r["ratio"] == math.inf
        # 4 px patches, then 8 px after the patch merge: 8 x 8 or 4 x 4 per canvas
        assert r["on_patches"] + r["off_patches"] in (6 * 64, 6 * 16)
    with zoo.routing.force(net, "attention"):
        rows = object_attention(net, canvases, batch_size=4)  # two batches, counts summed
    assert all(r["on_share"] == r["off_share"] == 1.0 and r["ratio"] == 1.0 for r in rows)


def test_no_canvas_is_refused(canvases):
    with pytest.raises(ValueError, match="at least one canvas"):
        object_attention(tiny(img_size=32), torch.utils.data.Subset(canvases, []))
