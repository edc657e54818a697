"""Issue 21, "FLOP convention": Exp11's executed and dense FLOPs under both attention conventions.

The shipped exp11_dynamic_tiny weights (trained at 256 tokens; RoPE has no position table, so a
longer window only needs the model built for it) on the 16 evenly spaced pydocs test windows
that `run` counts (the task's flops_items), at each window length T:
  * per token, executed (hard routing, sparse) and dense (every token on GDN + softmax) FLOPs,
    counted as "allowed" (pairs the mask allows) and as "computed" (pairs the kernels multiply),
    and saved = 1 - executed / dense under each;
  * per routed layer, where the packed queries' pairs go: chosen queries' allowed pairs, padding
    queries' allowed pairs, and what the whole key blocks add on top.

    OMP_NUM_THREADS=1 python -m benchmarks.flop_conventions [--T 256 1024] [--json]
"""
from __future__ import annotations

import argparse
import json

import torch

import zoo
import zoo.flops as zf
from zoo.families.exp11 import causal_attention as ca
from zoo.ops.counting import cpu_sdpa_pairs


def load(T: int):
    shipped = zoo.create_model("exp11_dynamic_tiny.pydocs", pretrained=True)
    if T == shipped.max_seq_len:
        return shipped.eval()
    model = zoo.create_model("exp11_dynamic_tiny", max_seq_len=T)
    model.load_state_dict(shipped.state_dict())
    return model.eval()


def windows(T: int, n: int) -> torch.Tensor:
    from harness.measure.executed_flops import sample_indices
    from harness.suites.pydocs import PyDocs
    ds = PyDocs("test", max_seq_len=T)
    return torch.stack([ds[i]["inputs"] for i in sample_indices(len(ds), n)])


def packed_layers(model, x) -> list:
    """Per routed layer: the packing its attention queries ran on (one sparse forward)."""
    seen, forward = [], ca.CausalSelfAttention.forward

    def spy(self, h, queries=None):
        if queries is not None:
            seen.append(queries)
        return forward(self, h, queries)
    ca.CausalSelfAttention.forward = spy
    try:
        with torch.no_grad(), zoo.routing.execution(model, "sparse"):
            model(x)
    finally:
        ca.CausalSelfAttention.forward = forward
    return seen


def measure(T: int, n: int) -> dict:
    model, x = load(T), windows(T, n)
    r = zf.flops_report(model, x)
    out = dict(T=T, sequences=n, tokens=r["items"])
    for c, tail in (("allowed", ""), ("computed", "_computed")):
        out[c] = dict(executed_mflops_per_token=r["executed" + tail + "_per_item"] / 1e6,
                      dense_mflops_per_token=r["dense" + tail + "_per_item"] / 1e6,
                      saved=r["saved" + tail])
    layers = []
    for p in packed_layers(model, x):
        allowed = ca.sorted_query_pairs(p.index, convention="allowed")
        computed = ca.sorted_query_pairs(p.index, convention="computed")
        padding = int(((p.index + 1) * ~p.valid).sum())
        B, M = p.index.shape
        layers.append(dict(M=M, chosen_share=float(p.valid.sum()) / (B * T), padding_rows=int((~p.valid).sum()),
                           padding_share_of_rows=float((~p.valid).sum()) / (B * M),
                           allowed_pairs=allowed, computed_pairs=computed,
                           computed_over_allowed=computed / allowed, padding_share_of_allowed=padding / allowed,
                           computed_over_chosen_allowed=computed / (allowed - padding)))
    out["packed_layers"] = layers
    dense = cpu_sdpa_pairs(T, T, is_causal=True)
    out["dense_causal_computed_over_allowed"] = dense / (T * (T + 1) // 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--sequences", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--perf-out", metavar="PATH",
                    help="also write the figures as a Performance-section file (leaderboard/perf/flop_conventions.json)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = [measure(T, args.sequences) for T in args.T]
    if args.perf_out:
        from harness.records import env_info
        from leaderboard.atomic import atomic_write
        env = env_info("cpu")
        doc = dict(benchmark="flop_conventions", model="exp11_dynamic_tiny.pydocs",
                   command="python -m benchmarks.flop_conventions --perf-out " + args.perf_out,
                   conditions=dict(threads=1, torch=env.get("torch"), git_sha=(env.get("git_sha") or "")[:12]),
                   results=results)
        atomic_write(args.perf_out, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(f"T={r['T']} ({r['sequences']} pydocs test windows, {r['tokens']} tokens)")
        for c in ("allowed", "computed"):
            v = r[c]
            print(f"  {c:9s} executed {v['executed_mflops_per_token']:.4f} MFLOPs/token, dense "
                  f"{v['dense_mflops_per_token']:.4f}, saved {100 * v['saved']:.2f} %")
        print(f"  dense causal kernel: computed / allowed {r['dense_causal_computed_over_allowed']:.3f}")
        for i, l in enumerate(r["packed_layers"]):
            print(f"  routed layer {i + 1}: {100 * l['chosen_share']:.1f} % of tokens ask, M={l['M']}, padding rows "
                  f"{l['padding_rows']} ({100 * l['padding_share_of_rows']:.1f} % of packed rows), padding "
                  f"{100 * l['padding_share_of_allowed']:.1f} % of allowed pairs; computed / allowed "
                  f"{l['computed_over_allowed']:.3f}, / chosen queries' allowed {l['computed_over_chosen_allowed']:.3f}")


if __name__ == "__main__":
    main()
