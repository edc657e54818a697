"""Deprecated: the families moved to `zoo.families` (docs/DESIGN.md, "Layout"). `zoo.models.dhvn`,
`zoo.models.eshvision` and `zoo.models.exp11` still import, as their model modules, for one release."""
