"""The project's user commands: ``python -m soundclf COMMAND ...`` (``--help`` for each).

    python -m soundclf predict DATASET MODEL AUDIO [AUDIO ...]   classify recordings

The pipeline's stages are run by ``dvc repro`` (dvc.yaml, stages/); these commands use
what it made.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundclf import predict

COMMANDS = {"predict": predict}


def main(argv: list[str] | None = None) -> None:
    # the console script of `pip install -e .`, or python -m soundclf
    prog = "soundclf" if Path(sys.argv[0]).name == "soundclf" else "python -m soundclf"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.add_arguments(commands.add_parser(
            name, help=module.__doc__.splitlines()[0], description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    COMMANDS[args.command].run(args)


if __name__ == "__main__":
    main()
