"""Helpers for the harness tests: run the CLI in-process and capture what a user would see.

Every run here is tiny (a few dozen digits, a handful of iterations) so the whole harness
suite stays within a few minutes on 2 cores.
"""
from __future__ import annotations

import json
import os
from typing import List, Tuple

# a routed zoo model, small at 28x28; mnist5k subsets keep every class (evenly spaced)
TINY_MODEL = "dhvn_nano"
TINY_DATA = ["train_dataloader.dataset.limit=64", "test_dataloader.dataset.limit=60",
             "test_dataloader.batch_size=30"]


def run_cli(argv: List[str], capsys) -> Tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python -m harness <argv>`, in this process."""
    from harness.cli import main
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def tiny_run_args(tmp_path, *extra: str, model: str = TINY_MODEL, seed: int = 0, results=None,
                  work_dir=None, cfg: List[str] = ()) -> List[str]:
    return ["run", "--models", model, "--suite", "mnist5k", "--seeds", str(seed), "--batch-size", "16",
            "--work-dir", str(work_dir or tmp_path / "work"),
            "--results", str(results or tmp_path / "results.jsonl"),
            "--cfg-options", *TINY_DATA, *cfg, *extra]


def read_jsonl(path) -> list:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, f"exit code {code}, stderr: {err}"
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("harness: error: "), lines[0]
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in lines[0], f"{frag!r} not in {lines[0]!r}"


def write_imagefolder(root, per_class=3, classes=range(10)):
    """An ImageFolder tree of real digits (train/ and val/, one folder per class), as PNG files."""
    from PIL import Image
    from harness.suites.mnist5k import MNIST_MEAN, MNIST_STD, Mnist5k
    for split, source in (("train", Mnist5k("train")), ("val", Mnist5k("test"))):
        seen = {}
        for img, label in zip(source.images, source.labels.tolist()):
            if label not in classes or seen.get(label, 0) >= per_class:
                continue
            seen[label] = seen.get(label, 0) + 1
            pixels = ((img[0] * MNIST_STD[0] + MNIST_MEAN[0]).clamp(0, 1) * 255).round().byte().numpy()
            folder = root / split / f"digit{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, mode="L").save(folder / f"{seen[label]}.png")
