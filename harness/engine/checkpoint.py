"""Loading mmengine checkpoints on torch >= 2.6 without ever unpickling arbitrary code.

torch.load now defaults to weights_only=True, and mmengine 0.10.7's resume/load_checkpoint
then fails with UnpicklingError on the non-tensor objects mmengine stores in `message_hub`.
Found with `torch.serialization.get_unsafe_globals_in_checkpoint` on a checkpoint the Runner
wrote (tests/harness/test_components.py keeps the list honest), they are:
  * numpy arrays, dtypes and scalars (the loss/lr histories, runtime info such as `eta`):
    allowlisted with add_safe_globals, exactly these, see `safe_globals()`;
  * mmengine's `HistoryBuffer`, whose `__getstate__` adds a dict of *functions* that pickle
    reaches through `builtins.getattr`, and whose `__setstate__` installs those functions into
    a class-wide registry that mmengine later calls. Allowlisting getattr would let a crafted
    checkpoint plant arbitrary callables there, so `SafeCheckpointHook` writes each buffer as
    plain numbers (arrays + max_length) and rebuilds it through `HistoryBuffer(...)` on load.
Every load is weights-only; nothing falls back to full unpickling. A checkpoint written by
mmengine without this hook is refused with a one-line error naming the global it needs.
"""
from __future__ import annotations

import glob
import os
import pickle
import re
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from ..errors import HarnessError

from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS

__all__ = ["install_safe_globals", "safe_globals", "load_checkpoint_file", "check_checkpoint",
           "latest_checkpoint", "SafeCheckpointHook", "AtomicCheckpointHook"]


# torch's refusal names the global: "Unsupported global: GLOBAL posix.system ..." or
# "unsupported GLOBAL posix.system whose module posix is blocked"
_GLOBAL = re.compile(r"(?:[Uu]nsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")

_multiarray = getattr(np, "_core", None) or np.core  # numpy 2 renamed np.core
_multiarray = _multiarray.multiarray


def safe_globals() -> list:
    """The globals an mmengine 0.10.7 training checkpoint written with SafeCheckpointHook holds."""
    return [
        _multiarray._reconstruct,      # numpy arrays (the message_hub histories)
        np.ndarray,
        np.dtype,
        type(np.dtype(np.float64)),    # numpy.dtypes.Float64DType: loss/lr/time histories
        type(np.dtype(np.int64)),      # numpy.dtypes.Int64DType: their count histories
        _multiarray.scalar,            # numpy scalars in message_hub runtime info (eta)
    ]


_installed = False


def install_safe_globals() -> None:
    global _installed
    if not _installed:
        torch.serialization.add_safe_globals(safe_globals())
        _installed = True


def load_checkpoint_file(path: str) -> dict:
    """torch.load(weights_only=True) with one-line HarnessErrors for unreadable or foreign files."""
    install_safe_globals()
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HarnessError(f"checkpoint {path} does not exist") from None
    except IsADirectoryError:
        raise HarnessError(f"checkpoint {path} is a directory, expected a .pth file") from None
    except pickle.UnpicklingError as e:
        text = str(e)
        named = _GLOBAL.search(text)
        if named:
            # never torch's advice (loading with weights_only=False runs what the file says)
            raise HarnessError(f"refused: the checkpoint {path} names {named.group(1)}, which is not an "
                               f"allowed class (checkpoints load weights-only)") from None
        reason = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0] if text.strip() else ""
        reason = reason.split(" Please use")[0].split(" Check the documentation")[0]
        if "weights_only" in reason or "Weights only" in reason:
            reason = "the weights-only unpickler could not read it"
        raise HarnessError(f"checkpoint {path} is corrupt or not a torch checkpoint ({reason})") from None
    except Exception as e:  # noqa: BLE001
        # garbage bytes make the weights-only unpickler fail in arbitrary ways (IndexError on a
        # text file, KeyError, struct.error, ...): any failure to parse the file is this error
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        detail = f"{type(e).__name__}: {first}" if first else type(e).__name__
        raise HarnessError(f"checkpoint {path} is corrupt or not a torch checkpoint ({detail})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise HarnessError(f"checkpoint {path} is not an mmengine checkpoint (no state_dict); "
                           f"expected a work_dir/epoch_N.pth or iter_N.pth written by the harness")
    return ckpt


def check_checkpoint(path: str, model: nn.Module, arch: Optional[str] = None) -> dict:
    """Load `path` and make sure it holds weights for exactly `model` (mmengine itself only warns);
    the weights are loaded into `model`."""
    from zoo.pretrained import migrate_state_dict
    ckpt = load_checkpoint_file(path)
    ours = model.state_dict()
    # checkpoints written before a key rename (DHVN's decoder fuse -> merge) load as they are
    theirs = ckpt["state_dict"] = migrate_state_dict(ckpt["state_dict"], ours)
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    shapes = [k for k in ours if k in theirs and tuple(theirs[k].shape) != tuple(ours[k].shape)]
    if missing or unexpected or shapes:
        what = arch or type(model).__name__
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            detail.append(f"{len(shapes)} shape mismatches (e.g. {k}: {tuple(theirs[k].shape)} vs {tuple(ours[k].shape)})")
        raise HarnessError(f"checkpoint {path} does not fit {what}: {', '.join(detail)}")
    # values the keys cannot show (a router temperature <= 0, say) are refused by the load; a
    # model built on the meta device (a fit check only) takes the tensors as they are
    on_meta = any(t.is_meta for t in model.state_dict().values())
    try:
        model.load_state_dict(theirs, assign=on_meta)
    except (ValueError, RuntimeError) as e:
        raise HarnessError(f"checkpoint {path}: {str(e).strip().splitlines()[-1].strip()}") from None
    return ckpt


def latest_checkpoint(work_dir: str) -> str:
    """The checkpoint mmengine names in work_dir/last_checkpoint (read relative to work_dir, so a
    moved or re-cloned tree still works), else the newest iter_*/epoch_*.pth."""
    marker = os.path.join(work_dir, "last_checkpoint")
    if os.path.exists(marker):
        with open(marker) as f:
            path = os.path.join(work_dir, os.path.basename(f.read().strip()))
        if os.path.exists(path):
            return path
    found = sorted(glob.glob(os.path.join(work_dir, "*.pth")), key=os.path.getmtime)
    if not found:
        raise HarnessError(f"no checkpoint in {work_dir}; run `python -m harness embedded` first")
    return found[-1]


_BUFFER_TAG = "__history_buffer__"


@HOOKS.register_module()
class SafeCheckpointHook(Hook):
    """Stores message_hub HistoryBuffers as plain data, so checkpoints load with
    weights_only=True and only `safe_globals()` allowlisted (see the module docstring)."""
    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        from mmengine.logging.history_buffer import HistoryBuffer

        scalars = checkpoint.get("message_hub", {}).get("log_scalars", {})
        for key, buf in list(scalars.items()):
            if isinstance(buf, HistoryBuffer):
                log, count = buf.data
                scalars[key] = {_BUFFER_TAG: True, "log_history": np.asarray(log, dtype=np.float64),
                                "count_history": np.asarray(count, dtype=np.int64),
                                "max_length": int(buf.max_length)}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        from mmengine.logging.history_buffer import HistoryBuffer

        scalars = checkpoint.get("message_hub", {}).get("log_scalars", {})
        for key, buf in list(scalars.items()):
            if isinstance(buf, dict) and buf.get(_BUFFER_TAG):
                scalars[key] = HistoryBuffer(list(buf["log_history"]), list(buf["count_history"]),
                                             buf["max_length"])


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook, with a save that a kill at any instant cannot break.

    mmengine deletes the checkpoint it no longer keeps *before* writing the new one, and writes
    the new one straight to its final name; a kill during the save left `last_checkpoint`
    naming a file that was gone or half written, and `--resume` had nothing to resume from.
    Here the new checkpoint is written to a temporary name in the same folder and renamed into
    place (atomic on POSIX), then `last_checkpoint` is rewritten the same way, and only then
    are the checkpoints beyond `max_keep_ckpts` removed. Every instant leaves a complete
    checkpoint that `last_checkpoint` names."""

    def _save_checkpoint_with_step(self, runner, step, meta):
        from mmengine.dist import is_main_process
        stale = []
        if self.max_keep_ckpts > 0 and (not self.keep_ckpt_ids or self.keep_ckpt_ids[-1] != step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:  # a deque with that maxlen
                stale.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        name = self.filename_tmpl.format(step)
        final = self.file_backend.join_path(self.out_dir, name)
        self.last_ckpt = final
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        tmp_name = f".{name}.tmp"
        runner.save_checkpoint(self.out_dir, tmp_name, self.file_client_args, save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta,
                               by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        os.replace(os.path.join(self.out_dir, tmp_name), final)
        _atomic_write(os.path.join(runner.work_dir, "last_checkpoint"), final)
        for old_step in stale:  # only now that the new checkpoint is complete and named
            old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old_step))
            if self.file_backend.isfile(old):
                self.file_backend.remove(old)


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
