"""Routing pictures, one module per family (dhvn, eshvision, exp11), drawn by `harness.commands.visualize`."""
