"""text: local text files, or a hub corpus by name, through `datasets`; byte-level tokens.

--data-root is one of:
  * a directory with train*.txt and val*.txt / validation*.txt / test*.txt files;
  * `hub:NAME[:CONFIG]`, e.g. `hub:wikitext:wikitext-2-raw-v1` (online or already cached).
Lines are joined with newlines and cut into non-overlapping windows, as in pydocs.
"""
from __future__ import annotations

import functools
import glob
import hashlib
import os
from typing import Tuple

import torch
from mmengine.registry import DATASETS
from torch.utils.data import Dataset

from ..errors import HarnessError
from .pydocs import byte_windows

__all__ = ["TextFiles"]

EVAL_PREFIXES = ("val", "validation", "test")


def _local_files(root: str) -> dict:
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise HarnessError(f"data root {root} does not exist; suite text expects {TextFiles.LAYOUT}")
    train = sorted(glob.glob(os.path.join(root, "train*.txt")))
    evals = next((sorted(glob.glob(os.path.join(root, f"{p}*.txt"))) for p in EVAL_PREFIXES
                  if glob.glob(os.path.join(root, f"{p}*.txt"))), [])
    if not train or not evals:
        raise HarnessError(f"no train*.txt and val*.txt files in {root}; suite text expects {TextFiles.LAYOUT}")
    for split, files in (("train", train), ("test", evals)):
        for path in files:
            _check_text_file(path)
        if not any(os.path.getsize(p) for p in files):
            raise HarnessError(f"the {split} split of {root} is empty ({', '.join(os.path.basename(p) for p in files)}: "
                               f"0 bytes); suite text expects {TextFiles.LAYOUT}")
    return {"train": train, "test": evals}


def _check_text_file(path: str, chunk: int = 1 << 20) -> None:
    """A corpus file must be UTF-8 text: `datasets` decodes it strictly and fails deep inside its
    builder with a traceback, and a binary file would be trained on as if it were text. Read in
    chunks so a large corpus costs no memory; the offset named is the first bad byte's."""
    import codecs
    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    try:
        with open(path, "rb") as f:
            while True:
                data = f.read(chunk)
                pending = len(decoder.getstate()[0])  # bytes of a character cut by the last chunk
                nul = data.find(b"\0")
                if nul >= 0:
                    raise HarnessError(f"{path} is not a text file (a NUL byte at offset {offset + nul}); "
                                       f"suite text reads UTF-8 text files")
                try:
                    decoder.decode(data, final=not data)
                except UnicodeDecodeError as e:
                    raise HarnessError(f"{path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                                       f"{offset - pending + e.start}); save it as UTF-8, e.g. "
                                       f"iconv -f latin1 -t utf-8") from None
                if not data:
                    return
                offset += len(data)
    except OSError as e:
        raise HarnessError(f"cannot read {path} ({e.strerror or e}); suite text expects {TextFiles.LAYOUT}") from None


@functools.lru_cache(maxsize=4)
def _load(root: str) -> Tuple[dict, str]:
    from datasets import load_dataset

    if root.startswith("hub:"):
        name, _, config = root[4:].partition(":")
        try:
            dd = load_dataset(name, config or None)
        except Exception as e:  # offline and uncached, or an unknown name
            raise HarnessError(f"could not load hub corpus {name!r} ({type(e).__name__}); "
                               f"suite text expects {TextFiles.LAYOUT}") from None
        evals = next((s for s in EVAL_PREFIXES if s in dd), None)
        if "train" not in dd or evals is None:
            raise HarnessError(f"hub corpus {name!r} has splits {sorted(dd)}; expected train and validation/test")
        splits = {"train": dd["train"], "test": dd[evals]}
    else:
        files = _local_files(root)
        try:
            dd = load_dataset("text", data_files=files)
        except Exception as e:  # the files were checked above; whatever is left, in one line
            raise HarnessError(f"could not read the text files in {root} ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}); suite text expects {TextFiles.LAYOUT}") from None
        splits = {"train": dd["train"], "test": dd["test"]}
    data, digest = {}, hashlib.sha256()
    for k in ("train", "test"):
        raw = "\n".join(splits[k]["text"]).encode("utf-8")
        if len(raw) < 2:
            raise HarnessError(f"the {k} split of {root} is empty; suite text expects {TextFiles.LAYOUT}")
        digest.update(raw)
        data[k] = torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()
    return data, digest.hexdigest()


@DATASETS.register_module()
class TextFiles(Dataset):
    """Items are dict(inputs=(T,) byte ids, data_samples=(T,) next-byte targets)."""

    LAYOUT = ("a directory with train*.txt and val*.txt (or validation*/test*) files, or "
              "hub:NAME[:CONFIG] for a `datasets` hub corpus")
    vocab_size = 256

    def __init__(self, root: str, split: str = "train", max_seq_len: int = 256):
        if not root:
            raise HarnessError(f"suite text needs --data-root: {self.LAYOUT}")
        data, sha = _load(root)
        try:
            self.windows = byte_windows(data[split], max_seq_len)
        except ValueError as e:
            raise HarnessError(f"{split} split of {root}: {e}") from None
        self.metainfo = dict(corpus_sha256=sha, tokens="bytes", root=root)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        w = self.windows[i]
        return dict(inputs=w[:-1], data_samples=w[1:])
