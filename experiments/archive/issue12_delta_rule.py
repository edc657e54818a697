"""Issue 12 kernel: the chunked gated delta rule before and after, against its token loop, side by side.

    flock /tmp/cpu-heavy.lock python experiments/archive/issue12_delta_rule.py --threads 1 2 --before 13cd698

`--before REV` loads zoo/ops/delta_rule/chunk.py as it was at that git revision (the form
before this issue's changes) next to the working tree's, and times, interleaved in each round,
the token loop, the old chunked form at chunk 64 and 32 and the new one at 64 and 32, at B=1,
T=1024, H=4, K=64, V=128, forward without autograd. Prints min / median / max over rounds,
the speedup of the medians over the loop, executed GFLOP/s, and the load average before and after.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from benchmarks.bench_ops import delta_rule_inputs  # noqa: E402
from experiments._timing import interleaved  # noqa: E402
from zoo.ops.delta_rule import naive_recurrent_gated_delta_rule  # noqa: E402
from zoo.ops.delta_rule.chunk import chunk_gated_delta_rule, gated_delta_rule_flops  # noqa: E402


def load_at(rev, path, package=None):
    """The module at `path` as of git revision `rev`; `package` (dotted) for relative imports."""
    src = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:{path}"], check=True, capture_output=True,
                         text=True).stdout
    f = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    f.write(src)
    f.close()
    name = f"{package}._before_{rev}" if package else f"_before_{rev}"
    spec = importlib.util.spec_from_file_location(name, f.name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--before", default="13cd698")
    p.add_argument("--shape", type=int, nargs=5, default=[1, 1024, 4, 64, 128], metavar=("B", "T", "H", "K", "V"))
    a = p.parse_args(argv)
    old = load_at(a.before, "zoo/ops/delta_rule/chunk.py")
    B, T, H, K, V = a.shape
    args = delta_rule_inputs(B, T, H, K, V, torch.Generator().manual_seed(0))
    forms = {"loop": lambda: naive_recurrent_gated_delta_rule(*args)[0]}
    for c in (64, 32):
        forms[f"before C={c}"] = lambda c=c: old.chunk_gated_delta_rule(*args, chunk_size=c)[0]
        forms[f"after C={c}"] = lambda c=c: chunk_gated_delta_rule(*args, chunk_size=c)[0]
    flops = {k: gated_delta_rule_flops(B, T, H, K, V, chunk_size=int(k.split("=")[1])) for k in forms if "=" in k}
    with torch.no_grad():
        ref = forms["loop"]()
        errs = {k: (f() - ref).abs().max().item() for k, f in forms.items()}
        for threads in a.threads:
            torch.set_num_threads(threads)
            print(f"--- B={B} T={T} H={H} K={K} V={V}, {threads} thread(s), loadavg before {os.getloadavg()[0]:.2f}")
            ts = interleaved(forms, a.rounds)
            loop = statistics.median(ts["loop"])
            for k, t in ts.items():
                med = statistics.median(t)
                gf = f"{flops[k] / med / 1e6:6.1f} GFLOP/s executed" if k in flops else ""
                print(f"{k:13s} {min(t):7.2f} / {med:7.2f} / {max(t):7.2f} ms (min/med/max)  "
                      f"loop/this {loop / med:5.2f}x  {gf}  max|diff to loop| {errs[k]:.1e}", flush=True)
            print(f"    loadavg after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
