"""Entry point: ``python -m simulator [flags]`` or ``main(argv)``; ``create_app(settings)`` for embedding.

Flags mirror ``simulator.settings`` (``--help`` lists them); each also reads ``BATCHERY_SIM_<NAME>``.
The server is one uvicorn process on ``--host``/``--port`` (default 127.0.0.1:8100).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from config.errors import ConfigError
from simulator.app import SimulatorApp, build_app
from simulator.prompt_tokens import load_encodings
from simulator.settings import FIELDS, SettingsError, SimulatorSettings, load_settings


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser; options left out keep their environment or default value."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="An OpenAI-compatible upstream with rate limits, latency and faults.",
        epilog="Every flag can also be set as BATCHERY_SIM_<NAME>, e.g. BATCHERY_SIM_ERROR_RATE=0.1.",
        argument_default=argparse.SUPPRESS,
    )
    for field in FIELDS:
        if field.is_switch:
            parser.add_argument(field.flag, dest=field.name, action="store_true", help=field.help)
        else:
            parser.add_argument(field.flag, dest=field.name, metavar=field.metavar, help=field.help)
    return parser


def settings_from_args(argv: list[str] | None, environ: Mapping[str, str] | None = None) -> SimulatorSettings:
    """Settings from the command line and the environment; SettingsError names the bad flag or variable."""
    namespace = build_parser().parse_args(argv)
    return load_settings(vars(namespace), os.environ if environ is None else environ)


def create_app(options: SimulatorSettings | None = None) -> SimulatorApp:
    """The ASGI app for ``options`` (defaults when None). Reads the tiers file; raises ConfigError on it."""
    return build_app(options if options is not None else SimulatorSettings())


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until interrupted; returns the process exit status."""
    import uvicorn

    try:
        settings = settings_from_args(argv)
        app = create_app(settings)
    except (SettingsError, ConfigError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    load_encodings()  # before it listens, so that no request waits for the tokenizer
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        workers=1,
        lifespan="on",
        timeout_keep_alive=30,
        backlog=4096,
    )
    return 0
