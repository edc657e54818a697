"""Gated delta rule: token-loop reference (`naive`) and chunked WY/UT form (`chunk`)."""
from .chunk import chunk_gated_delta_rule, gated_delta_rule_flops
from .naive import naive_gated_delta_rule_flops, naive_recurrent_gated_delta_rule

__all__ = [
    "chunk_gated_delta_rule",
    "gated_delta_rule_flops",
    "naive_gated_delta_rule_flops",
    "naive_recurrent_gated_delta_rule",
]
