"""Selective scans: token-loop references (`naive`) and the fast forms models call (`chunk`)."""
from .chunk import selective_scan, selective_scan_flops, ssd_scan, ssd_scan_flops
from .naive import naive_selective_scan, naive_ssd_scan

__all__ = [
    "naive_selective_scan",
    "naive_ssd_scan",
    "selective_scan",
    "selective_scan_flops",
    "ssd_scan",
    "ssd_scan_flops",
]
