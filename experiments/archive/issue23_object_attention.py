"""Issue 23, ESH on clutter: per layer, the attention share on patches over the digit against
elsewhere, for a trained checkpoint on a cluttered suite (harness.measure.object_attention).

    python -m experiments.archive.issue23_object_attention --checkpoint work_dirs/.../iter_400.pth \
        --suite cluttered60 --model eshvision_xs [--out experiments/results/x.jsonl]
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--suite", default="cluttered60")
    p.add_argument("--model", default="eshvision_xs")
    p.add_argument("--limit", type=int, default=0, help="first N test canvases (0: all)")
    p.add_argument("--out", default=None, help="append one JSON line per layer")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from harness.loading import suite_network
    from harness.measure.object_attention import format_rows, object_attention
    sn = suite_network(args.model, args.suite, checkpoint=args.checkpoint)
    rows = object_attention(sn.net, sn.dataset, limit=args.limit)
    print(format_rows(rows))
    if args.out:
        with open(args.out, "a") as f:
            for r in rows:
                f.write(json.dumps(dict(r, model=args.model, suite=args.suite, checkpoint=args.checkpoint)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
