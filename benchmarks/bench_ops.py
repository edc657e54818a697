"""Time each op's token-loop reference against its fast form, side by side, in one run.

    python benchmarks/bench_ops.py                    # all ops at the target shapes, 2 threads
    python benchmarks/bench_ops.py --ops delta --threads 1 --repeats 21
    python benchmarks/bench_ops.py --json-out leaderboard/perf/ops.json   # also store the figures

For every case it prints the median (and min) wall time of the naive loop and of the fast
form, the speedup of the medians, and the max abs difference of their outputs (next to the
largest output magnitude, to read it as a relative error). Calls are
interleaved (naive, fast, naive, fast, ...) so that a noisy neighbour slows both alike.
Forward only unless --backward is given, which times forward + backward of a sum.
"""
from __future__ import annotations

import argparse
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
if "zoo" not in sys.modules:
    # Import zoo.ops without zoo/__init__.py, which pulls in every model and their deps.
    _pkg = types.ModuleType("zoo")
    _pkg.__path__ = [os.path.join(ROOT, "zoo")]
    sys.modules["zoo"] = _pkg

from zoo.ops.delta_rule import (  # noqa: E402
    chunk_gated_delta_rule,
    naive_recurrent_gated_delta_rule,
)
from zoo.ops.selective_scan import (  # noqa: E402
    naive_selective_scan,
    naive_ssd_scan,
    selective_scan,
    ssd_scan,
)


# issue 4 targets: speedup of the fast form over its own token loop
TARGETS = {"delta": 10.0, "s6": 3.0, "ssd": 3.0}


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


def cases(ops, chunk_sizes):
    """(op, name, naive_fn, fast_fn, args) for every benchmark case; fns return the output tensor."""
    gen = torch.Generator().manual_seed(0)
    if "delta" in ops:
        args = delta_rule_inputs(1, 1024, 4, 64, 128, gen)
        for c in chunk_sizes:
            yield ("delta", f"gated delta rule B=1 T=1024 H=4 K=64 V=128 chunk={c}",
                   lambda *a: naive_recurrent_gated_delta_rule(*a)[0],
                   lambda *a, c=c: chunk_gated_delta_rule(*a, chunk_size=c)[0], args)
    for L in (196, 784):
        if "s6" in ops:
            yield ("s6", f"selective scan (Mamba-1) Bt=8 L={L} Dm=256 N=16, D and z",
                   naive_selective_scan, selective_scan, scan_inputs(8, L, 256, 16, gen))
        if "ssd" in ops:
            for H in (4, 8):
                yield ("ssd", f"SSD scan Bt=8 L={L} Dm=256 N=16 H={H} (P={256 // H}), D and z",
                       naive_ssd_scan, ssd_scan, scan_inputs(8, L, 256, 16, gen, H=H))


def _git_sha():
    # harness/records.py by path: importing the harness package would pull in the whole zoo
    import importlib.util
    spec = importlib.util.spec_from_file_location("_harness_records", os.path.join(ROOT, "harness", "records.py"))
    records = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(records)
    return records.git_label()


def timed(fn, args, backward):
    if backward:
        args = [a.detach().requires_grad_() for a in args]
    t0 = time.perf_counter()
    out = fn(*args)
    if backward:
        out.sum().backward()
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--repeats", type=int, default=9, help="timed calls per form (default 9)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per form first (default 2)")
    p.add_argument("--ops", nargs="+", default=["delta", "s6", "ssd"],
                   choices=["delta", "s6", "ssd"])
    p.add_argument("--chunk-sizes", type=int, nargs="+", default=[64],
                   help="chunk sizes to try for the delta rule (default 64)")
    p.add_argument("--backward", action="store_true", help="time forward + backward")
    p.add_argument("--json-out", metavar="FILE", help="also write the figures, conditions and command to FILE")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'forward+backward' if a.backward else 'forward'}, median of {a.repeats}")
    print(f"{'case':66s} {'naive ms':>9s} {'fast ms':>8s} {'speedup':>8s} {'max|err|':>9s}")
    rows = []
    for op, name, naive, fast, args in cases(a.ops, a.chunk_sizes):
        with torch.no_grad():
            ref = naive(*args)
            err = (ref - fast(*args)).abs().max().item()
            scale = ref.abs().max().item()
        with torch.enable_grad() if a.backward else torch.no_grad():
            for _ in range(a.warmup):
                timed(naive, args, a.backward), timed(fast, args, a.backward)
            tn, tf = [], []
            for _ in range(a.repeats):
                tn.append(timed(naive, args, a.backward))
                tf.append(timed(fast, args, a.backward))
        mn, mf = statistics.median(tn), statistics.median(tf)
        print(f"{name:66s} {mn * 1e3:9.2f} {mf * 1e3:8.2f} {mn / mf:7.2f}x {err:9.1e}"
              f"   (min {min(tn) * 1e3:.2f} / {min(tf) * 1e3:.2f} ms; max|y| {scale:.1f})",
              flush=True)
        rows.append(dict(op=op, case=name, naive_ms_median=mn * 1e3, fast_ms_median=mf * 1e3,
                         naive_ms_min=min(tn) * 1e3, fast_ms_min=min(tf) * 1e3, speedup=mn / mf,
                         target=TARGETS[op], met=mn / mf >= TARGETS[op], max_abs_err=err, max_abs_out=scale))
    if a.json_out:
        cmd = "python benchmarks/bench_ops.py " + " ".join(
            shlex.quote(t) for t in (sys.argv[1:] if argv is None else argv))
        doc = dict(benchmark="ops", command=cmd.strip(), repeats=a.repeats, warmup=a.warmup,
                   backward=a.backward, results=rows,
                   conditions=dict(device="cpu", dtype="float32", threads=torch.get_num_threads(),
                                   torch=torch.__version__, python=platform.python_version(),
                                   cpu_count=os.cpu_count(), git_sha=_git_sha(),
                                   loadavg_1m=round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None))
        os.makedirs(os.path.dirname(os.path.abspath(a.json_out)), exist_ok=True)
        with open(a.json_out, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
