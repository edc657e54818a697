"""pydocs: the English reference text that ships inside every CPython (`pydoc_data.topics`).

Byte-level tokens (vocab 256), so bits per byte is loss / ln 2. The split is by topic and
fixed: in the order of the SHA-256 of their names, topics join the test split while it stays
within 10% of the bytes. The text differs between Python versions, so every result records
the Python version and the corpus SHA-256.
"""
from __future__ import annotations

import functools
import hashlib
import platform
from typing import Dict, Optional

import torch
from mmengine.registry import DATASETS
from torch.utils.data import Dataset

__all__ = ["PyDocs", "corpus", "TEST_FRACTION"]

TEST_FRACTION = 0.10
SEPARATOR = "\n\n"


@functools.lru_cache(maxsize=1)
def corpus() -> Dict[str, object]:
    from pydoc_data.topics import topics

    names = sorted(topics)
    full = SEPARATOR.join(topics[n] for n in names).encode("utf-8")
    by_hash = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    total, test, size = len(full), [], 0
    for n in by_hash:  # greedy in hash order, never past 10%: a fixed, near-exact split
        n_bytes = len(topics[n].encode("utf-8"))
        if size + n_bytes <= TEST_FRACTION * total:
            test.append(n)
            size += n_bytes
    test_set = set(test)
    parts = {"train": [n for n in names if n not in test_set], "test": [n for n in names if n in test_set]}
    data = {k: torch.frombuffer(bytearray(SEPARATOR.join(topics[n] for n in v).encode("utf-8")),
                                dtype=torch.uint8).long() for k, v in parts.items()}
    return dict(data=data, topics=parts, sha256=hashlib.sha256(full).hexdigest(),
                python=platform.python_version(), bytes=total)


def byte_windows(ids: torch.Tensor, max_seq_len: int) -> torch.Tensor:
    """Non-overlapping windows of max_seq_len inputs plus the one next target: (N, max_seq_len + 1)."""
    n = (len(ids) - 1) // max_seq_len
    if n < 1:
        raise ValueError(f"{len(ids)} tokens are too few for one window of max_seq_len={max_seq_len}")
    starts = torch.arange(n) * max_seq_len
    return ids[starts[:, None] + torch.arange(max_seq_len + 1)]


@DATASETS.register_module()
class PyDocs(Dataset):
    """Items are dict(inputs=(T,) byte ids, data_samples=(T,) next-byte targets)."""

    vocab_size = 256

    def __init__(self, split: str = "train", max_seq_len: int = 256, limit: Optional[int] = None):
        """limit: keep only the first `limit` windows (quick checks and tests)."""
        if split not in ("train", "test"):
            raise ValueError(f"pydocs split must be 'train' or 'test', got {split!r}")
        c = corpus()
        self.split, self.max_seq_len = split, max_seq_len
        try:
            self.windows = byte_windows(c["data"][split], max_seq_len)[:limit]
        except ValueError as e:  # a max_seq_len longer than the split: one line, not a traceback
            from ..errors import HarnessError
            raise HarnessError(f"suite pydocs, {split} split: {e} (at most "
                               f"{len(c['data'][split]) - 1})") from None
        self.metainfo = dict(python=c["python"], corpus_sha256=c["sha256"], corpus_bytes=c["bytes"],
                             split_topics=len(c["topics"][split]), tokens="bytes")

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        w = self.windows[i]
        return dict(inputs=w[:-1], data_samples=w[1:])
