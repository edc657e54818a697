"""Selective scans: token-loop references (`naive`) and the fast forms models call (`chunk`)."""
import functools

from .. import counting as _counting
from .chunk import selective_scan as _selective_scan
from .chunk import selective_scan_flops, ssd_scan_flops
from .chunk import ssd_scan as _ssd_scan
from .naive import naive_selective_scan, naive_ssd_scan

__all__ = [
    "naive_selective_scan",
    "naive_ssd_scan",
    "selective_scan",
    "selective_scan_flops",
    "ssd_scan",
    "ssd_scan_flops",
]


# While FLOPs are counted, the scans run as custom ops with the formulas beside them
# (ops.counting); otherwise these are the plain functions plus one flag check.
@functools.wraps(_selective_scan)
def selective_scan(*args, **kwargs):
    if _counting.is_counting():
        return _counting.counted_selective_scan(*args, **kwargs)
    return _selective_scan(*args, **kwargs)


@functools.wraps(_ssd_scan)
def ssd_scan(*args, **kwargs):
    if _counting.is_counting():
        return _counting.counted_ssd_scan(*args, **kwargs)
    return _ssd_scan(*args, **kwargs)
