"""The routing mechanics every family shares, the zoo's `timm.layers` (docs/DESIGN.md, "Layout").

* `router`: the one `Router` (sample, patch and token granularity) and its `Route`;
* `router_controls`, `router_state`: execution, forced choices, temperature and the FLOPs budget
  as per-thread contexts (`zoo.routing` re-exports them);
* `routed`: the routed-block skeleton (single choice, taken weight, dense mix, gather/assemble);
* `routed_block`: the protocol every routed block follows (`RoutedBlock`, `routed_calls`);
* `objectives`: the routing objectives, one object each;
* `base`: the base model classes (timm's vision contract, the causal-LM contract);
* `family`: the `Family` descriptor and the table of families.

Nothing here imports a family; the gathers and scatters themselves live in `zoo.ops.dispatch`.
"""
