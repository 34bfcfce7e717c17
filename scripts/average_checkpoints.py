"""Average the weights of two or more checkpoints of one model (stt.training.average).

The shipped default's fifth step was the mean of the fourth anneal's model and a warm restart
from it (MODEL_CARD.md); package the result with scripts/package_model.sh like any checkpoint:

    python scripts/average_checkpoints.py stt/assets/default/model.pt \\
        data_cache/runs/deep-real7-anneal/best.pt averaged.pt
    python scripts/average_checkpoints.py a.pt b.pt c.pt mean.pt --weights 1,1,2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stt.errors import ConfigError, exit_status  # noqa: E402
from stt.training.average import average_checkpoints  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", type=Path, nargs="+", help="two or more stt checkpoints")
    parser.add_argument("target", type=Path, help="where the averaged model checkpoint goes")
    parser.add_argument("--weights", help="each checkpoint's share, e.g. 1,1,2 (default: equal)")
    args = parser.parse_args(argv)

    def work() -> None:
        weights = None
        if args.weights:
            try:
                weights = [float(w) for w in args.weights.split(",")]
            except ValueError:
                raise ConfigError(
                    f"--weights {args.weights}: numbers separated by commas"
                ) from None
        print(f"{args.target}: {average_checkpoints(args.sources, args.target, weights)}")

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
