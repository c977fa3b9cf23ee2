"""Command line: ``fastgate run|check|version``."""

from __future__ import annotations

import argparse
import logging
import sys

from fastgate import __version__
from fastgate.apidef.loader import load_api_dir
from fastgate.checks import extra_checks
from fastgate.config import Config, ConfigError, load_config
from fastgate.runner import run

__all__ = ["main"]

DEFAULT_CONFIG = "conf/fastgate.toml"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastgate`` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="fastgate", description="A Tyk-compatible API gateway.")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="start the gateway")
    run_p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="TOML config file")
    check_p = sub.add_parser("check", help="validate the config, API definitions and policies")
    check_p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="TOML config file")
    sub.add_parser("version", help="print the version")
    args = parser.parse_args(argv)

    if args.command == "version":
        print(f"fastgate {__version__}")
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.command == "check":
        return check(config)
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
        stream=sys.stderr,
    )
    return run(config)


def check(config: Config) -> int:
    """Print every problem in the config's API definitions and policies; 1 if there is any."""
    problems: list[str] = []
    result = load_api_dir(config.resolve(config.app_path))
    problems.extend(result.problems)
    problems.extend(extra_checks(config, result.apis))
    for problem in problems:
        print(problem)
    apis = len(result.apis)
    print(f"{apis} API definition{'s' if apis != 1 else ''} valid, {len(problems)} problem{'s' if len(problems) != 1 else ''}",
          file=sys.stderr)
    return 1 if problems else 0
