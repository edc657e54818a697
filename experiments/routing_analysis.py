"""Where does a trained routed model spend its compute? Per class, and per item difficulty.

    python -m experiments.routing_analysis work_dirs/embedded/mnist5k/dhvn_nano/seed0 dhvn_nano

For every router: the share of the full choice per true class, and the error rate of the eval
digits by the route they took (the items routed to the expensive path should be the harder ones).
Difficulty is measured independently of the routed model: the cross-entropy of the static form
(`--static WORK_DIR`), when given.
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F


def load(work_dir: str, model: str):
    """The network of a harness run on mnist5k, with its trained weights, in eval mode."""
    from harness.engine.checkpoint import latest_checkpoint, load_checkpoint_file
    from harness.engine.wrappers import build_network
    ckpt = load_checkpoint_file(latest_checkpoint(work_dir))
    net = build_network(model, num_classes=10, in_chans=1, img_size=28, mean=(0.1307,), std=(0.3081,))
    net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work_dir")
    ap.add_argument("model")
    ap.add_argument("--static", help="work dir of the static form, for an independent difficulty")
    args = ap.parse_args()
    import zoo
    from harness.suites.mnist5k import Mnist5k
    torch.set_num_threads(1)
    net = load(args.work_dir, args.model)
    test = Mnist5k("test")
    x, y = test.images, test.labels
    with torch.no_grad():
        logits = net(x)
        records = zoo.routing.trace(net)
    wrong = logits.argmax(-1) != y
    out = dict(model=args.model, error=float(wrong.float().mean()), routers={})
    difficulty = None
    if args.static:
        static = load(args.static, args.model + "_static" if "dhvn" in args.model else args.model + "_soft")
        with torch.no_grad():
            difficulty = F.cross_entropy(static(x), y, reduction="none")
    routers = {r.layer: r for r in zoo.routing.routers(net)}
    for rec in records:
        full = routers[rec.layer].full_choice
        d = rec.decisions.reshape(len(y), -1).float()
        full_share = (rec.decisions.reshape(len(y), -1) == rec.choices.index(full)).float().mean(1)
        per_class = {int(c): round(float(full_share[y == c].mean()), 3) for c in range(10)}
        info = dict(full=full, share_full=round(float(full_share.mean()), 3), per_class_full_share=per_class)
        if d.shape[1] == 1:  # per-sample routing: error and difficulty by the route taken
            by_route = {}
            for i, name in enumerate(rec.choices):
                m = rec.decisions.reshape(-1) == i
                if m.any():
                    by_route[name] = dict(n=int(m.sum()), error=round(float(wrong[m].float().mean()), 4))
                    if difficulty is not None:
                        by_route[name]["static_ce"] = round(float(difficulty[m].mean()), 4)
            info["by_route"] = by_route
        out["routers"][rec.layer] = info
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
