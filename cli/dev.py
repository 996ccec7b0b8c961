"""``batchery dev``: everything on one machine: API, one worker per tier, beat, Flower, and the
simulator when no provider key is set. Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx

from cli.commands import ROOT, flower_command
from cli.dev_key import ensure_dev_key
from cli.flower_auth import flower_env
from cli.migrations import upgrade
from config.settings import get_settings

SIM_KEY = "sk-sim-local-development"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("dev", help="run API, workers, beat, Flower (and the simulator) locally")
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--flower-port", type=int, default=5555)
    parser.add_argument("--sim-port", type=int, default=8100)
    parser.add_argument("--no-flower", action="store_true")
    parser.set_defaults(handler=run_dev)


def _spawn(name: str, argv: list[str], env: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
    return name, subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True)


def _wait_http(url: str, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def run_dev(args: argparse.Namespace) -> int:
    settings = get_settings()
    upgrade(settings.database_url)
    dev_key = None if settings.auth_disabled else ensure_dev_key(settings, ROOT / "var" / "dev-api-key")
    env = os.environ.copy()
    flower_login, flower_note = flower_env(settings, env)
    me = [sys.executable, "-m", "cli.main"]
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    using_sim = not settings.has_provider_key
    if using_sim:
        env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{args.sim_port}/v1"
        env["OPENAI_API_KEY"] = SIM_KEY
        children.append(_spawn("simulator", [*me, "sim", "--port", str(args.sim_port)], env))
    children.append(_spawn("api", [*me, "api", "--port", str(args.api_port)], env))
    for tier in settings.tiers.tiers:
        worker = [*me, "worker", "--tier", tier, "--name", f"{tier}@%h"]
        if tier != next(iter(settings.tiers.tiers)):
            worker.append("--no-control")
        children.append(_spawn(f"worker:{tier}", worker, env))
    children.append(_spawn("beat", [*me, "beat"], env))
    if not args.no_flower:
        children.append(_spawn("flower", flower_command("127.0.0.1", args.flower_port), flower_login))
    api_url = f"http://127.0.0.1:{args.api_port}"
    ready = _wait_http(f"{api_url}/healthz")
    print()
    print(f"  API        {api_url}   (docs: {api_url}/docs){'' if ready else '  (not answering yet)'}")
    if not args.no_flower:
        login = flower_note or "login from BATCHERY_FLOWER_USER / BATCHERY_FLOWER_PASSWORD"
        print(f"  Flower     http://127.0.0.1:{args.flower_port}   ({login})")
    if using_sim:
        print(f"  Simulator  http://127.0.0.1:{args.sim_port}/v1   (no OPENAI_API_KEY set)")
    print(f"  Database   {settings.database_url}")
    if dev_key:
        print(f"  API key    {dev_key}   (tenant default, every scope; kept in var/dev-api-key)")
        print(f"             curl -H 'authorization: Bearer {dev_key}' {api_url}/v1/jobs")
    else:
        print("  API key    none needed: BATCHERY_AUTH_DISABLED=true")
    print("  Ctrl-C stops everything.\n", flush=True)
    return _supervise(children)


def _supervise(children: list[tuple[str, subprocess.Popen[bytes]]]) -> int:
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        for name, child in children:
            if child.poll() is not None:
                print(f"batchery dev: {name} exited with {child.returncode}; stopping", file=sys.stderr)
                code = 1
                stopping = True
                break
        time.sleep(0.3)
    for _name, child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for _name, child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    return code
