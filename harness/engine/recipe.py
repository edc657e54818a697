"""The parts of the ImageNet (DeiT) recipe that mmengine and timm do not join by themselves.

* `MixupPreprocessor`: a data preprocessor that mixes training batches with timm's Mixup/CutMix
  (`timm.data.Mixup`), so the labels become soft targets that `ZooClassifier` scores with
  timm's `SoftTargetCrossEntropy`; evaluation batches pass unmixed. It can also hand the model
  channels-last inputs.
* `ZooEMAHook`: mmengine's EMAHook, made safe for how the harness tests: more than once per
  process (after training, then per budget, raw and averaged weights), and from a checkpoint.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from mmengine.hooks import EMAHook
from mmengine.model import BaseDataPreprocessor
from mmengine.registry import HOOKS, MODELS

from ..errors import HarnessError
from .hooks import unwrap_model


@MODELS.register_module()
class MixupPreprocessor(BaseDataPreprocessor):
    """timm.data.Mixup on training batches (the arguments are timm's). num_classes=None: the
    model's, set by ZooClassifier when it builds the network."""

    def __init__(self, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, mode: str = "batch", label_smoothing: float = 0.1,
                 num_classes: Optional[int] = None, channels_last: bool = False, non_blocking: bool = False):
        super().__init__(non_blocking=non_blocking)
        self.mixup_args = dict(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=prob,
                               switch_prob=switch_prob, mode=mode, label_smoothing=label_smoothing)
        self.num_classes = num_classes
        self.channels_last = channels_last
        self._mixup = None

    @property
    def mixup(self):
        if self._mixup is None:
            from timm.data import Mixup
            if not self.num_classes:
                raise HarnessError("MixupPreprocessor needs num_classes (the model's; set "
                                   "model.data_preprocessor.num_classes)")
            self._mixup = Mixup(num_classes=int(self.num_classes), **self.mixup_args)
        return self._mixup

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        inputs, targets = data["inputs"], data["data_samples"]
        if self.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        if training:
            if inputs.shape[0] % 2:
                # timm mixes each sample with the batch reversed, pair by pair
                raise HarnessError(f"mixup/cutmix needs an even training batch, got {inputs.shape[0]}: "
                                   f"use an even batch size and train_dataloader.drop_last=True")
            inputs, targets = self.mixup(inputs, targets)
        return dict(inputs=inputs, data_samples=targets)


@HOOKS.register_module()
class ZooEMAHook(EMAHook):
    """mmengine's EMAHook with three changes.

    1. The averaged copy is built once per model. mmengine builds it in every `before_run`, and
       `Runner.test()` after `Runner.train()` runs `before_run` again, which would replace the
       average with a copy of the raw weights before it is ever tested.
    2. `swap = False` tests the raw weights; the harness tests both, the average first.
    3. Loading a checkpoint to evaluate (not to resume) gives the model its raw weights and the
       copy the averaged ones. mmengine saves the average as the checkpoint's state_dict and the
       raw weights under ema_state_dict, and on such a load would give both the average.
    """

    swap = True

    def before_run(self, runner) -> None:
        if getattr(self, "src_model", None) is unwrap_model(runner.model):
            return
        super().before_run(runner)

    def _swap_ema_parameters(self) -> None:
        if self.swap:
            super()._swap_ema_parameters()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if runner._resume or "ema_state_dict" not in checkpoint:
            return super().after_load_checkpoint(runner, checkpoint)
        from mmengine.runner.checkpoint import load_state_dict
        load_state_dict(self.ema_model.module, copy.deepcopy(checkpoint["state_dict"]), strict=self.strict_load)
        self._swap_ema_state_dict(checkpoint)  # the runner then loads the raw weights into the model
