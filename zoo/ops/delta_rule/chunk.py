"""Gated delta rule in chunked WY/UT form, plain PyTorch (autograd works through it).

Same contract as `naive.naive_recurrent_gated_delta_rule`. Within one chunk of length C
that starts from state S0, let gamma_t be the cumulative sum of g inside the chunk,
Gamma_t = exp(gamma_t) and D_tj = exp(gamma_t - gamma_j) for j <= t (0 above). Unrolling
the recurrence, the values actually written (v'_t, rows of U) satisfy

    (I + A) U = beta*V - (beta*Gamma*K) S0,    A_tj = beta_t D_tj k_t.k_j   (j < t)

Since A = diag(Gamma) A~ diag(1/Gamma) with the decay-free A~_tj = beta_t k_t.k_j, the
inverse is T = D * T~ (elementwise) with T~ = (I + A~)^-1, one unit-triangular solve that
involves no decays at all. Then

    W  = T (beta Gamma K) = Gamma * (T~ (beta K))       Ut = (D * T~)(beta V)
    U  = Ut - W S0
    O  = scale * [(D * QK^T) U + Gamma Q S0]           (QK^T keeps j <= t)
    S1 = Gamma_C S0 + (D_C. * K)^T U

Everything but U, S1 and the (Gamma Q) S0 term is computed for all chunks at once with batched
matmuls. The Python loop over chunks does three small matmuls per chunk ((Gamma Q) S0, U, then
S1); the outputs of all chunks are then one batched matmul. At 1 thread that loop is half the
time and runs at ~80 GFLOP/s, about 85 % of the fp32 matmul roof: its 6*K*V FLOPs per token
and head do not depend on the chunk size, so the loop, not the chunk form, bounds the speedup.

Decays are floored at e^-20 (`_exp_floor`): a term that small is < 2e-9 of its
neighbours, below fp32 rounding, and the floor keeps subnormals (which make exp and
matmul 10x slower or more) out of every product.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["chunk_gated_delta_rule", "gated_delta_rule_flops"]

_LOG_FLOOR = -20.0


def _exp_floor(log_decay):
    """exp of a float64 log-decay (<= 0), in fp32, floored at e^-20.

    The ceiling at 0 matters for the masked upper triangle of D, where the difference is
    positive: unclamped, it overflows to inf, and the zero gradient that `tril` sends back
    times inf is NaN.
    """
    return log_decay.float().clamp(min=_LOG_FLOOR, max=0.0).exp()


def _to_chunks(x, n_chunks, chunk_size, pad):
    """(B, T, H, *) -> (N, B, H, C, *) as a permuted view, T zero-padded to N*C."""
    B, T, H = x.shape[:3]
    x = x.float()
    if pad:
        x = F.pad(x, (0, 0) * (x.dim() - 2) + (0, pad))
    x = x.reshape(B, n_chunks, chunk_size, H, *x.shape[3:])
    return x.permute(1, 0, 3, 2, *range(4, x.dim()))


def _carry(W, Ut, QG, kd, gamma_end, S, inplace):
    """The sequential part, per chunk n from the state S_n at its start:

        Qs_n = (Gamma Q)_n S_n     U_n = Ut_n - W_n S_n     S_{n+1} = gamma_end_n S_n + Kd_n^T U_n

    Returns Qs (N, BH, C, V), U (N, BH, C, V) and the final state. The inter-chunk output term
    Qs is taken here, while S_n is at hand, rather than from a stack of all N states afterwards:
    that stack was a fresh N*K*V buffer per call, written and read once. kd is (N, BH, C, K) and
    enters transposed as a view (BLAS reads it transposed, no copy). In place (no autograd) the
    loop writes U into Ut's storage and updates S in its own buffer; with autograd it stays out
    of place (views of one buffer share a version counter).
    """
    N = W.shape[0]
    if inplace:
        Qs = torch.empty_like(Ut)
        for n in range(N):
            torch.bmm(QG[n], S, out=Qs[n])
            Ut[n].baddbmm_(W[n], S, alpha=-1.0)
            S.mul_(gamma_end[n]).baddbmm_(kd[n].transpose(1, 2), Ut[n])
        return Qs, Ut, S
    qs, written = [], []
    for n in range(N):
        qs.append(QG[n] @ S)
        U = torch.baddbmm(Ut[n], W[n], S, alpha=-1.0)
        written.append(U)
        S = torch.baddbmm(S * gamma_end[n], kd[n].transpose(1, 2), U)
    return torch.stack(qs), torch.stack(written), S


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None,
                           output_final_state=False, chunk_size=32):
    """Chunked gated delta rule. Returns (o (B,T,H,V), final_state (B,H,K,V) or None).

    Shapes as in the naive reference: q, k (B,T,H,K); v (B,T,H,V); g, beta (B,T,H).
    T need not be a multiple of `chunk_size`: the tail is padded with g=0, beta=0 tokens,
    which leave the state untouched, and their outputs are dropped.
    Under autocast it runs in fp32 and returns o in v's dtype: autocast would cast some matmuls
    to half precision and leave the float64 decay terms beside them, and baddbmm refuses mixed dtypes.

    chunk_size 32 (not 64): at B=1, T=1024, H=4, K=64, V=128 it executes 37 % fewer FLOPs (the
    C^2 terms halve; the K*V terms do not depend on C) and runs faster at 1 and 2 threads.
    """
    if torch.is_autocast_enabled(q.device.type):
        with torch.autocast(device_type=q.device.type, enabled=False):
            o, final = chunk_gated_delta_rule(q.float(), k.float(), v.float(), g.float(), beta.float(), scale,
                                              initial_state, output_final_state, chunk_size)
        return o.to(v.dtype), final
    dtype = v.dtype
    B, T, H, K = k.shape
    V = v.shape[-1]
    C = int(chunk_size)
    if scale is None:
        scale = K ** -0.5
    pad = (-T) % C
    N = (T + pad) // C
    BH = B * H
    inputs = (q, k, v, g, beta) + (() if initial_state is None else (initial_state,))
    # no autograd: temporaries are updated in place (no fresh buffer per elementwise step)
    inplace = not (torch.is_grad_enabled() and any(x.requires_grad for x in inputs))

    # q and k stacked along the chunk rows, (N,B,H,2C,K), so [Q; K] K^T is one matmul.
    qk = torch.stack([_to_chunks(x, N, C, pad) for x in (q, k)], dim=3).reshape(N, B, H, 2 * C, K)
    q, k = qk[..., :C, :], qk[..., C:, :]
    v, g, beta = (_to_chunks(x, N, C, pad) for x in (v, g, beta))

    # float64 cumulative sums: D_tj is a difference of two sums that can reach -C*|g|, and
    # in fp32 that difference would carry |gamma| * 6e-8 of error into exp().
    gc = g.double().cumsum(-1)
    gamma = _exp_floor(gc)                                            # Gamma_t
    to_end = _exp_floor(gc[..., -1:] - gc)                            # D_Cj
    log_d = (gc[..., :, None] - gc[..., None, :]).float()
    # D, (N,B,H,C,C); its upper triangle (exp(0) = 1 after the ceiling) is never used unmasked:
    # T~ is lower triangular, and P below is masked once
    decay = log_d.clamp_(_LOG_FLOOR, 0.0).exp_() if inplace else _exp_floor(log_d)

    qkk = qk @ k.transpose(-1, -2)                                    # [QK^T; KK^T]
    # a unitriangular solve reads only the strictly lower triangle of A~ (LAPACK's diag='U',
    # uplo='L'): no tril, no identity added. T~ from X (I + A~) = I: the same inverse, and this
    # side runs ~2x faster on CPU.
    a_tilde = qkk[..., C:, :] * beta[..., :, None]
    eye = torch.eye(C, dtype=qkk.dtype, device=qkk.device)
    t_tilde = torch.linalg.solve_triangular(a_tilde, eye.expand_as(a_tilde), upper=False,
                                            left=False, unitriangular=True)
    t_beta = t_tilde * beta[..., None, :]                             # T~ diag(beta)
    W = ((t_beta @ k) * gamma[..., None]).reshape(N, BH, C, K)
    Ut = ((t_beta * decay) @ v).reshape(N, BH, C, V)
    QG = (q * gamma[..., None]).reshape(N, BH, C, K)
    kd = (k * to_end[..., None]).reshape(N, BH, C, K)
    gamma_end = gamma[..., -1].reshape(N, BH, 1, 1)
    if initial_state is None:
        S = qk.new_zeros(BH, K, V)
    else:
        S = initial_state.float().reshape(BH, K, V)
        S = S.clone() if inplace else S                               # the caller's tensor stays as it was
    Qs, U, S = _carry(W, Ut, QG, kd, gamma_end, S, inplace)

    # O = scale * [(D * QK^T) U + (Gamma Q) S0], all chunks in one batched matmul.
    P = qkk[..., :C, :] * decay
    P = (P.tril_() if inplace else P.tril()).reshape(N * BH, C, C)
    o = torch.baddbmm(Qs.reshape(N * BH, C, V), P, U.reshape(N * BH, C, V), beta=scale, alpha=scale)
    o = o.reshape(N, B, H, C, V).permute(1, 0, 3, 2, 4).reshape(B, N * C, H, V)[:, :T]
    final = S.reshape(B, H, K, V) if output_final_state else None
    return o.to(dtype), final


def gated_delta_rule_flops(B, T, H, K, V, chunk_size=32):
    """Matmul FLOPs (2 x MACs) that `chunk_gated_delta_rule` executes.

    With C = chunk_size and N = ceil(T / C) chunks (padding is computed, so it counts), per
    batch, head and chunk:
        [Q; K] K^T                      2 * 2C*K*C     = 4*C*C*K
        (I + A~)^-1, dense trsm on I    C*C*(C-1)      (C*(C-1)/2 MACs per RHS column)
        T~ (beta K)                     2*C*C*K
        (D*T~)(beta V)                  2*C*C*V
        U = Ut - W S0                   2*C*K*V
        S1 = Gamma S0 + Kd^T U          2*C*K*V
        O = (D*QK^T) U + (Gamma Q) S0   2*C*C*V + 2*C*K*V
    Elementwise work (decays, masks, exp, scaling, the Gamma_C S0 product) is not counted.
    """
    C = int(chunk_size)
    N = -(-T // C)
    per_chunk = (4 * C * C * K + C * C * (C - 1) + 2 * C * C * K + 2 * C * C * V
                 + 4 * C * K * V + 2 * C * (C + K) * V)
    return B * H * N * per_chunk
