"""Image trees on disk: ImageNet, or any ImageFolder; also a local HF `datasets` directory.

Two layouts are accepted under the data root:
  * an ImageFolder tree: root/train/<class>/<image> and root/val/<class>/<image>
    (the eval split may also be called `validation` or `test`);
  * a directory written by `datasets.DatasetDict.save_to_disk`, with a train split, an eval
    split (validation/val/test) and columns `image` and `label`.
Transforms are timm's (`timm.data.create_transform`), so training matches timm recipes.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from mmengine.registry import DATASETS
from torch.utils.data import Dataset

from ..errors import HarnessError

__all__ = ["ImageFolderSuite", "find_layout"]

EVAL_SPLITS = ("val", "validation", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _split_dir(root: str, split: str) -> Optional[str]:
    names = ("train",) if split == "train" else EVAL_SPLITS
    for n in names:
        if os.path.isdir(os.path.join(root, n)):
            return os.path.join(root, n)
    return None


def _has_images(folder: str) -> bool:
    for _, _, files in os.walk(folder):
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
            return True
    return False


def find_layout(root: Optional[str], suite: str = "imagefolder") -> str:
    """'imagefolder' or 'hf' for a usable root; a HarnessError naming the root and layout otherwise."""
    if not root:
        raise HarnessError(f"suite {suite} needs --data-root: {ImageFolderSuite.LAYOUT}")
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise HarnessError(f"data root {root} does not exist; suite {suite} expects {ImageFolderSuite.LAYOUT}")
    if os.path.exists(os.path.join(root, "dataset_dict.json")):
        return "hf"
    train, evals = _split_dir(root, "train"), _split_dir(root, "val")
    if train is None or evals is None:
        raise HarnessError(f"no train/ and val/ folders under {root}; suite {suite} expects "
                           f"{ImageFolderSuite.LAYOUT}")
    for d in (train, evals):
        if not _has_images(d):
            raise HarnessError(f"no images under {d}; suite {suite} expects {ImageFolderSuite.LAYOUT}")
    return "imagefolder"


@DATASETS.register_module()
class ImageFolderSuite(Dataset):
    """Items are dict(inputs=(C, H, W) transformed image, data_samples=label)."""

    LAYOUT = ("an ImageFolder tree <root>/train/<class>/*.jpg|png and <root>/val/<class>/*, or a "
              "local HF datasets directory (save_to_disk) with train and validation splits and "
              "columns image, label")

    def __init__(self, root: str, split: str = "train", img_size: int = 224, in_chans: int = 3,
                 mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                 crop_pct: float = 0.875, auto_augment: Optional[str] = None, re_prob: float = 0.0,
                 re_mode: str = "pixel", re_count: int = 1, suite: str = "imagefolder"):
        from timm.data import create_transform

        self.layout = find_layout(root, suite)
        self.root = os.path.abspath(os.path.expanduser(root))
        self.split, self.in_chans = split, in_chans
        if len(mean) != in_chans:  # grey inputs: one averaged statistic per channel
            mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
        self.transform = create_transform(
            input_size=(in_chans, img_size, img_size), is_training=split == "train", mean=tuple(mean),
            std=tuple(std), crop_pct=crop_pct, auto_augment=auto_augment, interpolation="bicubic",
            color_jitter=None if in_chans == 1 else 0.4, re_prob=re_prob, re_mode=re_mode, re_count=re_count)
        if self.layout == "hf":
            self._init_hf()
        else:
            from torchvision.datasets import ImageFolder
            self.data = ImageFolder(_split_dir(self.root, split), loader=self._load_image)
            self.classes = list(self.data.classes)
        self.metainfo = dict(classes=tuple(self.classes), layout=self.layout, root=self.root)

    def _init_hf(self) -> None:
        from datasets import load_from_disk

        dd = load_from_disk(self.root)
        names = ("train",) if self.split == "train" else EVAL_SPLITS
        split = next((n for n in names if n in dd), None)
        if split is None:
            raise HarnessError(f"HF dataset at {self.root} has splits {sorted(dd)}; expected train and one of {EVAL_SPLITS}")
        self.data = dd[split]
        missing = {"image", "label"} - set(self.data.column_names)
        if missing:
            raise HarnessError(f"HF dataset at {self.root} lacks columns {sorted(missing)}; expected image, label")
        label = self.data.features["label"]
        self.classes = list(getattr(label, "names", None) or sorted(set(self.data["label"])))

    def _load_image(self, path: str):
        from PIL import Image, UnidentifiedImageError
        try:
            with open(path, "rb") as f:
                img = Image.open(f)
                return img.convert("L" if self.in_chans == 1 else "RGB")
        except (UnidentifiedImageError, OSError) as e:
            # named here: in a loader worker the bare PIL error would say nothing of which file
            raise HarnessError(f"cannot read image {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        if self.layout == "hf":
            item = self.data[i]
            img = item["image"].convert("L" if self.in_chans == 1 else "RGB")
            return dict(inputs=self.transform(img), data_samples=int(item["label"]))
        img, label = self.data[i]
        return dict(inputs=self.transform(img), data_samples=label)
