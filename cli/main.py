"""``batchery``: dev, api, worker, flower, beat, sim, db, submit, batch, keys, budgets, top.

Bad arguments exit 2 with a usage message; a bad configuration exits 2 naming the variable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from config.errors import BatcheryError
from infra.log_setup import setup_process_logging

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    from cli import batch, budgets, commands, dev, dispatcher_cmd, keys, submit, top

    parser = argparse.ArgumentParser(prog="batchery", description="A job queue for OpenAI-compatible APIs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev.add_parser(sub)
    commands.add_api_parser(sub)
    commands.add_worker_parser(sub)
    commands.add_beat_parser(sub)
    dispatcher_cmd.add_parser(sub)
    commands.add_flower_parser(sub)
    commands.add_sim_parser(sub)
    commands.add_db_parser(sub)
    submit.add_parser(sub)
    batch.add_parser(sub)
    keys.add_parser(sub)
    budgets.add_parser(sub)
    top.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["sim"]:  # the simulator parses its own flags
        from cli.commands import run_simulator

        return run_simulator(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    handler: Handler = args.handler
    try:
        setup_process_logging()
        return handler(args)
    except BatcheryError as exc:
        print(f"batchery: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
