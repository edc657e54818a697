"""Why fixed-mix rows miss efficiency >= 0.9: dispatch glue, or branches that differ in GFLOP/s?

Efficiency is speedup / FLOPs ratio, so it is 1 only if every FLOP costs the same time. For
each routed layer, under the bench's fixed mix (`--policy skip=P`, the same FrozenPolicy draw),
this times four forms of the layer's mixing work, interleaved, no grad:

  dense   the layer in dense execution (every branch on every item, weighted mix)
  sparse  the layer in sparse execution (what `bench` times)
  ideal   the same branch work at the same routed sizes with the dispatch glue taken out: the
          item groups, gathers and packings are made before the clock starts, and the results
          are not scattered back
  FLOPs   of dense and sparse, counted (`zoo.flops.count_call_flops`)

  speedup  = dense / sparse           efficiency       = speedup / FLOPs ratio
  ideal x  = dense / ideal            ideal efficiency = ideal x / FLOPs ratio: what a zero-cost
                                       dispatch would reach, set by the branches' own GFLOP/s
  glue     = sparse / ideal - 1       the dispatch's share

DHVN: the layer is the whole HybridBlock (router, branches, fusion). ESH-Vision: the mixer
(`_mix_dense` / `_mix_sparse` on the layer's captured input; the router, MLP and ACT are the
same in both and left out); below its table, each ESH branch alone on every patch, with its
counted FLOPs and GFLOP/s.

The harness's allocator setting applies (`harness.runtime`).

    python experiments/archive/issue12_efficiency_bound.py [--models dhvn_nano eshvision_xs] [--skips 0.25 0.5 0.75]
        [--threads 1] [--rounds 15]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import zoo  # noqa: E402
from experiments._timing import interleaved  # noqa: E402
from harness import runtime  # noqa: E402
from harness.measure import benchkit  # noqa: E402
from zoo.layers.routed import gather_samples, rows_with, single_choice  # noqa: E402
from zoo.ops.dispatch import gather_items, gather_rows, pack_rows, select_items  # noqa: E402

INPUTS = {"dhvn_nano": (dict(num_classes=10, in_chans=1, img_size=28), (64, 1, 28, 28)),
          "eshvision_xs": (dict(num_classes=10, in_chans=1, img_size=28), (64, 1, 28, 28))}


def capture(model, x, cls: str):
    """[(layer, its positional inputs)] from one forward."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, a: seen.append((m, a)) and None)
             for m in model.modules() if type(m).__name__ == cls]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def dhvn_forms(block, xi):
    """dense, sparse and glue-free ideal forms of one HybridBlock on input xi."""
    route = block.router(xi.mean(dim=(2, 3)))          # the frozen policy's decisions
    groups = [select_items(route.mask(n)) for n in ("conv", "transformer", "both")]
    only_c, only_t, both = groups
    xc = gather_samples(xi, only_c, both) if only_c.numel() + both.numel() else None
    xt = gather_samples(xi, only_t, both) if only_t.numel() + both.numel() else None
    n_c, n_t = only_c.numel(), only_t.numel()

    def ideal():
        c = block.conv(xc) if xc is not None else None
        t = block.trans(xt) if xt is not None else None
        outs = []
        if n_c:
            outs.append(block.finish(c[:n_c]))
        if n_t:
            outs.append(block.finish(t[:n_t]))
        if both.numel():
            outs.append(block.finish(block.mix(c[n_c:], t[n_t:])))
        return outs

    def run(mode):
        with zoo.routing.execution(block, mode):
            return block(xi)
    return (lambda: run("dense")), (lambda: run("sparse")), ideal


def esh_forms(block, xi, entropy, hw):
    n = block.norm1(xi)
    route = block.router(torch.cat([n, entropy.unsqueeze(-1).to(n.dtype)], dim=-1))
    attn_mask = route.mask("attention")
    dense = lambda: block._mix_dense(xi, n, route, hw)  # noqa: E731
    sparse = lambda: block._mix_sparse(xi, n, route, hw)  # noqa: E731
    if single_choice(route) is not None:
        return dense, sparse, sparse
    images, mask = rows_with(~attn_mask)
    n_ssm = n if images is None else n.index_select(0, images)
    local = select_items(mask)
    n_items = gather_items(n_ssm, local, item_dims=2)
    images_a, mask_a = rows_with(attn_mask)
    n_att = n if images_a is None else n.index_select(0, images_a)
    packed = pack_rows(mask_a)
    nq = gather_rows(n_att, packed.index)

    def ideal():
        y = gather_items(block.ssm.scan(n_ssm, hw), local, item_dims=2)
        s = block.ssm_update(block.ssm.gate(y, n_items), n_items)
        a = block.attn_update(block.attn.attend(nq, block.attn.kv(n_att), hw, packed.index), nq)
        return s, a
    return dense, sparse, ideal


def measure(name: str, skip: float, rounds: int):
    kwargs, shape = INPUTS[name]
    torch.manual_seed(0)
    model = zoo.create_model(name, **kwargs).eval()
    x = torch.randn(*shape)
    policy = benchkit.FrozenPolicy(benchkit.policy_for(model, {"skip": skip}), seed=0)
    rows = []
    with benchkit.routing_context(model, "sparse", policy), torch.no_grad():
        if name.startswith("dhvn"):
            layers = [(b, a) for b, a in capture(model, x, "HybridBlock") if b.router is not None]
            forms = [dhvn_forms(b, a[0]) for b, a in layers]
        else:
            layers = capture(model, x, "ESHBlock")
            forms = [esh_forms(b, *a) for b, a in layers]
        for (block, _), (dense, sparse, ideal) in zip(layers, forms):
            f_dense = zoo.flops.count_call_flops(dense, model)
            f_sparse = zoo.flops.count_call_flops(sparse, model)
            forms = {"dense": dense, "sparse": sparse, "ideal": ideal}
            branches = {}
            if not name.startswith("dhvn"):
                # each branch alone on every patch: what it costs per FLOP
                xi, _, hw = layers[len(rows)][1]
                n = block.norm1(xi)
                branches = {"SSM": lambda n=n, hw=hw: block.ssm(n, hw), "attention": lambda n=n, hw=hw: block.attn(n, hw)}
            ts = interleaved({**forms, **branches}, rounds)
            med = {k: statistics.median(v) for k, v in ts.items()}
            rows.append(dict(layer=block.router.layer, flops_ratio=f_dense / f_sparse, **{k: med[k] for k in forms},
                             branches={k: (med[k], zoo.flops.count_call_flops(f, model)) for k, f in branches.items()}))
    return rows


def report(name, skip, rows) -> None:
    print(f"\n{name}, skip={skip}, {torch.get_num_threads()} thread(s), load {os.getloadavg()[0]:.2f}")
    print(f"  {'layer':22s} {'dense ms':>9s} {'sparse ms':>9s} {'ideal ms':>9s} {'FLOPs x':>8s} {'speedup':>8s} "
          f"{'eff':>5s} {'ideal x':>8s} {'ideal eff':>9s} {'glue':>6s}")
    tot = {k: sum(r[k] for r in rows) for k in ("dense", "sparse", "ideal")}
    for r in rows + [dict(layer="all routed layers", flops_ratio=None, **tot)]:
        fr = r["flops_ratio"]
        sp, ix = r["dense"] / r["sparse"], r["dense"] / r["ideal"]
        eff = f"{sp / fr:5.2f}" if fr else "    -"
        ieff = f"{ix / fr:9.2f}" if fr else "        -"
        print(f"  {r['layer']:22s} {r['dense']:9.2f} {r['sparse']:9.2f} {r['ideal']:9.2f} "
              f"{(f'{fr:8.2f}' if fr else '       -')} {sp:8.2f} {eff} {ix:8.2f} {ieff} "
              f"{(r['sparse'] / r['ideal'] - 1) * 100:5.1f}%")
    for r in rows:
        if r.get("branches"):
            print(f"    {r['layer']:20s} on every patch: " + "; ".join(
                f"{k} {ms:.2f} ms, {fl / 1e6:.1f} MFLOPs, {fl / ms / 1e6:.1f} GFLOP/s" for k, (ms, fl) in r["branches"].items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(INPUTS), choices=list(INPUTS))
    p.add_argument("--skips", nargs="+", type=float, default=[0.25, 0.5, 0.75])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=15)
    a = p.parse_args()
    print("allocator:", runtime.tune_allocator()["allocator"], f"(set {runtime.ENV_VAR}=system for glibc's defaults)")
    torch.set_num_threads(a.threads)
    for name in a.models:
        for skip in a.skips:
            report(name, skip, measure(name, skip, a.rounds))


if __name__ == "__main__":
    main()
