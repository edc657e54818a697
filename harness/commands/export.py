"""`python -m harness export`: a harness checkpoint as a zoo pretrained-weights file.

    python -m harness export --model dhvn_nano --tag mnist5k \\
        --checkpoint work_dirs/embedded/mnist5k/dhvn_nano/seed0/iter_400.pth

writes zoo/weights/dhvn_nano.mnist5k.safetensors (or --out FILE): the network's tensors only
(no optimiser, no mmengine state), checked to fit the model built with the tag's shape
(`zoo.pretrained.PRETRAINED`), with the source checkpoint and its SHA-256 in the metadata.
"""
from __future__ import annotations

import hashlib
import os

from .. import options
from ..errors import HarnessError

__all__ = ["add_parser", "cmd_export"]


def add_parser(subparsers) -> str:
    p = subparsers.add_parser("export", help="a trained checkpoint as a pretrained tag's safetensors file",
                              description=__doc__.split("\n\n")[0])
    options.add(p, "model", required=True, help="one zoo model name")
    p.add_argument("--tag", required=True, help="the tag, e.g. mnist5k (zoo.pretrained.PRETRAINED lists them)")
    options.add(p, "checkpoint", required=True)
    p.add_argument("--out", help="output file (default: zoo/weights/<model>.<tag>.safetensors)")
    p.set_defaults(func=cmd_export)
    return "export"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_export_file(path: str) -> bool:
    """A safetensors file whose metadata names a model, a tag and a source (what cmd_export
    writes): the only kind of existing file --out may replace (`leaderboard.atomic`)."""
    import json
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if not 2 <= n <= 100 << 20:  # safetensors' own header limit; a text file reads as a huge n
            return False
        header = json.loads(f.read(n).decode("utf-8"))
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return isinstance(meta, dict) and {"model", "tag", "source_sha256"} <= set(meta)


def cmd_export(args, argv=()) -> int:
    import torch
    import zoo
    from safetensors.torch import save_file
    from zoo import pretrained

    from leaderboard.atomic import atomic_path

    from ..engine.checkpoint import load_checkpoint_file

    name = f"{args.model}.{args.tag}"
    if name not in pretrained.PRETRAINED:
        raise HarnessError(f"{name} is not a declared pretrained tag; declared: {', '.join(pretrained.PRETRAINED)}")
    tag = pretrained.PRETRAINED[name]
    out = args.out or tag.file
    options.check_writable(out, "weights file", done="nothing was written", owns=_is_export_file,
                           ours="a weights file written by export")
    state = load_checkpoint_file(args.checkpoint).get("state_dict") or {}
    net = {k[len("net."):]: v.contiguous() for k, v in state.items() if k.startswith("net.")}
    model = zoo.create_model(args.model, **tag.kwargs)
    try:
        model.load_state_dict(net)  # every key, every shape, and the router temperature checks
    except (RuntimeError, ValueError) as e:
        raise HarnessError(f"checkpoint {args.checkpoint} does not fit {name}: "
                           f"{str(e).strip().splitlines()[0]}") from None
    # cloned: tied weights (Exp11's embedding and head) share memory, which safetensors refuses;
    # loading writes the same values into the tied parameter twice
    tensors = {k: (v.detach().to(torch.float32) if v.is_floating_point() else v.detach()).clone()
               for k, v in model.state_dict().items()}
    # a temporary beside it, then a rename (a symlink's target is written; `leaderboard.atomic`);
    # 0644: shipped inside the package, readable by every user of an install
    with atomic_path(out, mode=0o644) as tmp:
        save_file(tensors, tmp, metadata=dict(model=args.model, tag=args.tag, source=os.path.relpath(args.checkpoint),
                                               source_sha256=_sha256(args.checkpoint), format="pt"))
    size = os.path.getsize(out)
    print(f"harness: wrote {out} ({size / 2**20:.2f} MiB, {len(tensors)} tensors) from {args.checkpoint}")
    return 0
