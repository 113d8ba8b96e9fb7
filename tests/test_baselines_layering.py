"""rlmeta.baselines is a building block: importing it loads neither the algorithms nor Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Not rlmeta.run: the package entry point (`import rlmeta`) installs the algorithm registry.
FORBIDDEN = ("rlmeta.maml", "rlmeta.rl2", "rlmeta.distributed", "ray", "torch")


def modules_loaded_by(statement: str) -> list[str]:
    """The FORBIDDEN packages (and their submodules) in sys.modules after `statement`, run in a
    fresh interpreter on this checkout."""
    code = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps(sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') "
        f"for f in {FORBIDDEN!r}))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    return json.loads(result.stdout)


def test_importing_the_baselines_loads_no_algorithm_and_no_ray() -> None:
    assert modules_loaded_by("import rlmeta.baselines") == []
    assert "rlmeta.rl2" in modules_loaded_by("import rlmeta.baselines, rlmeta.rl2")
