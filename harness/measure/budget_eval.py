"""`run --eval-only --flops-budget`: the calibration batch and the threshold shift of each FLOPs budget."""
from __future__ import annotations

import copy
from typing import Sequence

import torch

from ..errors import HarnessError
from ..tasks import get_task

__all__ = ["calibration_inputs", "fit_budgets"]


def calibration_inputs(cfg, task: str, device) -> torch.Tensor:
    """Evenly spaced items of the training split, as one batch of inputs."""
    from mmengine.registry import DATASETS
    from torch.utils.data import default_collate

    from .executed_flops import sample_indices
    dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader["dataset"]))
    if len(dataset) == 0:  # (a train_dataloader.dataset.limit=0): nothing to fit the shift on
        raise HarnessError("--flops-budget fits each budget on items of the training split, and it is empty")
    n = get_task(task).calibration_items  # evenly spaced training items (no labels are used)
    batch = default_collate([dataset[i] for i in sample_indices(len(dataset), n)])
    return batch["inputs"].to(device)


def fit_budgets(net, budgets: Sequence[float], calibration: torch.Tensor, model: str) -> list:
    """Every budget's threshold shift, before any evaluation: an unreachable budget fails first."""
    import zoo
    with torch.no_grad():
        try:
            return zoo.routing.fit_budgets(net, list(budgets), calibration)
        except ValueError as e:
            raise HarnessError(f"--flops-budget for {model}: {e}") from None
