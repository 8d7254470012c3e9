"""``python -m benchmarks [NAME [options]]``: list the benchmarks, or run one."""

from __future__ import annotations

import importlib
import sys

from benchmarks import available


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    benches = available()
    if not argv or argv[0] in ("-h", "--help", "list"):
        print("usage: python -m benchmarks NAME [options]   (NAME --help for its options)\n")
        width = max((len(n) for n in benches), default=0)
        for name, doc in benches.items():
            print(f"  {name:<{width}}  {doc}")
        return 0
    name, rest = argv[0].replace("-", "_"), argv[1:]
    if name not in benches:
        print(f"unknown benchmark {argv[0]!r}; available: {', '.join(benches)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"benchmarks.{name}")
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
