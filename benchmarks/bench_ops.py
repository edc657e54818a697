"""Time each op's token-loop reference against its fast form, side by side, in one run.

    python -m benchmarks.bench_ops                    # all ops at the target shapes, 2 threads
    python -m benchmarks.bench_ops --ops delta --threads 1 2 --repeats 21
    python -m benchmarks.bench_ops --json-out leaderboard/perf/ops.json   # also store the figures

For every case and thread count it prints min / median / max wall time of the naive loop and
of the fast form over the rounds, the speedup of the medians (and the spread of the per-round
speedups), the max abs difference of their outputs (next to the largest output magnitude, to
read it as a relative error), and each form's executed GFLOP/s as a share of the fp32 matmul
roof: a 1024 x 1024 matmul timed in the same run, at the same thread count, before and after
the cases. Calls are interleaved (naive, fast, naive, fast, ...) so that a noisy neighbour slows
both alike; the load average and other processes' CPU are recorded around every case
(`harness.measure.benchkit.LoadGate`; --max-load waits for quiet and marks disturbed figures).

Peers: flash-linear-attention's pure-PyTorch `naive_recurrent_gated_delta_rule` and
`naive_chunk_gated_delta_rule` (PyPI package fla-core or flash-linear-attention, CPU-importable)
are timed in the same alternation beside the delta rule when they import; they are never a
dependency of the zoo, and the column is absent without them.

Forward only unless --backward is given, which times forward + backward of a sum.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import statistics
import sys
import time
import types

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from zoo.ops.delta_rule import (
    chunk_gated_delta_rule,
    gated_delta_rule_flops,
    naive_gated_delta_rule_flops,
    naive_recurrent_gated_delta_rule,
)
from zoo.ops.selective_scan import (
    naive_selective_scan,
    naive_ssd_scan,
    selective_scan,
    ssd_scan,
)
from zoo.ops.selective_scan.chunk import selective_scan_flops, ssd_scan_flops


# docs/DESIGN.md, "Performance targets": speedup of the fast form over its own token loop
TARGETS = {"delta": 10.0, "s6": 3.0, "ssd": 3.0}
ROOF_N = 1024


def _harness_module(name):
    """harness/<name>.py by path, as a submodule of a private package: importing the harness
    package would pull in mmengine and every registration it makes."""
    if "harness" in sys.modules and hasattr(sys.modules["harness"], "__file__"):
        return importlib.import_module(f"harness.{name}")
    pkg = sys.modules.get("_bench_harness")
    if pkg is None:
        pkg = sys.modules["_bench_harness"] = types.ModuleType("_bench_harness")
        pkg.__path__ = [os.path.join(ROOT, "harness")]
    full = f"_bench_harness.{name}"
    if full not in sys.modules:
        spec = importlib.util.spec_from_file_location(full, os.path.join(ROOT, "harness", f"{name}.py"))
        module = sys.modules[full] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[full]


def fla_peers():
    """{name: fn(q, k, v, g, beta) -> o} for flash-linear-attention's pure-PyTorch references, or {}."""
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # "Triton is not supported on current platform": expected on CPU
            from fla.ops.gated_delta_rule.naive import naive_chunk_gated_delta_rule, naive_recurrent_gated_delta_rule
    except Exception:  # absent, or an install that does not import on this machine
        return {}
    # its recurrent form takes (q, k, v, beta, g), its chunked form (q, k, v, g, beta)
    return {"fla naive_recurrent": lambda q, k, v, g, beta: naive_recurrent_gated_delta_rule(q, k, v, beta, g)[0],
            "fla naive_chunk C=64": lambda q, k, v, g, beta: naive_chunk_gated_delta_rule(q, k, v, g, beta,
                                                                                        chunk_size=64)[0]}


def delta_rule_inputs(B, T, H, K, V, gen):
    q = F.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1)
    v = torch.randn(B, T, H, V, generator=gen)
    g = -5.0 * torch.rand(B, T, H, generator=gen)
    beta = torch.rand(B, T, H, generator=gen)
    return q, k, v, g, beta


def scan_inputs(Bt, L, Dm, N, gen, H=None):
    u = torch.randn(Bt, L, Dm, generator=gen)
    delta = F.softplus(torch.randn(Bt, L, Dm if H is None else H, generator=gen) - 1.0)
    A = -(0.5 + 3.5 * torch.rand((Dm, N) if H is None else (H,), generator=gen))
    B = torch.randn(Bt, L, N, generator=gen)
    C = torch.randn(Bt, L, N, generator=gen)
    D = torch.randn(Dm, generator=gen)
    z = torch.randn(Bt, L, Dm, generator=gen)
    return u, delta, A, B, C, D, z


def _ssd_naive_flops(Bt, L, Dm, N):
    # per token, channel and state entry: decay*h + (delta x) B (3, delta x counted per channel)
    # and y += C h (2); the per-head exp is negligible
    return 5 * Bt * L * Dm * N + Bt * L * Dm


def cases(ops, chunk_sizes, peers=None):
    """(op, name, naive_fn, fast_fn, args, flops, peers) for every benchmark case; fns return the
    output tensor; flops = (naive, fast) executed FLOPs; peers {name: fn} timed beside them."""
    gen = torch.Generator().manual_seed(0)
    if "delta" in ops:
        B, T, H, K, V = 1, 1024, 4, 64, 128
        args = delta_rule_inputs(B, T, H, K, V, gen)
        for c in chunk_sizes:
            yield ("delta", f"gated delta rule B=1 T=1024 H=4 K=64 V=128 chunk={c}",
                   lambda *a: naive_recurrent_gated_delta_rule(*a)[0],
                   lambda *a, c=c: chunk_gated_delta_rule(*a, chunk_size=c)[0], args,
                   (naive_gated_delta_rule_flops(B, T, H, K, V), gated_delta_rule_flops(B, T, H, K, V, c)),
                   peers or {})
    for L in (196, 784):
        if "s6" in ops:
            f = selective_scan_flops(8, L, 256, 16)
            yield ("s6", f"selective scan (Mamba-1) Bt=8 L={L} Dm=256 N=16, D and z",
                   naive_selective_scan, selective_scan, scan_inputs(8, L, 256, 16, gen), (f, f), {})
        if "ssd" in ops:
            for H in (4, 8):
                yield ("ssd", f"SSD scan Bt=8 L={L} Dm=256 N=16 H={H} (P={256 // H}), D and z",
                       naive_ssd_scan, ssd_scan, scan_inputs(8, L, 256, 16, gen, H=H),
                       (_ssd_naive_flops(8, L, 256, 16), ssd_scan_flops(8, L, 256, 16, H)), {})


def _git_sha():
    return _harness_module("records").git_label()


def timed(fn, args, backward):
    if backward:
        args = [a.detach().requires_grad_() for a in args]
    t0 = time.perf_counter()
    out = fn(*args)
    if backward:
        out.sum().backward()
    return time.perf_counter() - t0


def matmul_roof(repeats=7):
    """fp32 GFLOP/s of a 1024 x 1024 matmul at the current thread count: (median, min, max)."""
    a, b = torch.randn(ROOF_N, ROOF_N), torch.randn(ROOF_N, ROOF_N)
    a @ b
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    rate = [2 * ROOF_N ** 3 / t / 1e9 for t in ts]
    return statistics.median(rate), min(rate), max(rate)


def run_case(case, a, gate):
    op, name, naive, fast, args, (f_naive, f_fast), peers = case
    forms = {"naive": naive, "fast": fast, **peers}
    with torch.no_grad():
        ref = naive(*args)
        errs = {k: (ref - f(*args)).abs().max().item() for k, f in forms.items() if k != "naive"}
        scale = ref.abs().max().item()

    def rounds():
        with torch.enable_grad() if a.backward else torch.no_grad():
            for _ in range(a.warmup):
                for f in forms.values():
                    timed(f, args, a.backward)
            ts = {k: [] for k in forms}
            for _ in range(a.repeats):
                for k, f in forms.items():
                    ts[k].append(timed(f, args, a.backward))
        return ts

    ts, load = gate.run(rounds, retries=a.retries)
    ms = {k: [t * 1e3 for t in v] for k, v in ts.items()}
    mn, mf = statistics.median(ms["naive"]), statistics.median(ms["fast"])
    benchkit = _harness_module("benchkit")
    ratios = benchkit.pair_ratios(ms["naive"], ms["fast"])
    row = dict(op=op, case=name, threads=torch.get_num_threads(),
               naive_ms_median=mn, fast_ms_median=mf, naive_ms_min=min(ms["naive"]), fast_ms_min=min(ms["fast"]),
               naive_ms_max=max(ms["naive"]), fast_ms_max=max(ms["fast"]), speedup=mn / mf,
               speedup_spread=dict(min=min(ratios), max=max(ratios)), target=TARGETS[op], met=mn / mf >= TARGETS[op],
               max_abs_err=errs["fast"], max_abs_out=scale,
               naive_flops=f_naive, fast_flops=f_fast,
               naive_gflops_per_s=f_naive / mn / 1e6, fast_gflops_per_s=f_fast / mf / 1e6,
               # the loop's FLOPs over the fast form's time: the rate at which it does the op's work
               fast_useful_gflops_per_s=f_naive / mf / 1e6, load=load)
    if peers:
        row["peers"] = {k: dict(ms=benchkit.spread(ms[k]), max_abs_err=errs[k], fast_speedup=statistics.median(ms[k]) / mf)
                        for k in peers}
    return row


def _print_row(r, roof):
    share = lambda g: f"{100 * g / roof:4.1f}%"  # noqa: E731
    print(f"{r['case']:66s} {r['threads']:2d} {r['naive_ms_min']:7.2f}/{r['naive_ms_median']:7.2f}/"
          f"{r['naive_ms_max']:7.2f} {r['fast_ms_min']:6.2f}/{r['fast_ms_median']:6.2f}/{r['fast_ms_max']:6.2f}"
          f" {r['speedup']:6.2f}x ({r['speedup_spread']['min']:.2f}-{r['speedup_spread']['max']:.2f})"
          f" {r['max_abs_err']:8.1e}  roof share naive {share(r['naive_gflops_per_s'])} fast "
          f"{share(r['fast_gflops_per_s'])} (useful {share(r['fast_useful_gflops_per_s'])})"
          f"  load {r['load'].get('loadavg_before')}->{r['load'].get('loadavg_after')}", flush=True)
    for k, p in r.get("peers", {}).items():
        print(f"    peer {k:24s} {p['ms']['min']:8.2f}/{p['ms']['median']:8.2f}/{p['ms']['max']:8.2f} ms"
              f"  ours {p['fast_speedup']:.2f}x faster  max|diff to loop| {p['max_abs_err']:.1e}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[2], help="thread counts, each in turn (default 2)")
    p.add_argument("--repeats", type=int, default=9, help="timed calls per form (default 9)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per form first (default 2)")
    p.add_argument("--ops", nargs="+", default=["delta", "s6", "ssd"],
                   choices=["delta", "s6", "ssd"])
    p.add_argument("--chunk-sizes", type=int, nargs="+", default=[32],
                   help="chunk sizes to try for the delta rule (default 32, the op's default)")
    p.add_argument("--backward", action="store_true", help="time forward + backward")
    p.add_argument("--no-peers", action="store_true", help="skip flash-linear-attention's references")
    p.add_argument("--max-load", type=float, default=None,
                   help="other processes' cores above which a case waits, then counts as unreliable")
    p.add_argument("--max-wait", type=float, default=0.0, help="seconds a case waits for quiet (default 0)")
    p.add_argument("--retries", type=int, default=1, help="re-runs of a disturbed case (default 1)")
    p.add_argument("--json-out", metavar="FILE", help="also write the figures, conditions and command to FILE")
    a = p.parse_args(argv)
    allocator = _harness_module("runtime").tune_allocator_or_exit("bench_ops")
    benchkit = _harness_module("benchkit")
    gate = benchkit.LoadGate(a.max_load, a.max_wait)
    peers = {} if a.no_peers else fla_peers()
    print(f"torch {torch.__version__}, threads {a.threads}, {'forward+backward' if a.backward else 'forward'}, "
          f"{a.repeats} rounds; peers: {', '.join(peers) or 'none (flash-linear-attention not importable)'}")
    print(f"{'case':66s} th {'naive ms min/med/max':>23s} {'fast ms min/med/max':>20s} speedup (spread) max|err|")
    rows, roofs, loads = [], {}, []
    for threads in a.threads:
        torch.set_num_threads(threads)
        before = matmul_roof()
        first = len(rows)
        for case in cases(a.ops, a.chunk_sizes, peers):
            rows.append(run_case(case, a, gate))
            loads.append(rows[-1]["load"])
        after = matmul_roof()
        roof = statistics.median([before[0], after[0]])
        roofs[str(threads)] = dict(gflops_per_s=roof, before=before[0], after=after[0],
                                   min=min(before[1], after[1]), max=max(before[2], after[2]))
        print(f"  fp32 matmul roof at {threads} thread(s): {roof:.1f} GFLOP/s (before {before[0]:.1f}, after {after[0]:.1f})")
        for r in rows[first:]:
            for form in ("naive", "fast", "fast_useful"):
                r[f"{form}_roof_share"] = r[f"{form}_gflops_per_s"] / roof
            r["roof_gflops_per_s"] = roof
            _print_row(r, roof)
    if a.json_out:
        cmd = "python -m benchmarks.bench_ops " + " ".join(
            shlex.quote(t) for t in (sys.argv[1:] if argv is None else argv))
        reliable = [x.get("reliable") for x in loads]
        load = dict(loadavg_before=loads[0].get("loadavg_before"), loadavg_after=loads[-1].get("loadavg_after"),
                    other_load=max((x["other_load"] for x in loads if x.get("other_load") is not None), default=None),
                    attempts=max(x.get("attempts", 1) for x in loads), max_load=a.max_load,
                    reliable=None if a.max_load is None else all(reliable))
        doc = dict(benchmark="ops", command=cmd.strip(), repeats=a.repeats, warmup=a.warmup,
                   backward=a.backward, results=rows, roof=roofs, load=load, peers=sorted(peers),
                   conditions=dict(device="cpu", dtype="float32", threads=a.threads[0] if len(a.threads) == 1 else a.threads,
                                   torch=torch.__version__, python=platform.python_version(),
                                   cpu_count=os.cpu_count(), git_sha=_git_sha(), allocator=allocator["allocator"],
                                   loadavg_1m=round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None))
        os.makedirs(os.path.dirname(os.path.abspath(a.json_out)), exist_ok=True)
        with open(a.json_out, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
