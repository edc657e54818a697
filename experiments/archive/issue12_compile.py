"""Where torch.compile helps on CPU, and where routing breaks its graphs (issue 12, item 6).

    python -m experiments.archive.issue12_compile [--threads 1] [--rounds 7] [--only MODEL ...]

For each case: graph breaks and graphs found by `torch._dynamo.explain` (no inductor compile),
then the eager and the compiled (inductor) forward in eval mode, interleaved over `rounds`
after the compile, their median and spread, and the compile time (first call). Routed models
route by argmax on their data, so their sparse paths have data-dependent shapes (gathers of the
items that chose a branch); a fresh mix can recompile, which the second input measures.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import zoo


def _load() -> str:
    return open("/proc/loadavg").read().split()[0]


def _time(fn, x) -> float:
    t0 = time.perf_counter()
    with torch.no_grad():
        fn(x)
    return time.perf_counter() - t0


def case(name, model, x, x2, rounds):
    model.eval()
    torch._dynamo.reset()
    explain = torch._dynamo.explain(model)(x)
    compiled = torch.compile(model)
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            compiled(x)
    except Exception as e:  # an inductor failure is a finding, not the end of the run
        msg = next((line for line in str(e).splitlines() if "Error" in line), str(e).splitlines()[0])
        print(f"{name:<34} graphs {explain.graph_count:>3} breaks {explain.graph_break_count:>3}  "
              f"inductor failed after {time.perf_counter() - t0:.1f} s: {type(e).__name__}: {msg[:160]}",
              flush=True)
        return
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        compiled(x2)  # another batch: another routing mix
    second_s = time.perf_counter() - t0
    eager, comp = [], []
    for _ in range(rounds):
        eager.append(_time(model, x))
        comp.append(_time(compiled, x))
    me, mc = statistics.median(eager), statistics.median(comp)
    print(f"{name:<34} graphs {explain.graph_count:>3} breaks {explain.graph_break_count:>3}  "
          f"compile {compile_s:7.1f} s  2nd input {second_s:6.2f} s  eager {me * 1e3:8.2f} ms "
          f"[{min(eager) * 1e3:.2f}-{max(eager) * 1e3:.2f}]  compiled {mc * 1e3:8.2f} ms "
          f"[{min(comp) * 1e3:.2f}-{max(comp) * 1e3:.2f}]  eager/compiled {me / mc:5.2f}x", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--only", nargs="+", help="these models only")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load before {_load()}")
    torch.manual_seed(0)
    digits = lambda: torch.randn(64, 1, 28, 28)
    only = args.only
    for name in ("dhvn_nano_static", "dhvn_nano", "eshvision_xs_soft", "eshvision_xs"):
        if only and name not in only:
            continue
        model = zoo.create_model(name, num_classes=10, in_chans=1, img_size=28)
        case(f"{name} (64x1x28x28)", model, digits(), digits(), args.rounds)
    for name in ("exp11_baseline_tiny", "exp11_dynamic_tiny"):
        if only and name not in only:
            continue
        model = zoo.create_model(name, max_seq_len=1024, vocab_size=256)
        ids = lambda: torch.randint(0, 256, (1, 1024))
        case(f"{name} (1x1024 tokens)", model, ids(), ids(), args.rounds)
    print(f"load after {_load()}")


if __name__ == "__main__":
    main()
