"""A plain PyTorch loop that reproduces the harness recipe, for fast architecture experiments.

Same data (mnist5k / pydocs datasets), same optimiser (AdamW, clip 1.0), warm-up then cosine,
same tau schedule and aux weights as the suite configs. Prints one JSON line per run.

    python -m experiments.quick_train --model dhvn_nano_static --iters 300 --batch 64 --lr 1e-2
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F


def kv(items):
    out = {}
    for it in items or []:
        k, v = it.split("=", 1)
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            pass
        out[k] = v
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--suite", default="mnist5k")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kw", nargs="*", help="model kwargs k=json")
    ap.add_argument("--aux", nargs="*", help="aux weights k=v")
    ap.add_argument("--tau", default="1.0,0.5")
    ap.add_argument("--eval-every", type=int, default=0)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--betas", default="0.9,0.999")
    ap.add_argument("--tag", default="")
    ap.add_argument("--save", default="", help="save the trained state dict here")
    ap.add_argument("--aug", default="", help="shift2: random +-2 px translation (torchvision RandomCrop with padding)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    import zoo
    from harness.engine.wrappers import build_network
    lm = args.suite == "pydocs"
    if lm:
        from harness.suites.pydocs import PyDocs
        train, test = PyDocs("train"), PyDocs("test")
        mk = dict(vocab_size=256, max_seq_len=256)
        aux_w = dict(load_balance=0.5)
    else:
        from harness.suites.mnist5k import Mnist5k
        train, test = Mnist5k("train"), Mnist5k("test")
        mk = dict(num_classes=10, in_chans=1, img_size=28, mean=(0.1307,), std=(0.3081,))
        aux_w = dict(load_balance=0.5, ponder=0.01, alpha_variance=0.1, gate_entropy=0.01)
    mk.update(kv(args.kw))
    aux_w.update({k: float(v) for k, v in kv(args.aux).items()})
    if args.model.startswith("timm:"):
        mk = {k: v for k, v in mk.items() if k not in ("vocab_size", "max_seq_len")}
    net = build_network(args.model, **mk)
    params = sum(p.numel() for p in net.parameters())
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    # the harness applies wd to every param (mmengine default); mirror that
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.wd,
                            betas=tuple(float(b) for b in args.betas.split(",")))
    t0s, t1s = (float(t) for t in args.tau.split(","))

    def lr_at(i):
        warm = min(1.0, 0.1 + 0.9 * i / max(args.warmup, 1))
        cos = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * i / max(args.iters, 1)))
        return args.lr * (warm if i < args.warmup else 1.0) * cos

    X = train.images if not lm else train.windows
    Y = train.labels if not lm else None
    n = len(X)
    g = torch.Generator().manual_seed(args.seed)
    perm, pos = torch.randperm(n, generator=g), 0
    net.train()
    t_start = time.perf_counter()
    log = []

    def evaluate():
        net.eval()
        with torch.no_grad():
            if lm:
                tot, cnt, shares = 0.0, 0, {}
                for i in range(0, len(test), 16):
                    w = test.windows[i:i + 16]
                    logits = net(w[:, :-1])
                    tot += float(F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="sum"))
                    cnt += w[:, 1:].numel()
                    for layer, s in zoo.routing.summarize(net).items():
                        for c, v in s["share"].items():
                            shares.setdefault(layer, {}).setdefault(c, 0.0)
                            shares[layer][c] += v * len(w) / len(test)
                res = dict(loss=tot / cnt, bpb=tot / cnt / math.log(2),
                           shares={l: {c: round(v, 3) for c, v in s.items()} for l, s in shares.items()})
            else:
                correct = 0
                shares = {}
                for i in range(0, len(test), 250):
                    xb, yb = test.images[i:i + 250], test.labels[i:i + 250]
                    correct += int((net(xb).argmax(-1) == yb).sum())
                    for layer, s in zoo.routing.summarize(net).items():  # noqa
                        for c, v in s["share"].items():
                            shares.setdefault(layer, {}).setdefault(c, 0.0)
                            shares[layer][c] += v * len(yb) / len(test)
                res = dict(top1=100.0 * correct / len(test), shares={l: {c: round(v, 3) for c, v in s.items()} for l, s in shares.items()})
        net.train()
        return res

    for it in range(args.iters):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(it)
        p = min(it / max(args.iters - 1, 1), 1.0)
        tau = t1s + (t0s - t1s) * 0.5 * (1 + math.cos(math.pi * p))
        if zoo.routing.routers(net):
            zoo.routing.set_tau(net, tau)
        if pos + args.batch > n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos:pos + args.batch]
        pos += args.batch
        if lm:
            w = X[idx]
            logits = net(w[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1).float(), w[:, 1:].flatten())
        else:
            xb = X[idx]
            if args.aug.startswith("shift"):
                from torchvision.transforms import v2
                pad = int(args.aug[5:])
                crop = v2.RandomCrop(28, padding=pad, fill=float(X.min()))
                xb = torch.stack([crop(img) for img in xb])
            logits = net(xb)
            loss = F.cross_entropy(logits.float(), Y[idx], label_smoothing=args.label_smoothing)
        ema = float(loss) if it == 0 else 0.95 * ema + 0.05 * float(loss)
        aux = net.aux_losses() if hasattr(net, "aux_losses") else {}
        total = loss + sum(aux_w.get(k, 0.0) * v for k, v in aux.items())
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if args.eval_every and (it + 1) % args.eval_every == 0 and it + 1 < args.iters:
            log.append(dict(it=it + 1, **evaluate()))
    wall = time.perf_counter() - t_start
    res = evaluate()
    if args.save:
        torch.save(dict(state_dict=net.state_dict(), model=args.model, kw=mk), args.save)
    flops = {}
    try:
        if not lm:
            x = test.images[torch.linspace(0, len(test) - 1, 64).round().long()]
        else:
            x = test.windows[torch.linspace(0, len(test) - 1, 16).round().long()][:, :-1]
        if not args.model.startswith("timm:"):
            net.eval()
            r = zoo.flops.flops_report(net, x)
            flops = dict(exec=r["executed_per_item"], dense=r["dense_per_item"], saved=round(r["saved"], 4))
        else:
            import zoo.flops as zf
            flops = dict(exec=zf.count_flops(net, x) / (x.shape[0] if not lm else x.numel()))
    except Exception as e:  # noqa: BLE001
        flops = dict(error=str(e)[:100])
    out = dict(model=args.model, tag=args.tag, iters=args.iters, batch=args.batch, lr=args.lr, seed=args.seed,
               kw=kv(args.kw), aux=kv(args.aux), params=params, wall_s=round(wall, 1),
               s_per_it=round(wall / args.iters, 4), train_loss=round(ema, 4), **res, flops=flops, curve=log,
               load=os.getloadavg()[0])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
