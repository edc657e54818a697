"""Pure functions; each fast form sits beside a short readable reference."""

from .delta_rule import (
    chunk_gated_delta_rule,
    gated_delta_rule_flops,
    naive_gated_delta_rule_flops,
    naive_recurrent_gated_delta_rule,
)
from .selective_scan import (
    naive_selective_scan,
    naive_ssd_scan,
    selective_scan,
    selective_scan_flops,
    ssd_scan,
    ssd_scan_flops,
)
