"""Draw the folded fraction of the trpzip2 Go model against temperature from a committed ``folding.json``.

The figure of ``scripts/run_go_generator.py`` (reference, generator by importance weights,
GHMC + BG move; 2-sigma bars), redrawn without rerunning anything::

    python scripts/plot_go_folding.py benchmarks/results/go-model-generator/folding.json docs/figures/go_fraction_folded.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_go_generator import plot  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folding", type=Path, help="folding.json written by scripts/run_go_generator.py")
    parser.add_argument("out", type=Path, help="image to write (.png, .svg, ...)")
    args = parser.parse_args(argv)
    if not args.folding.is_file():
        parser.error(f"{args.folding} not found")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(json.loads(args.folding.read_text()), args.out)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
