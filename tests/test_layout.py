"""The layout's boundaries, read from the imports (DESIGN.md, "Boundaries"): building blocks
import no algorithm, runtime or driving code; algorithms import neither Ray nor the runtime; the
runtime knows no algorithm; the driving code asks the `Algorithm` contract instead of testing
algorithm names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rlmeta"
ALGORITHMS = ("rlmeta.maml", "rlmeta.rl2")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _within(names: set[str], packages: tuple[str, ...]) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in packages)}


def _forbidden_imports(paths: list[Path], packages: tuple[str, ...]) -> dict[str, set[str]]:
    found = {str(path.relative_to(ROOT)): _within(_imports(path), packages) for path in paths}
    return {name: names for name, names in found.items() if names}


def test_the_driving_code_tests_no_algorithm_names() -> None:
    for path in sorted((PACKAGE / "run").glob("*.py")):
        text = path.read_text()
        assert not re.search(r"algorithm\s*[!=]=|[!=]=\s*['\"](maml|rl2)['\"]", text), path.name
    assert _forbidden_imports(sorted((PACKAGE / "run").glob("*.py")), ALGORITHMS) == {}


def test_building_blocks_import_no_algorithm_runtime_or_driving_code() -> None:
    # The package entry point installs the registry (rlmeta.run.build) and is the public API.
    core = [p for p in sorted(PACKAGE.glob("*.py")) if p.name != "__init__.py"]
    blocks = core + sorted((PACKAGE / "baselines").glob("*.py"))
    forbidden = (*ALGORITHMS, "rlmeta.run", "rlmeta.distributed", "ray")
    assert _forbidden_imports(blocks, forbidden) == {}


def test_algorithms_import_neither_ray_nor_the_runtime() -> None:
    paths = [p for name in ("maml", "rl2") for p in sorted((PACKAGE / name).glob("*.py"))]
    assert _forbidden_imports(paths, ("rlmeta.run", "rlmeta.distributed", "ray")) == {}


def test_the_runtime_knows_no_algorithm_and_no_driving_code() -> None:
    paths = sorted((PACKAGE / "distributed").glob("*.py"))
    assert _forbidden_imports(paths, (*ALGORITHMS, "rlmeta.run")) == {}


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("import ray\nfrom rlmeta.maml.inner import adapt\nimport rlmeta.tasks\n")
    assert _within(_imports(module), ("ray", *ALGORITHMS)) == {"ray", "rlmeta.maml.inner"}
