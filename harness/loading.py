"""One way to get the network a run would build for (model, suite), with or without weights.

`run` builds its network inside mmengine's Runner from the suite config; `flops`, `bench` and
`visualize` build the same config (`harness.run.build_config`) and the same wrapper from it, here,
so every command refuses the same mistakes the same way, in one line and before any work:
an unknown model, a model for another task, a suite that needs --data-root, bad --model-kwargs,
an empty eval split, a corrupt or foreign checkpoint, or one that does not fit the model.
A shipped tag (`dhvn_nano.mnist5k`) is a model name here, built with its own weights
(`harness.names`), so each of those verbs takes one with no --checkpoint.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import torch.nn as nn

from .engine import checkpoint as ckpt_mod
from . import options
from .errors import HarnessError

__all__ = ["SuiteNetwork", "network_from_config", "suite_config", "suite_network"]


@dataclass
class SuiteNetwork:
    net: nn.Module            # the bare zoo or timm network, in eval mode, on `device`
    dataset: object           # the suite's eval split
    cfg: object               # the resolved mmengine config it was built from
    suite: object


def suite_config(model: str, suite, model_kwargs: Optional[dict] = None, cfg_options: Optional[dict] = None,
                 data_root: Optional[str] = None, device: str = "cpu"):
    """The suite's config for `model`, as `run` resolves it (seed 0), after the shared checks."""
    from .names import check_tasks, resolve_models
    from .run import build_config
    from .run_options import RunOptions
    from .suites import get_suite
    suite = get_suite(suite) if isinstance(suite, str) else suite
    resolve_models([model])          # unknown names: one line with the closest names
    check_tasks([model], suite)
    options.check_data_root(suite, data_root, cfg_options)
    opts = RunOptions(model_kwargs=dict(model_kwargs or {}), cfg_options=dict(cfg_options or {}),
                      data_root=data_root)
    return build_config(suite, model, 0, opts, str(device)), suite


def network_from_config(cfg, model: str, checkpoint: Optional[str] = None, device: str = "cpu",
                        say_untrained: bool = True) -> nn.Module:
    """The wrapper's network built from `cfg`, with `checkpoint`'s weights when given (they must
    fit key for key and shape for shape), in eval mode. say_untrained=False leaves the untrained
    note to the caller, who checks its own input first (a refused command prints one line)."""
    from mmengine.registry import MODELS

    from .engine.routing_mode import adopt_checkpoint_mode
    from .engine.wrappers import check_buildable
    from .names import check_weights
    check_weights(model, checkpoint)  # a shipped tag builds with its own weights (harness/names.py)
    if checkpoint:
        meta = ckpt_mod.load_checkpoint_file(checkpoint).get("meta")   # missing, corrupt or foreign: before building
        # the network the weights trained: in its routing mode (a fixed-capacity router's threshold is a weight)
        adopt_checkpoint_mode(cfg, meta, checkpoint)
    check_buildable(model, cfg.model["arch_kwargs"])
    wrapper = MODELS.build(copy.deepcopy(cfg.model))
    if checkpoint:
        wrapper.load_state_dict(ckpt_mod.check_checkpoint(checkpoint, wrapper, arch=model)["state_dict"])
    if say_untrained:
        say_if_untrained(wrapper.net, model)
    return wrapper.net.to(device).eval()


def say_if_untrained(net: nn.Module, model: str) -> None:
    """flops, bench and visualize report routing figures of this network: a fresh routed model's
    routers send every item to the cheapest choice, so they say so first (docs/DESIGN.md,
    "Untrained routers"). On stderr, so --json output stays one document."""
    import sys

    from .measure.untrained import untrained_note
    note = untrained_note(net, model)
    if note:
        print(note, file=sys.stderr)


def suite_network(model: str, suite, checkpoint: Optional[str] = None, model_kwargs: Optional[dict] = None,
                  cfg_options: Optional[dict] = None, data_root: Optional[str] = None,
                  device: str = "cpu") -> SuiteNetwork:
    """The network and the eval split `run` would evaluate, for a command that works on them."""
    from mmengine.registry import DATASETS
    cfg, suite = suite_config(model, suite, model_kwargs, cfg_options, data_root, device)
    dataset = DATASETS.build(copy.deepcopy(cfg.test_dataloader["dataset"]))
    if len(dataset) == 0:
        raise HarnessError(f"suite {suite.name}: the eval split is empty")
    if cfg.model["arch_kwargs"].get("num_classes", 0) is None:  # ImageFolder trees: from the folders
        cfg.model["arch_kwargs"]["num_classes"] = getattr(dataset, "num_classes", None)
    return SuiteNetwork(network_from_config(cfg, model, checkpoint, device), dataset, cfg, suite)
