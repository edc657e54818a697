"""Fast selective scans used by the models. Same contracts as `naive.py`.

Mamba-1 (`selective_scan`), per-channel decay. A chunked closed form needs a
(Q x Q) decay matrix per channel *and* state entry, i.e. Q times more exp and multiply
work than the recurrence itself, which is why log-space chunked scans and Blelloch scans
lose to a loop on CPU. So this stays a loop over time, with everything that does not
depend on h computed ahead, vectorised over blocks of `block` tokens that fit in cache:

    dA  = exp2(delta * A log2(e))      exp2 is ~3x cheaper than exp on this CPU and agrees
                                        with exp(delta A) to a few fp32 ulps
    dBu = (delta u) outer B
    h_t = dBu_t + dA_t * h_{t-1}       the only sequential op: one in-place addcmul a token
    y_t = C_t . h_t                    one batched (1 x N) @ (N x Dm) matmul per block

The state is laid out (Bt, N, Dm) so that the last product is a fast matmul shape. The
in-place loop cannot go through autograd, so `_SelectiveScan` carries its own backward:
the same recurrence run backwards in time, gh_t = C_t gy_t + dA_{t+1} gh_{t+1}.

SSD (`ssd_scan`), one scalar decay per head: the chunked matmul form. Within a chunk of
length Q, with s_t the cumulative sum of a_t = delta_t[h] A[h] (all <= 0):

    y_t = sum_{j<=t} exp(s_t - s_j) (C_t . B_j) delta_j x_j  +  exp(s_t) C_t . h0
    h_next = exp(s_Q) h0 + sum_j exp(s_Q - s_j) delta_j x_j B_j^T

All chunks are done at once with batched matmuls; only h0 is carried chunk to chunk.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .naive import apply_skip_and_gate

__all__ = ["selective_scan", "ssd_scan", "selective_scan_flops", "ssd_scan_flops"]

_LOG2E = math.log2(math.e)
# Decays are floored at e^-20: a term that small is < 2e-9 of its neighbours (below fp32
# rounding), and the floor keeps subnormals, which make exp and matmul 10x slower, out.
_LOG_FLOOR = -20.0


def _exp_floor(log_decay):
    """exp of a float64 log-decay (<= 0), in fp32, floored at e^-20 and capped at 1.

    The cap matters for the masked upper triangle of the intra-chunk decay, s_t - s_j > 0 for
    j > t: its exp overflows to inf at strong decay, and although .tril() zeroes it in the
    forward pass, the backward pass multiplies the zero gradient by inf -> NaN in every weight.
    """
    return log_decay.float().clamp(min=_LOG_FLOOR, max=0.0).exp()


class _SelectiveScan(torch.autograd.Function):
    """y_t = C_t . h_t with h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t; no skip or gate.

    u, dt (Bt, L, Dm); A (Dm, N); B, C (Bt, L, N) -> y (Bt, L, Dm). Each block of tokens is
    handled time-major in small buffers, (n, Bt, N, Dm), so every token's state is one
    contiguous slab and C_t . h_t is a (1 x N) @ (N x Dm) product, a shape batched matmul
    does ~9x faster than (Dm x N) @ (N x 1). The backward pass runs the same recurrence
    backwards in time, gh_t = C_t gy_t + dA_{t+1} gh_{t+1}, recomputing dA per block.
    """

    @staticmethod
    def forward(ctx, u, dt, A, B, C, block):
        Bt, L, Dm = u.shape
        N = A.shape[1]
        n_max = min(block, L)
        A2 = (A * _LOG2E).t().contiguous()                       # (N, Dm): exp2(dt A2) = exp(dt A)
        keep = any(ctx.needs_input_grad)                          # backward needs every h_t
        hs = u.new_empty(L if keep else n_max, Bt, N, Dm)
        dA = u.new_empty(n_max, Bt, N, Dm)
        du, yb = u.new_empty(n_max, Bt, Dm), u.new_empty(n_max, Bt, Dm)
        y = torch.empty_like(u)
        h = u.new_zeros(Bt, N, Dm)
        for s in range(0, L, block):
            e = min(L, s + block)
            n = e - s
            a, buf, d = dA[:n], (hs[s:e] if keep else hs[:n]), du[:n]
            dt_b = dt[:, s:e].transpose(0, 1)                     # (n, Bt, Dm) views
            torch.mul(dt_b[:, :, None, :], A2, out=a).exp2_()
            torch.mul(dt_b, u[:, s:e].transpose(0, 1), out=d)
            torch.mul(d[:, :, None, :], B[:, s:e].transpose(0, 1)[..., None], out=buf)
            hb, ab = buf.unbind(0), a.unbind(0)                   # per-token views, made once
            hb[0].addcmul_(ab[0], h)
            for t in range(1, n):                                 # the only sequential work
                hb[t].addcmul_(ab[t], hb[t - 1])
            c_b = C[:, s:e].transpose(0, 1).reshape(n * Bt, 1, N)
            torch.bmm(c_b, buf.view(n * Bt, N, Dm), out=yb[:n].view(n * Bt, 1, Dm))
            y[:, s:e] = yb[:n].transpose(0, 1)
            h = hb[n - 1] if keep else h.copy_(hb[n - 1])         # buf is overwritten next block
        if keep:
            ctx.save_for_backward(u, dt, A, B, C, hs)
        ctx.block = block
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        u, dt, A, B, C, hs = ctx.saved_tensors
        block = ctx.block
        Bt, L, Dm = u.shape
        N = A.shape[1]
        n_max = min(block, L)
        A_t = A.t().contiguous()
        A2 = A_t * _LOG2E
        gu, gdt = torch.empty_like(u), torch.empty_like(dt)
        gB, gC = torch.empty_like(B), torch.empty_like(C)
        gA_t = torch.zeros_like(A_t)
        dA = u.new_empty(n_max, Bt, N, Dm)
        gh = u.new_empty(n_max, Bt, N, Dm)
        carry = u.new_zeros(Bt, N, Dm)                            # dA_{t+1} gh_{t+1}, block after
        for s in reversed(range(0, L, block)):
            e = min(L, s + block)
            n = e - s
            m = n * Bt
            a, g = dA[:n], gh[:n]
            dt_b, u_b = dt[:, s:e].transpose(0, 1), u[:, s:e].transpose(0, 1)
            gy_b = gy[:, s:e].transpose(0, 1).reshape(m, Dm, 1)
            B_b, C_b = B[:, s:e].transpose(0, 1), C[:, s:e].transpose(0, 1)
            torch.mul(dt_b[:, :, None, :], A2, out=a).exp2_()
            torch.mul(gy_b.view(n, Bt, 1, Dm), C_b[..., None], out=g)
            g[n - 1].add_(carry)
            gb, ab = g.unbind(0), a.unbind(0)
            for t in range(n - 2, -1, -1):
                gb[t].addcmul_(ab[t + 1], gb[t + 1])
            carry = a[0] * g[0]
            gC[:, s:e] = torch.bmm(hs[s:e].view(m, N, Dm), gy_b).view(n, Bt, N).transpose(0, 1)
            du_b = (dt_b * u_b).reshape(m, Dm, 1)
            gB[:, s:e] = torch.bmm(g.view(m, N, Dm), du_b).view(n, Bt, N).transpose(0, 1)
            gdu = torch.bmm(B_b.reshape(m, 1, N), g.view(m, N, Dm)).view(n, Bt, Dm)
            gu[:, s:e] = (gdu * dt_b).transpose(0, 1)
            # Through dA_t = exp(dt_t A): d/d(dt_t A) = gh_t * h_{t-1} * dA_t.
            g.mul_(a)
            g[1:].mul_(hs[s:e - 1])
            if s > 0:
                g[0].mul_(hs[s - 1])
            else:
                g[0].zero_()
            gdt_b = torch.sum(torch.mul(g, A_t, out=a), -2).addcmul_(gdu, u_b)
            gdt[:, s:e] = gdt_b.transpose(0, 1)
            gA_t += torch.mul(g, dt_b[:, :, None, :], out=a).sum((0, 1))
        return gu, gdt, gA_t.t(), gB, gC, None


def selective_scan(u, delta, A, B, C, D=None, z=None, reverse=False, block=16):
    """Mamba-1 selective scan (see naive.naive_selective_scan for shapes). Returns (Bt, L, Dm).

    `block` is the number of tokens whose decays are computed in one vectorised pass; 16
    keeps the (block, Bt, N, Dm) buffers in cache at Bt=8, Dm=256, N=16.
    """
    dtype = u.dtype
    u, delta, A, B, C = (x.float().contiguous() for x in (u, delta, A, B, C))
    z = None if z is None else z.float()
    if reverse:
        u, delta, B, C = (x.flip(1) for x in (u, delta, B, C))
        z = None if z is None else z.flip(1)
    y = _SelectiveScan.apply(u, delta, A, B, C, int(block))
    y = apply_skip_and_gate(y, u, D, z)
    if reverse:
        y = y.flip(1)
    return y.to(dtype)


def _ssd_chunks(x, dt, A_head, Bc, Cc, h, inplace):
    """SSD over a run of chunks: x (Bt,nc,Q,H,P), dt (Bt,nc,H,Q), Bc, Cc (Bt,nc,Q,N), h the state
    (Bt,H,N,P) entering the first chunk. Returns y head-major (Bt,nc,H,Q,P) and the state after.

    Every per-head scale sits on a small operand, not on the (.., Q, P) activations: dt_j on the
    columns of the intra-chunk matrix, dt_j exp(s_Q - s_j) on B's rows, exp(s_t) on C's rows. The
    carried-state term is accumulated onto the intra-chunk output by the same batched matmul.
    """
    x = x.transpose(2, 3).contiguous()                              # head-major, copied in cache
    Bt, nc, H, Q, P = x.shape
    N = Bc.shape[-1]
    # fp64 cumulative sums: s_t - s_j of two large sums loses |s| * 6e-8 in fp32.
    s = (dt * A_head[:, None]).double().cumsum(-1)                 # (Bt, nc, H, Q)
    log_d = (s[..., :, None] - s[..., None, :]).float()
    from_start = _exp_floor(s)                                     # exp(s_t), (Bt, nc, H, Q)
    to_end = _exp_floor(s[..., -1:] - s)                           # exp(s_Q - s_j)
    chunk_decay = from_start[..., -1]                              # (Bt, nc, H)

    CB = Cc @ Bc.transpose(-1, -2)                                 # (Bt, nc, Q, Q), shared by the heads
    if inplace:
        M = log_d.clamp_(_LOG_FLOOR, 0.0).exp_().tril_().mul_(CB[:, :, None]).mul_(dt[..., None, :])
    else:
        M = _exp_floor(log_d).tril() * CB[:, :, None] * dt[..., None, :]
    Bw = Bc[:, :, None] * (to_end * dt)[..., None]                 # (Bt, nc, H, Q, N)
    Cw = Cc[:, :, None] * from_start[..., None]
    states = Bw.transpose(-1, -2) @ x                              # each chunk's own state, (Bt,nc,H,N,P)

    # Carry the state across chunks (one multiply-add per chunk).
    if inplace:
        h0 = torch.empty_like(states)
        h0[:, 0] = h
        for c in range(nc - 1):
            torch.addcmul(states[:, c], h0[:, c], chunk_decay[:, c, :, None, None], out=h0[:, c + 1])
        h = torch.addcmul(states[:, -1], h0[:, -1], chunk_decay[:, -1, :, None, None])
    else:
        hs = []
        for c in range(nc):
            hs.append(h)
            h = torch.addcmul(states[:, c], h, chunk_decay[:, c, :, None, None])
        h0 = torch.stack(hs, dim=1)
    n = Bt * nc * H
    y = torch.baddbmm(Cw.reshape(n, Q, N) @ h0.reshape(n, N, P), M.reshape(n, Q, Q), x.reshape(n, Q, P))
    return y.view(Bt, nc, H, Q, P), h


def _chunk_len(chunk_size: int, L: int) -> int:
    """A sequence shorter than one chunk is one chunk of its own length: padding it would cost
    Q^2 per head in the intra-chunk product for L^2 of real work (at L=1, Q=16 the scan took as
    long as at L=16). Sequences of at least `chunk_size` tokens keep exactly their chunking."""
    return max(1, min(int(chunk_size), L))


def ssd_scan(u, delta, A_head, B, C, D=None, z=None, reverse=False, head_dim=None, chunk_size=16):
    """SSD scan, chunked matmul form (see naive.naive_ssd_scan for shapes). Returns (Bt, L, Dm).

    u (Bt,L,Dm); delta (Bt,L,H); A_head (H,); B, C (Bt,L,N); D (Dm,); z (Bt,L,Dm); heads
    are P = Dm // H consecutive channels. The intra-chunk product costs 2*Q*P per token
    and head, so short chunks win on CPU: 16 was fastest at Bt=8, Dm=256, N=16.
    Internally head-major, (Bt, nc, H, Q, P): one copy in, and one out that the D skip rides on.
    """
    dtype = u.dtype
    u, delta, A_head, B, C = (x.float() for x in (u, delta, A_head, B, C))
    z = None if z is None else z.float()
    inputs = (u, delta, A_head, B, C) + tuple(t for t in (D, z) if t is not None)
    inplace = not (torch.is_grad_enabled() and any(t.requires_grad for t in inputs))
    # a traced graph (torch.compile) cannot hold addcmul(out=<a strided slice>): the out-of-place
    # path, the same values (tested), lets the compiler plan the buffers
    inplace = inplace and not torch.compiler.is_compiling()
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
    N = B.shape[-1]
    Q = _chunk_len(chunk_size, L)
    pad = (-L) % Q
    nc = (L + pad) // Q
    if pad:  # padded tokens have delta=0: no decay and no input, so they change nothing
        u_p, delta, B, C = (F.pad(t, (0, 0, 0, pad)) for t in (u, delta, B, C))
    else:
        u_p = u
    x = u_p.view(Bt, nc, Q, H, P)                                  # channels-last chunks
    dt = delta.view(Bt, nc, Q, H).transpose(2, 3)                  # (Bt, nc, H, Q)
    Bc, Cc = B.reshape(Bt, nc, Q, N), C.reshape(Bt, nc, Q, N)
    D = None if D is None else D.float().view(H, P)
    # Segments of 256 tokens keep every intermediate in cache (at L=784 that halves the
    # time); h is carried from one segment to the next exactly as from chunk to chunk.
    # Each segment's head-major output goes back to channels-last with apply_skip_and_gate's
    # y + D u riding on that copy (one pass, the same rounding).
    seg = max(1, 256 // Q)
    h = u.new_zeros(Bt, H, N, P)
    out = x.new_empty(Bt, nc, Q, H, P) if inplace else None
    ys = []
    for c0 in range(0, nc, seg):
        c1 = min(nc, c0 + seg)
        y_seg, h = _ssd_chunks(x[:, c0:c1], dt[:, c0:c1], A_head, Bc[:, c0:c1], Cc[:, c0:c1], h, inplace)
        y_seg = y_seg.transpose(2, 3)                              # (Bt, c1 - c0, Q, H, P) view
        if not inplace:
            ys.append(y_seg if D is None else torch.addcmul(y_seg, x[:, c0:c1], D))
        elif D is None:
            out[:, c0:c1].copy_(y_seg)
        else:
            torch.addcmul(y_seg, x[:, c0:c1], D, out=out[:, c0:c1])
    if not inplace:
        out = ys[0] if len(ys) == 1 else torch.cat(ys, dim=1)
    y = out.reshape(Bt, nc * Q, Dm)[:, :L]
    y = y * F.silu(z) if z is not None else y.contiguous()
    if reverse:
        y = y.flip(1)
    return y.to(dtype)


def selective_scan_flops(Bt, L, Dm, N):
    """FLOPs of one Mamba-1 selective scan (either form; both do the same arithmetic).

    Per token, channel and state entry (Bt*L*Dm*N of them), counting a multiply-add as 2:
        delta * A            1
        exp                  1   (counted as one op)
        delta*u times B      1   (delta*u itself is Bt*L*Dm, counted below)
        h = dA*h + dBu       2
        y += C*h             2
    total 7*Bt*L*Dm*N, plus Bt*L*Dm for delta*u. The D skip (2 per channel-token) and the
    silu gate are left out: they are the same for every scan variant.
    """
    return 7 * Bt * L * Dm * N + Bt * L * Dm


def ssd_scan_flops(Bt, L, Dm, N, H, chunk_size=16):
    """Matmul FLOPs (2 x MACs) of `ssd_scan`'s chunked form.

    With Q = min(chunk_size, L), nc = ceil(L / Q) chunks (padding counts), P = Dm // H:
        C B^T per chunk (shared by heads)      2*Q*Q*N        * Bt*nc
        intra-chunk (CB*decay) @ (delta x)     2*Q*Q*P        * Bt*H*nc
        chunk states (x^T) @ B                 2*Q*P*N        * Bt*H*nc
        C @ h0 (carried state into outputs)    2*Q*N*P        * Bt*H*nc
        state carry h*decay + states           2*P*N          * Bt*H*nc
    Elementwise work (decays, masks, exp) and the skip/gate are not counted.
    """
    Q = _chunk_len(chunk_size, L)
    nc = -(-L // Q)
    P = Dm // H
    return Bt * nc * (2 * Q * Q * N + H * (2 * Q * Q * P + 4 * Q * P * N + 2 * P * N))
