"""Shared fixtures of the harness tests (helpers live in harness_testutils.py)."""
from __future__ import annotations

import pytest

from harness_testutils import read_jsonl, tiny_run_args


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory):
    """One tiny training run (2 epochs of 4 iterations): its work dir and record."""
    import harness  # noqa: F401
    from harness.cli import main
    tmp = tmp_path_factory.mktemp("trained")
    main(tiny_run_args(tmp, "--epochs", "2"))
    records = read_jsonl(tmp / "results.jsonl")
    assert len(records) == 1
    return tmp / "work", records[0]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Commands run in-process (`bench --threads 1`) set torch's thread count for the whole
    process; restore it, so results do not depend on which test ran first."""
    import torch
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
