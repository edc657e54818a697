"""Deprecated: the shared routing mechanics moved to `zoo.layers`, each family's blocks to its own
package under `zoo.families` (docs/DESIGN.md, "Layout"). `zoo.blocks.objectives` and
`zoo.blocks.causal_attention` still import for one release."""
