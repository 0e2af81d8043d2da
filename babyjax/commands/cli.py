"""The one command-line runner: flag parsing, logging set-up and error reporting for every entry point
(`launch/train.py`, `python -m babyjax.score`, `.export`, `.generate`, `.analyze`, `.data.evalsets`). A `UserError`, a
bad flag or a bad `--config.key=value` override prints one line, `error: ...` (argparse commands prefix their name),
and exits with status 2; any other exception is a bug: it keeps its traceback and exits with status 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence

from babyjax.errors import UserError


def setup_logging() -> None:
    """babyjax's own messages at INFO on stderr; the libraries' (Orbax, Grain, TFDS) at WARNING and above."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("absl").setLevel(logging.WARNING)
    logger = logging.getLogger("babyjax")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s babyjax: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def report(error: UserError, prog: str | None = None) -> None:
    """Print a user error as one line on stderr."""
    text = str(error).strip()
    msg = text.splitlines()[0] if text else type(error).__name__
    print(f"{prog + ': ' if prog else ''}error: {msg}", file=sys.stderr, flush=True)


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the argparse commands, with a bad or missing option as one line (`prog: error: ...`, status 2)
    instead of the usage block; --help prints the usage as usual."""

    def error(self, message: str) -> None:  # type: ignore[override]
        report(UserError(f"{message} (see --help)"), self.prog)
        sys.exit(2)


def run(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None, *, prog: str | None = None
) -> int:
    """Set up logging and call `main(argv)`; a UserError is reported in one line and gives 2, anything else
    propagates (traceback)."""
    setup_logging()
    try:
        return int(main(argv) or 0)
    except UserError as e:
        report(e, prog)
        return 2


def run_absl(main: Callable[[list[str]], None], prog: str | None = None) -> None:
    """absl's app.run for `main(argv)` with babyjax's flag parsing, logging and error reporting (see the module doc)."""
    from absl import app

    def wrapped(argv: list[str]) -> None:
        if len(argv) > 1:
            report(UserError(f"unexpected arguments {' '.join(argv[1:])}: every option is a --flag"), prog)
            sys.exit(2)
        sys.exit(run(lambda _: main(argv), argv, prog=prog))

    app.run(wrapped, flags_parser=parse_flags)


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with a bad flag or `--config.key=value` override reported as one line (exit status 2)."""
    from absl import flags

    try:
        rest = flags.FLAGS(argv)
        if "config" in flags.FLAGS and hasattr(flags.FLAGS["config"], "config_filename"):
            getattr(flags.FLAGS.config, "keys", None)  # a file that failed to load raises at first use: here
        return rest
    except flags.Error as e:
        _fail(f"{str(e).splitlines()[0]}; run with --helpfull to list the flags")
    except (SyntaxError, ImportError, OSError) as e:  # the --config file itself
        _fail(_config_file_error(argv, e))
    except (AttributeError, KeyError) as e:  # ml_collections: an override names a key the config does not have
        if "get_config" in str(e):
            _fail(_config_file_error(argv, e))
        _fail(_unknown_key(argv, e))
    except (ValueError, TypeError) as e:  # a value of the wrong type for a key
        _fail(f"bad config override: {str(e).splitlines()[0]}")
    raise AssertionError("unreachable")


def _config_file_error(argv: Sequence[str], e: BaseException) -> str:
    """'cannot load the config file X: <the first cause>; ...' for a missing file, a syntax error, no get_config."""
    path = next(
        (
            a.split("=", 1)[1] if "=" in a else argv[i + 1]
            for i, a in enumerate(argv)
            if a.split("=", 1)[0] == "--config" and ("=" in a or i + 1 < len(argv))
        ),
        "--config",
    )
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__
    why = (
        "no such file"
        if not os.path.exists(path)
        else "it defines no get_config()"
        if "get_config" in str(e)
        else f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
    )
    return (
        f"cannot load the config file {path}: {why}; give a Python file whose get_config() returns the config "
        "(configs/tiny.py)"
    )


def _unknown_key(argv: Sequence[str], e: Exception) -> str:
    """'unknown config key in --config.optim.lrr=1 (did you mean lr?): ...' from ml_collections' nested error."""
    inner: object = e
    while isinstance(inner, BaseException) and inner.args:
        inner = inner.args[0]
    lines = str(inner).splitlines() or [""]
    key = lines[0].strip().strip("\"'")
    culprit = next((a for a in argv if a.startswith("--config.") and key in a.split("=", 1)[0]), key)
    close = re.search(r'Did you mean "([^"]+)"', str(inner))
    hint = f" (did you mean {close.group(1)}?)" if close else ""
    return f"unknown config key in {culprit}{hint}: every key is listed in configs/base.py"


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
