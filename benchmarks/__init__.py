"""redfleet benchmarks: one module per benchmark (``benchmarks/<name>.py`` with a ``main(argv) -> int``).

``python -m benchmarks`` lists them; ``python -m benchmarks NAME [options]`` runs one (``--help`` for its options).
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> dict[str, str]:
    """Benchmark name -> first line of its module docstring (read without importing it)."""
    out: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules([str(HERE)]), key=lambda i: i.name):
        if info.name.startswith("_") or info.ispkg:
            continue
        path = HERE / f"{info.name}.py"
        try:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        except (OSError, SyntaxError):
            doc = ""
        out[info.name] = doc.strip().splitlines()[0] if doc.strip() else ""
    return out
