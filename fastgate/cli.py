"""Command line: ``fastgate run|check|secret|version|import-oas``."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from pathlib import Path

import orjson

from fastgate import __version__
from fastgate.build import describe
from fastgate.apidef.loader import load_api_dir
from fastgate.apidef.import_oas import ImportOptions, ImportProblem, import_openapi, parse_document
from fastgate.checks import check_storage, check_tls_files, extra_checks, extra_warnings
from fastgate.config import Config, ConfigError, load_config, secret_problem
from fastgate.runner import run
from fastgate.apidef.loader import decode_definition
from fastgate.apidef.spec import DefinitionError
from fastgate.auth import check_auth_settings

__all__ = ["main"]

DEFAULT_CONFIG = "conf/fastgate.toml"
DEFAULT_SECRET_FILE = "conf/local.secret"  # git-ignored; `make run` passes it as FASTGATE_SECRET


def local_secret(path: Path) -> tuple[str, bool]:
    """The secret in ``path`` and whether it was just created (32 random hex digits, mode 0600).

    Raises ``ValueError`` when the file holds a secret the gateway would refuse.
    """
    try:
        secret = path.read_text().strip()
        created = False
    except FileNotFoundError:
        secret = secrets.token_hex(16)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret + "\n")
        created = True
    problem = secret_problem(secret) if secret else "secret: the file is empty"
    if problem:
        raise ValueError(f"{path}: {problem}")
    return secret, created


def print_local_secret(path: Path, *, quiet: bool = False) -> int:
    """``fastgate secret``: the secret on standard output, how to use it on standard error."""
    try:
        secret, created = local_secret(path)
    except (OSError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(secret)
    if not quiet:
        print(f"Gateway API secret {'generated into' if created else 'read from'} {path} (keep it private).\n"
              f"Call the Gateway API from this machine with it, for example:\n"
              f"  curl -H 'X-Tyk-Authorization: {secret}' http://localhost:8080/tyk/apis",
              file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastgate`` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="fastgate", description="A Tyk-compatible API gateway.")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="start the gateway")
    run_p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="TOML config file")
    check_p = sub.add_parser("check", help="validate the config, API definitions and policies")
    check_p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="TOML config file")
    secret_p = sub.add_parser("secret", help="print the Gateway API secret kept in a local file, "
                                             "generating a random one the first time")
    secret_p.add_argument("--file", "-f", default=DEFAULT_SECRET_FILE, help="where the secret is kept")
    secret_p.add_argument("--quiet", "-q", action="store_true", help="print only the secret")
    sub.add_parser("version", help="print the version and which build runs (mypyc-compiled or pure Python)")
    imp = sub.add_parser("import-oas", help="make a Tyk OAS API definition from an OpenAPI 3.0/3.1 document "
                                            "(JSON or YAML)")
    imp.add_argument("file", help="the OpenAPI document (.json, .yaml or .yml)")
    imp.add_argument("--listen-path", default="", help="the API's listen path (default /)")
    imp.add_argument("--upstream", default="", help="upstream URL (default: the document's first servers URL)")
    imp.add_argument("--custom-domain", default="", help="serve the API on this host name only")
    imp.add_argument("--authentication", action="store_true",
                     help="enable the schemes of the document's root security requirement")
    imp.add_argument("--allow-list", action="store_true", help="allow only the operations the document lists")
    imp.add_argument("--validate-request", action="store_true", help="turn on request validation per operation")
    imp.add_argument("--api-id", default="", help="the API id (default: a random one)")
    imp.add_argument("--out", "-o", default="", help="write the definition here (default: standard output)")
    args = parser.parse_args(argv)

    if args.command == "version":
        print(f"fastgate {__version__} ({describe()})")
        return 0
    if args.command == "secret":
        return print_local_secret(Path(args.file), quiet=args.quiet)
    if args.command == "import-oas":
        return import_oas(args)
    try:
        config = load_config(args.config)
        tls = check_tls_files(config) + check_storage(config, [])  # (a storage URL: no traceback)
        if tls:
            raise ConfigError("\n".join(f"{args.config}: {problem}" for problem in tls))
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


def import_oas(args: argparse.Namespace) -> int:
    """``fastgate import-oas``: the definition on stdout or in ``--out`` (0), or what cannot be
    imported, with its JSON pointer, on stderr (1; no file written)."""
    source = Path(args.file)
    options = ImportOptions(
        upstream_url=args.upstream, listen_path=args.listen_path, custom_domain=args.custom_domain,
        authentication=args.authentication, allow_list=args.allow_list,
        validate_request=args.validate_request, api_id=args.api_id,
    )
    try:
        data = source.read_bytes()
        doc = parse_document(data, yaml_hint=source.suffix.lower() in (".yaml", ".yml"))
        definition = import_openapi(doc, options)
        out = orjson.dumps(definition, option=orjson.OPT_INDENT_2) + b"\n"
        check_auth_settings(decode_definition(out, args.out or str(source)))  # what loading it would refuse
    except ImportProblem as exc:
        print(f"{source}: {exc}", file=sys.stderr)
        return 1
    except DefinitionError as exc:
        print(f"{source}: the imported definition would not load: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{source}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if not args.out:
        sys.stdout.buffer.write(out)
        return 0
    try:
        Path(args.out).write_bytes(out)
    except OSError as exc:
        print(f"{args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: API {definition['x-tyk-api-gateway']['info']['id']!r} "
          f"({definition['x-tyk-api-gateway']['info']['name']})", file=sys.stderr)
    return 0


def check(config: Config) -> int:
    """Print every problem in the config's API definitions and policies; 1 if there is any."""
    problems: list[str] = []
    result = load_api_dir(config.resolve(config.app_path), allow_link_local=config.security.allow_link_local_upstreams)
    problems.extend(result.problems)
    problems.extend(extra_checks(config, result.apis))
    for problem in problems:
        print(problem)
    for warning in extra_warnings(config, result.apis):
        print(f"warning: {warning}")
    apis = len(result.apis)
    print(f"{apis} API definition{'s' if apis != 1 else ''} valid, {len(problems)} problem{'s' if len(problems) != 1 else ''}",
          file=sys.stderr)
    return 1 if problems else 0
