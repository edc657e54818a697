"""Gated delta rule: token-loop reference (`naive`) and chunked WY/UT form (`chunk`)."""
import functools

from .. import counting as _counting
from .chunk import chunk_gated_delta_rule as _chunk_gated_delta_rule
from .chunk import gated_delta_rule_flops
from .naive import naive_gated_delta_rule_flops, naive_recurrent_gated_delta_rule

__all__ = [
    "chunk_gated_delta_rule",
    "gated_delta_rule_flops",
    "naive_gated_delta_rule_flops",
    "naive_recurrent_gated_delta_rule",
]


@functools.wraps(_chunk_gated_delta_rule)
def chunk_gated_delta_rule(*args, **kwargs):
    # while FLOPs are counted, run as a custom op with the formula beside the op (ops.counting)
    if _counting.is_counting():
        return _counting.counted_gated_delta_rule(*args, **kwargs)
    return _chunk_gated_delta_rule(*args, **kwargs)
