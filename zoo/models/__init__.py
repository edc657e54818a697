"""One file per family; variants are registered at the bottom of each."""
from . import dhvn, eshvision, exp11  # noqa: F401
