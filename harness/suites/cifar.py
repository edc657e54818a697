"""CIFAR-10 / CIFAR-100 through torchvision, downloaded into --data-root when online.

torchvision already holds the decoded uint8 arrays in memory; only the light train
augmentation (pad-crop, flip) runs per item.
"""
from __future__ import annotations

import os

from mmengine.registry import DATASETS
from torch.utils.data import Dataset

from ..errors import HarnessError

__all__ = ["Cifar", "CIFAR_STATS"]

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@DATASETS.register_module()
class Cifar(Dataset):
    """Items are dict(inputs=(3, 32, 32) normalised image, data_samples=label)."""

    LAYOUT = ("torchvision's CIFAR folder (<root>/cifar-10-batches-py or <root>/cifar-100-python), "
              "downloaded there when online")

    def __init__(self, root: str, name: str = "cifar10", split: str = "train", download: bool = True):
        from torchvision import datasets, transforms as T

        if not root:
            raise HarnessError(f"suite {name} needs --data-root: {self.LAYOUT}")
        root = os.path.abspath(os.path.expanduser(root))
        cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
        mean, std = CIFAR_STATS[name]
        aug = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if split == "train" else []
        tf = T.Compose(aug + [T.ToTensor(), T.Normalize(mean, std)])
        try:
            self.data = cls(root, train=split == "train", transform=tf, download=False)
        except RuntimeError:
            if not download:
                raise HarnessError(f"no {name} data under {root}; expected {self.LAYOUT}") from None
            try:
                self.data = cls(root, train=split == "train", transform=tf, download=True)
            except Exception as e:  # offline: say where we looked, not a urllib traceback
                raise HarnessError(f"no {name} data under {root} and the download failed "
                                   f"({type(e).__name__}); expected {self.LAYOUT}") from None
        self.classes = list(self.data.classes)
        self.metainfo = dict(classes=tuple(self.classes), root=root)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        img, label = self.data[i]
        return dict(inputs=img, data_samples=label)
