"""mmengine `BaseModel` wrappers: one for image classifiers, one for causal LMs.

Both wrap a network built by name: a zoo variant (`dhvn_nano`) or a timm model
(`timm:resnet18`). mode="loss" returns the task loss plus each *weighted* auxiliary term of
the zoo model as its own `loss_<name>` key, so mmengine sums them for the update and logs
each one. mode="predict" returns per-item results for the metrics, computed from the task
loss only: evaluation never includes auxiliary terms.
"""
from __future__ import annotations

import time
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS

import zoo

from ..errors import HarnessError
from ..names import TIMM_PREFIX, shipped_tag
from ..tasks import IGNORE_INDEX

zoo.register_mmengine()  # a config's dict(type="dhvn_nano") builds the zoo model through MODELS

__all__ = ["ZooClassifier", "ZooLM", "build_network", "TIMM_PREFIX", "routing_stats", "routes_at"]


def build_network(arch: str, **kwargs) -> nn.Module:
    """A zoo variant by name, or `timm:NAME`. kwargs are the suite's and the user's overrides."""
    if arch.startswith(TIMM_PREFIX):
        import timm

        name = arch[len(TIMM_PREFIX):]
        # zoo-only metadata, and router settings a timm model has no routers for (the run checks them,
        # harness/engine/routing_mode.py)
        kwargs = {k: v for k, v in kwargs.items() if k not in ("mean", "std", "router")}
        try:
            return timm.create_model(name, pretrained=False, **kwargs)
        except TypeError as e:
            # convnets take no img_size; ViTs need it. Only retry when that is the complaint.
            if "img_size" in kwargs and "img_size" in str(e):
                kwargs.pop("img_size")
                return timm.create_model(name, pretrained=False, **kwargs)
            raise
    import zoo
    if shipped_tag(arch) is not None:
        # a shipped tag is its weights: the suite's kwargs must match the ones it trained with
        # (zoo.pretrained.plan refuses any other in one line); init_weights below keeps them
        return zoo.create_model(arch, pretrained=True, **kwargs)
    return zoo.create_model(arch, **kwargs)


def build_network_checked(arch: str, **kwargs) -> nn.Module:
    """`build_network`, with bad overrides (an unknown field, a value of the wrong type or
    shape) as one-line HarnessErrors."""
    from ..errors import HarnessError
    try:
        return build_network(arch, **kwargs)
    except (TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HarnessError(f"cannot build {arch} with these settings: {first}") from None


def check_buildable(arch: str, arch_kwargs: dict) -> nn.Module:
    """Build `arch` once on the meta device (no memory, no init), so that bad overrides fail
    before any work, where the real build happens later inside mmengine. Returns that model."""
    import warnings
    with torch.device("meta"), warnings.catch_warnings():
        # a tag's weights are copied into meta tensors here, which torch says is a no-op
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter")
        return build_network_checked(arch, **arch_kwargs)


def routing_stats(net: nn.Module) -> Dict[str, dict]:
    """Per router of the last forward, per sample: choice counts and summed probabilities.

    Kept per sample so the metric can average over exactly the eval set (and across ranks).
    """
    import zoo

    out = {}
    for rec in zoo.routing.trace(net):
        n = len(rec.choices)
        dec = rec.decisions.reshape(rec.decisions.shape[0], -1)          # (B, items)
        probs = rec.probs.float().reshape(dec.shape[0], -1, n)          # (B, items, n)
        counts = F.one_hot(dec, n).sum(dim=1).float()                    # (B, n)
        out[rec.layer] = dict(granularity=rec.granularity, choices=tuple(rec.choices),
                              counts=counts.cpu(), prob_sums=probs.sum(dim=1).cpu())
    return out


def routes_at(net: nn.Module, mask: torch.Tensor) -> List[Dict[str, torch.Tensor]]:
    """Per item of the last forward: for each router that decides every position of `mask` (B, T),
    its choice counts at the positions `mask` marks (RecallMetric's routing precision)."""
    per_layer = {rec.layer: (F.one_hot(rec.decisions, len(rec.choices)) * mask[..., None]).sum(dim=1).cpu()
                 for rec in zoo.routing.trace(net) if rec.decisions.shape == mask.shape}
    return [{layer: counts[i] for layer, counts in per_layer.items()} for i in range(mask.shape[0])]


def aux_weight_table(objectives: dict, overrides: Optional[dict]) -> Dict[str, float]:
    """Every objective's default weight, with `overrides` (the config's `model.aux_weights`) on
    top. An override may name any registered objective, so one suite config serves every family;
    a name no objective has is refused (a typo would otherwise train silently without it)."""
    from zoo.layers.objectives import OBJECTIVES
    unknown = sorted(set(overrides or {}) - set(OBJECTIVES))
    if unknown:
        raise HarnessError(f"model.aux_weights names no routing objective: {', '.join(unknown)}; "
                           f"the objectives are {', '.join(sorted(OBJECTIVES))}")
    table = {name: float(o.weight) for name, o in objectives.items()}
    table.update({k: float(v) for k, v in (overrides or {}).items() if k in objectives})
    return table


class _Wrapper(BaseModel):
    def __init__(self, arch: str, arch_kwargs: Optional[dict] = None, aux_weights: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.arch = arch
        self.net = build_network(arch, **dict(arch_kwargs or {}))
        # each objective's default weight (zoo.layers.objectives), then the config's overrides;
        # read by AuxWeightScheduleHook, which ramps them during training
        self.objectives = {o.name: o for o in getattr(self.net, "objectives", ())}
        self.aux_weights: Dict[str, float] = aux_weight_table(self.objectives, aux_weights)

    def init_weights(self):
        pass  # the zoo and timm initialise their models at construction; do not re-initialise

    def aux_terms(self) -> Dict[str, torch.Tensor]:
        aux = self.net.aux_losses() if hasattr(self.net, "aux_losses") else {}
        missing = sorted(set(aux) - set(self.aux_weights))
        if missing:  # a network's loss that is not one of its declared objectives
            raise HarnessError(f"{self.arch} returns auxiliary loss(es) {missing} that are not among its "
                               f"objectives {sorted(self.objectives)}")
        return {f"loss_{k}": self.aux_weights[k] * v for k, v in aux.items() if self.aux_weights[k] != 0}

    def _timed_forward(self, inputs: torch.Tensor):
        if inputs.is_cuda:
            torch.cuda.synchronize(inputs.device)
        t0 = time.perf_counter()
        out = self.net(inputs)
        if inputs.is_cuda:
            torch.cuda.synchronize(inputs.device)
        return out, time.perf_counter() - t0

    def _per_item(self, inputs: torch.Tensor, dtype: torch.dtype, seconds: float, extra: dict) -> List[dict]:
        """dtype: what the network computed in (bfloat16/float16 under autocast)."""
        B = inputs.shape[0]
        routing = routing_stats(self.net)
        dtype = str(dtype).replace("torch.", "")
        items = []
        for i in range(B):
            item = {k: v[i] for k, v in extra.items()}
            item.update(seconds=seconds / B, device=inputs.device.type, dtype=dtype,
                        routing={layer: dict(granularity=r["granularity"], choices=r["choices"],
                                             counts=r["counts"][i], prob_sums=r["prob_sums"][i])
                                 for layer, r in routing.items()})
            items.append(item)
        return items


@MODELS.register_module()
class ZooClassifier(_Wrapper):
    """inputs (B, C, H, W), data_samples (B,) labels."""

    def __init__(self, *args, label_smoothing: float = 0.0, channels_last: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.label_smoothing = label_smoothing
        if channels_last:  # timm train.py --channels-last; the inputs follow in MixupPreprocessor
            self.net.to(memory_format=torch.channels_last)
        if getattr(self.data_preprocessor, "num_classes", 0) is None:  # MixupPreprocessor's targets
            self.data_preprocessor.num_classes = getattr(self.net, "num_classes", None)

    def _loss_ce(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.is_floating_point():  # mixup/cutmix soft targets, label smoothing already in them
            from timm.loss import SoftTargetCrossEntropy
            return SoftTargetCrossEntropy()(logits, targets)
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def forward(self, inputs, data_samples=None, mode: str = "tensor"):
        if mode == "tensor":
            return self.net(inputs)
        if mode == "loss":
            logits = self.net(inputs)
            losses = {"loss_ce": self._loss_ce(logits.float(), data_samples)}
            losses.update(self.aux_terms())
            return losses
        if mode == "predict":
            logits, seconds = self._timed_forward(inputs)
            dtype, logits = logits.dtype, logits.float()
            k = min(5, logits.shape[-1])
            topk = logits.topk(k, dim=-1).indices
            hits = topk == data_samples[:, None]
            extra = dict(loss=F.cross_entropy(logits, data_samples, reduction="none").cpu(),
                         top1=hits[:, 0].cpu(), top5=hits.any(dim=-1).cpu())
            return self._per_item(inputs, dtype, seconds, extra)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")


def _logits(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        return out["logits"]
    return out.logits


@MODELS.register_module()
class ZooLM(_Wrapper):
    """inputs (B, T) token ids, data_samples (B, T) next-token targets."""

    def forward(self, inputs, data_samples=None, mode: str = "tensor"):
        if mode == "tensor":
            return _logits(self.net(inputs))
        if mode == "loss":
            logits = _logits(self.net(inputs)).float()
            losses = {"loss_lm": F.cross_entropy(logits.flatten(0, 1), data_samples.flatten())}
            losses.update(self.aux_terms())
            return losses
        if mode == "predict":
            out, seconds = self._timed_forward(inputs)
            dtype, logits = _logits(out).dtype, _logits(out).float()
            nll = F.cross_entropy(logits.transpose(1, 2), data_samples, reduction="none")  # (B, T), 0 where ignored
            # a target of IGNORE_INDEX is not scored (MQAR scores only its queries): `tokens` counts
            # what the model read (throughput), `scored` what the loss and the accuracy are over
            scored = data_samples != IGNORE_INDEX
            hits = (logits.argmax(dim=-1) == data_samples) & scored
            extra = dict(nll_sum=nll.sum(dim=1).double().cpu(),
                         tokens=torch.full((inputs.shape[0],), inputs.shape[1]),
                         scored=scored.sum(dim=1).cpu(), hits=hits.sum(dim=1).cpu(),
                         scored_routes=routes_at(self.net, scored))
            return self._per_item(inputs, dtype, seconds, extra)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

