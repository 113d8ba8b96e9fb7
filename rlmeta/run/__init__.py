"""The driving code: what assembles the building blocks and runs them.

`build` (the one algorithm registry), `train` (the driver's loop), `evaluation` (fast adaptation
on held-out tasks) and `cli` (what a person types). Nothing below `rlmeta/` imports this package
but the package's own `__init__`, which imports `build` so every config knows the registered
algorithms' sections.
"""
