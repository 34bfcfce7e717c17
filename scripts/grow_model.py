"""Grow a checkpoint's model into more channels or stacks with the same function.

The recipe's ``grow`` stage (scripts/train_default_model.sh) uses it to start a bigger model
where a trained one stands; the result is ``init_from`` material for ``stt train``.

    python scripts/grow_model.py stt/assets/default/model.pt grown.pt --stacks 4
    python scripts/grow_model.py stt/assets/default/model.pt start.pt --dropout 0  # same shape
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stt.errors import exit_status  # noqa: E402
from stt.training.grow import grow_checkpoint  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="an stt checkpoint (model.pt, best.pt, ...)")
    parser.add_argument("target", type=Path, help="where the grown model checkpoint goes")
    parser.add_argument("--channels", type=int, help="residual channels (default: unchanged)")
    parser.add_argument("--stacks", type=int, help="dilation stacks (default: unchanged)")
    parser.add_argument("--dropout", type=float,
                        help="training-time dropout of the copy (default: unchanged)")  # fmt: skip
    args = parser.parse_args(argv)

    def work() -> None:
        grown = grow_checkpoint(args.source, args.target, args.channels, args.stacks,
                                args.dropout)  # fmt: skip
        print(f"{args.target}: {grown}")

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
