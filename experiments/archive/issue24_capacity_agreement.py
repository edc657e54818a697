"""Issue 24, fixed capacity: how often a trained capacity model's eval decisions (its calibrated
threshold, each item alone) disagree with the top-k it trained with (k per batch / image /
sequence), on eval batches of the training batch size (`zoo.routing.capacity_agreement`).

    python -m experiments.archive.issue24_capacity_agreement --model dhvn_nano --suite mnist5k \
        --checkpoints /tmp/issue24/dhvn_nano_cap50/seed*/iter_400.pth [--batches 8] [--out F.jsonl]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--suite", required=True)
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--batches", type=int, default=8, help="eval batches per checkpoint")
    p.add_argument("--out", default=None, help="append one JSON line per checkpoint")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from torch.utils.data import default_collate
    import zoo
    from harness.loading import suite_network
    for ckpt in args.checkpoints:
        sn = suite_network(args.model, args.suite, checkpoint=ckpt)
        bs = int(sn.cfg.train_dataloader["batch_size"])
        per_layer = {}
        for b in range(args.batches):
            idx = range(b * bs, min((b + 1) * bs, len(sn.dataset)))
            if not idx:
                break
            x = default_collate([sn.dataset[i] for i in idx])["inputs"]
            with torch.no_grad():
                for layer, v in zoo.routing.capacity_agreement(sn.net, x).items():
                    per_layer.setdefault(layer, []).append(v)
        row = dict(model=args.model, suite=args.suite, checkpoint=ckpt, batch_size=bs, batches=args.batches,
                   layers={k: dict(disagree=statistics.mean(v["disagree"] for v in vs),
                                   above=statistics.mean(v["above"] for v in vs),
                                   capacity=vs[0]["capacity"], threshold=vs[0]["threshold"])
                           for k, vs in per_layer.items()})
        print(ckpt, " ".join(f"{k}: disagree {v['disagree'] * 100:.1f}% above {v['above'] * 100:.1f}%"
                             for k, v in row["layers"].items()))
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
