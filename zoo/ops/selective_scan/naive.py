"""Selective scans, token by token: the specification in code.

Two flavours, both channels-last (Bt = batch, L = length, Dm = channels, N = state size):

Mamba-1 (`naive_selective_scan`), a decay per channel and state entry:
    u, delta  (Bt, L, Dm)      A (Dm, N), negative reals
    B, C      (Bt, L, N)       D (Dm,) optional skip     z (Bt, L, Dm) optional gate
    h_t[d,n] = exp(delta_t[d] A[d,n]) h_{t-1}[d,n] + delta_t[d] B_t[n] u_t[d]
    y_t[d]   = sum_n C_t[n] h_t[d,n]  (+ D[d] u_t[d])  (then * silu(z_t[d]))

SSD / Mamba-2 (`naive_ssd_scan`), one scalar decay per head:
    channels are split into H heads of P = Dm // H channels (channel d belongs to head d // P)
    u (Bt, L, Dm)   delta (Bt, L, H)   A_head (H,)   B, C (Bt, L, N)   D (Dm,)   z (Bt, L, Dm)
    h_t[h,p,n] = exp(delta_t[h] A[h]) h_{t-1}[h,p,n] + delta_t[h] B_t[n] u_t[h*P+p]
    y_t[h*P+p] = sum_n C_t[n] h_t[h,p,n]  (+ D u) (* silu(z))

reverse=True scans from the end: identical to flipping L, scanning and flipping back.
The state starts at zero. Everything is computed in fp32 and returned in u's dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["naive_selective_scan", "naive_ssd_scan", "apply_skip_and_gate"]


def apply_skip_and_gate(y, u, D=None, z=None):
    """y + D*u, then * silu(z); shared by every scan so they agree on the epilogue."""
    if D is not None:
        y = torch.addcmul(y, u, D.float())
    if z is not None:
        y = y * F.silu(z.float())
    return y


def naive_selective_scan(u, delta, A, B, C, D=None, z=None, reverse=False):
    """Mamba-1 selective scan, one token at a time. Returns y (Bt, L, Dm)."""
    dtype = u.dtype
    u, delta, A, B, C = (x.float() for x in (u, delta, A, B, C))
    z = None if z is None else z.float()
    if reverse:
        u, delta, B, C = (x.flip(1) for x in (u, delta, B, C))
        z = None if z is None else z.flip(1)
    Bt, L, Dm = u.shape
    h = u.new_zeros(Bt, Dm, A.shape[1])
    y = u.new_empty(Bt, L, Dm)
    for t in range(L):
        dt = delta[:, t, :, None]                                  # (Bt, Dm, 1)
        h = torch.exp(dt * A) * h + (dt * u[:, t, :, None]) * B[:, t, None, :]
        y[:, t] = (h @ C[:, t, :, None])[..., 0]
    y = apply_skip_and_gate(y, u, D, z)
    if reverse:
        y = y.flip(1)
    return y.to(dtype)


def naive_ssd_scan(u, delta, A_head, B, C, D=None, z=None, reverse=False, head_dim=None):
    """SSD (per-head scalar decay) scan, one token at a time. Returns y (Bt, L, Dm).

    `head_dim` (P) is implied by delta's last dim H as Dm // H; pass it only as a check.
    """
    dtype = u.dtype
    u, delta, A_head, B, C = (x.float() for x in (u, delta, A_head, B, C))
    z = None if z is None else z.float()
    if reverse:
        u, delta, B, C = (x.flip(1) for x in (u, delta, B, C))
        z = None if z is None else z.flip(1)
    Bt, L, Dm = u.shape
    H = delta.shape[-1]
    P = Dm // H
    if head_dim is not None and head_dim != P:
        raise ValueError(f"head_dim={head_dim} but Dm={Dm} and H={H} give {P}")
    if P * H != Dm:
        raise ValueError(f"Dm={Dm} is not a multiple of H={H}")
    x = u.reshape(Bt, L, H, P)
    h = u.new_zeros(Bt, H, P, B.shape[-1])
    y = u.new_empty(Bt, L, H, P)
    for t in range(L):
        dt = delta[:, t, :, None, None]                            # (Bt, H, 1, 1)
        dA = torch.exp(dt * A_head[:, None, None])
        h = dA * h + (dt * x[:, t, :, :, None]) * B[:, t, None, None, :]
        y[:, t] = (h @ C[:, t, None, :, None])[..., 0]
    y = apply_skip_and_gate(y.reshape(Bt, L, Dm), u, D, z)
    if reverse:
        y = y.flip(1)
    return y.to(dtype)
