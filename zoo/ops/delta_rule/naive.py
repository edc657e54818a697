"""Gated delta rule, token by token: the specification in code.

Shapes (flash-linear-attention style, time-major per batch):
    q, k  (B, T, H, K)     v  (B, T, H, V)
    g     (B, T, H)  log-decay, <= 0
    beta  (B, T, H)  write strength in [0, 1]
    state S (B, H, K, V)

Per step t:
    S   <- exp(g_t) S
    v'  =  beta_t (v_t - S^T k_t)
    S   <- S + k_t v'^T
    o_t =  scale * S^T q_t

A token with g=0 and beta=0 leaves S bit-for-bit unchanged (exp(0) == 1 and
v' == 0), which is what lets models hide masked tokens from the state.
"""
from __future__ import annotations

import torch

__all__ = ["naive_recurrent_gated_delta_rule", "naive_gated_delta_rule_flops"]


def naive_recurrent_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None,
                                     output_final_state=False):
    """Reference gated delta rule. Returns (o (B,T,H,V), final_state (B,H,K,V) or None)."""
    dtype = v.dtype
    B, T, H, K = k.shape
    V = v.shape[-1]
    if scale is None:
        scale = K ** -0.5
    # fp32 throughout so that the reference is not the least accurate party in a comparison.
    # Heads are folded into the batch, (B*H, T, dim), so each step is a few batched matmuls.
    q, k, v = (x.float().transpose(1, 2).reshape(B * H, T, x.shape[-1]) for x in (q, k, v))
    decay = g.float().exp().transpose(1, 2).reshape(B * H, T, 1, 1)
    beta = beta.float().transpose(1, 2).reshape(B * H, T, 1, 1)
    if initial_state is None:
        S = q.new_zeros(B * H, K, V)
    else:
        S = initial_state.float().reshape(B * H, K, V)
    o = []
    for t in range(T):
        q_t, k_t, v_t = q[:, t, None], k[:, t, None], v[:, t, None]      # (B*H, 1, dim)
        S = S * decay[:, t]                                              # S <- exp(g_t) S
        v_new = beta[:, t] * (v_t - k_t @ S)                             # beta (v - S^T k)
        S = S + k_t.transpose(1, 2) @ v_new                              # S + k v'^T
        o.append((q_t @ S) * scale)                                      # scale S^T q
    o = torch.cat(o, dim=1).reshape(B, H, T, V).transpose(1, 2)
    final = S.reshape(B, H, K, V) if output_final_state else None
    return o.to(dtype), final


def naive_gated_delta_rule_flops(B, T, H, K, V):
    """FLOPs of the token loop, counting a multiply-add as 2 and a lone multiply/add as 1.

    Per token and head, on the K x V state:
        decay S*exp(g)              K*V     (one multiply per entry)
        S^T k                       2*K*V
        v - S^T k, times beta       2*V
        outer product k v'^T, add   2*K*V   (multiply + add per entry)
        S^T q                       2*K*V
        times scale                 V
    total = 7*K*V + 3*V per token and head (the exp of g is not counted).
    """
    return B * T * H * (7 * K * V + 3 * V)
