"""Issue 12: why Mamba-1's selective scan stays near 3x its token loop in eager PyTorch (measured).

    flock /tmp/cpu-heavy.lock python experiments/archive/issue12_mamba1_bound.py --threads 1 2

At bench_ops.py's shapes (Bt=8, Dm=256, N=16, L=196 and 784) it times, interleaved:
  * the token loop (naive_selective_scan) and the fast form (selective_scan) at block 4..32;
  * the parts of any eager form that keeps the recurrence a loop over time:
      - "chain": the L sequential in-place multiply-adds h_t = a_t * h_{t-1} + b_t alone, on
        (Bt, N, Dm) slabs, block by block through a 16-token buffer as the fast form keeps them
        (plus the copy into it: the floor of the sequential part);
      - "precompute": exp2(delta A), (delta u) B and the C . h products for all tokens, vectorised
        (work with no dependence between tokens: the floor of the rest, at full vector width).
No form that keeps the recurrence a loop of in-place multiply-adds can beat loop / chain (the
precompute, here over whole sequences out of cache, is timed only to show its size). A chunked closed form would
need a (Q x Q) decay per channel and state entry (Q times the exp and multiply work), and a
log-space cumulative product over- or underflows within a few tokens at these decays.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from benchmarks.bench_ops import scan_inputs  # noqa: E402
from experiments._timing import interleaved  # noqa: E402
from zoo.ops.selective_scan import naive_selective_scan, selective_scan  # noqa: E402


def parts(u, delta, A, B, C):
    """(chain, precompute) callables over the same inputs, time-major (L, Bt, N, Dm) slabs."""
    Bt, L, Dm = u.shape
    N = A.shape[1]
    A2 = (A * math.log2(math.e)).t().contiguous()
    dt = delta.transpose(0, 1).contiguous()
    du = (delta * u).transpose(0, 1).contiguous()
    Bt_ = B.transpose(0, 1).contiguous()
    Ct = C.transpose(0, 1).reshape(L * Bt, 1, N)
    a = torch.exp2(dt[:, :, None, :] * A2)                       # (L, Bt, N, Dm)
    b = du[:, :, None, :] * Bt_[..., None]
    h = torch.empty_like(b)

    buf = torch.empty_like(b[:16])

    def chain():
        # block by block through a 16-token buffer, as the fast form does (in cache)
        prev = None
        for s in range(0, L, 16):
            n = min(16, L - s)
            hb, ab = buf[:n].copy_(b[s:s + n]).unbind(0), a[s:s + n].unbind(0)
            if prev is not None:
                hb[0].addcmul_(ab[0], prev)
            for t in range(1, n):
                hb[t].addcmul_(ab[t], hb[t - 1])
            prev = hb[n - 1]

    def precompute():
        torch.mul(dt[:, :, None, :], A2, out=a).exp2_()
        torch.mul(du[:, :, None, :], Bt_[..., None], out=b)
        torch.bmm(Ct, h.view(L * Bt, N, Dm))

    return chain, precompute


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--lengths", type=int, nargs="+", default=[196, 784])
    a = p.parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for threads in a.threads:
            torch.set_num_threads(threads)
            print(f"--- {threads} thread(s), loadavg before {os.getloadavg()[0]:.2f}")
            for L in a.lengths:
                u, delta, A, B, C, D, z = scan_inputs(8, L, 256, 16, gen)
                chain, pre = parts(u, delta, A, B, C)
                forms = {"loop": lambda: naive_selective_scan(u, delta, A, B, C, D, z)}
                for blk in (4, 8, 16, 32):
                    forms[f"fast block={blk}"] = lambda blk=blk: selective_scan(u, delta, A, B, C, D, z, block=blk)
                forms["chain"], forms["precompute"] = chain, pre
                ts = interleaved(forms, a.rounds)
                med = {k: statistics.median(v) for k, v in ts.items()}
                print(f"Bt=8 L={L} Dm=256 N=16")
                for k, v in ts.items():
                    print(f"  {k:16s} {min(v):7.2f} / {med[k]:7.2f} / {max(v):7.2f} ms (min/med/max)  "
                          f"loop/this {med['loop'] / med[k]:5.2f}x", flush=True)
                print(f"  ceiling loop / chain = {med['loop'] / med['chain']:.2f}x; the chain is "
                      f"{100 * med['chain'] / med['fast block=16']:.0f} % of the fast form's time (block 16)", flush=True)
            print(f"    loadavg after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
