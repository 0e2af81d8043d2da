"""The one command-line runner of every entry point (`launch/train.py`, `python -m babyjax.score`, `.export`,
`.generate`, `.analyze`, `.data.evalsets`, `.study`): absl flags, a `--config` file with its `--config.key=value`
overrides through ml_collections' config_flags, --help (status 0) listing the command's flags, logging set-up and
error reporting. A `UserError`, a bad flag or a bad override prints one line, `error: ...` (prefixed by the command's
name where it has one), and exits with status 2; any other exception is a bug: it keeps its traceback and exits with
status 1.

A command is a `Command` (its flags, defined on a FlagValues, and what it does with them). Run as the program
(`command()`), it parses the global absl FLAGS under absl's app.run, so absl's own flags (--flagfile, --verbosity,
...) work as in any absl program; called with an argv (`command([...])`: tests, notebooks) it parses a FlagValues of
its own and returns the exit status, so it runs any number of times in one process. `run_absl(main)` runs a `main`
whose flags the caller defined on the global FLAGS itself.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence

from absl import flags

from babyjax.commands import quiet
from babyjax.errors import UserError, disk_full, unknown_config_key

HELP = ("-h", "-help", "--help", "-?", "--helpshort", "--helpfull")


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


def run(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None, *, prog: str | None = None
) -> int:
    """Set up logging and call `main(argv)`; a UserError or a full disk (however a library wrapped it) is reported in
    one line and gives 2, anything else propagates (traceback)."""
    setup_logging()
    quiet.install()
    try:
        return int(main(argv) or 0)
    except Exception as e:
        full = disk_full(e)
        if full is None and not isinstance(e, UserError):
            raise
        report(full or e, prog)
        return 2


@dataclasses.dataclass(frozen=True)
class ConfigFile:
    """A command's `--config` file (ml_collections' config_flags, with `--config.key=value` overrides)."""

    help: str
    example: str  # a file to name when the given one cannot be loaded
    keys: str = "configs/base.py"  # where every key is listed, to name for an unknown override


@dataclasses.dataclass(frozen=True)
class Command:
    """One command line: `define(fv)` defines its flags on `fv`; `main(fv, args)` runs it with the parsed flags and
    the positional arguments (refused unless `args`). `spellings` maps other spellings to the flags' (argparse's
    `--no-progress` to `--noprogress`, `--runs_dir` to `--runs-dir`); with it, a unique prefix of a flag (`--work`)
    reads as argparse read it.
    """

    usage: str  # --help's first line: 'python -m babyjax.analyze SCORE_DIR [...] --out REPORT_DIR'
    doc: str  # --help's text above the flags
    define: Callable[[flags.FlagValues], None]
    main: Callable[[flags.FlagValues, list[str]], int | None]
    prog: str | None = None  # the name before 'error:' in its one-line errors
    args: bool = False
    config: ConfigFile | None = None
    spellings: Mapping[str, str] | None = None

    def __call__(self, argv: Sequence[str] | None = None) -> int:
        """As the program (argv None: sys.argv, the global FLAGS, absl's app.run; exits), or in-process with `argv`
        (the arguments after the program's name) on a FlagValues of its own: returns the exit status."""
        if argv is None:
            _run_program(self)
        fv = flags.FlagValues()
        argv, names = _prepare(self, fv, [self.prog or "babyjax", *argv])
        return _call(self, fv, parse_flags(argv, fv, self, names))


def run_absl(main: Callable[[list[str]], None], prog: str | None = None) -> None:
    """absl's app.run for `main(argv)`, its flags defined on the global FLAGS by the caller, with babyjax's --help,
    flag parsing, logging and error reporting (see the module doc); argv holds no positional argument."""
    _run_program(Command("", "", lambda fv: None, lambda fv, args: main([sys.argv[0], *args]), prog))


def _run_program(command: Command) -> None:
    from absl import app

    fv = flags.FLAGS
    argv, names = _prepare(command, fv, list(sys.argv))

    def wrapped(rest: list[str]) -> None:
        sys.exit(_call(command, fv, rest))

    app.run(wrapped, argv=argv, flags_parser=lambda a: parse_flags(a, fv, command, names))
    raise AssertionError("unreachable: app.run exits")


def _prepare(command: Command, fv: flags.FlagValues, argv: list[str]) -> tuple[list[str], list[str]]:
    """Define the command's flags on `fv`; the argv in absl's spellings, and the names of the command's flags."""
    before = set(fv)
    command.define(fv)
    names = [n for n in fv if n not in before and fv[n].name == n]
    if command.spellings is not None:
        argv = respell(argv, command.spellings, ["config", *names] if command.config else names)
    if command.config:
        from ml_collections import config_flags

        config_flags.DEFINE_config_file("config", None, command.config.help, flag_values=fv, sys_argv=argv)
        flags.mark_flag_as_required("config", flag_values=fv)
        names.insert(0, "config")
    return argv, names


def _call(command: Command, fv: flags.FlagValues, rest: list[str]) -> int:
    """Run the command on the parsed flags: a user error is one line and 2, a bug keeps its traceback."""
    if len(rest) > 1 and not command.args:
        report(UserError(f"unexpected arguments {' '.join(rest[1:])}: every option is a --flag"), command.prog)
        return 2
    return run(lambda _: command.main(fv, list(rest[1:])), prog=command.prog)


def respell(argv: list[str], spellings: Mapping[str, str], names: Sequence[str]) -> list[str]:
    """An argparse command line as absl reads it: each spelling of the table (`--no-progress` -> `--noprogress`) and
    a unique prefix of a flag (`--work=x` -> `--workdir=x`), as argparse took them; nothing after `--` is touched."""
    options = {f"--{n}": f"--{n}" for n in names} | dict(spellings)
    out = argv[:1]
    for i, token in enumerate(argv[1:], 1):
        if token == "--":
            return out + argv[i:]
        flag, eq, value = token.partition("=")
        if token.startswith("--") and flag not in options:
            matches = {new for old, new in options.items() if old.startswith(flag)}
            flag = matches.pop() if len(matches) == 1 else flag
        out.append(options.get(flag, flag) + eq + value if token.startswith("--") else token)
    return out


def parse_flags(
    argv: list[str],
    flag_values: flags.FlagValues | None = None,
    command: Command | None = None,
    names: Sequence[str] = (),
) -> list[str]:
    """absl flag parsing (the global FLAGS by default) with --help, and a bad flag, config file or
    `--config.key=value` override reported as one line (exit status 2)."""
    fv = flags.FLAGS if flag_values is None else flag_values
    prog, config = (command.prog, command.config) if command else (None, None)
    if any(a in HELP for a in argv[1 : argv.index("--") if "--" in argv else None]):
        print(command_help(fv, command, names, full="--helpfull" in argv))
        sys.exit(0)
    try:
        rest = fv(argv)
        if "config" in fv and hasattr(fv["config"], "config_filename"):
            getattr(fv.config, "keys", None)  # a file that failed to load raises at first use: here
        return rest
    except flags.Error as e:
        _fail(f"{str(e).splitlines()[0]}; run with --help to list the flags", prog)
    except (SyntaxError, ImportError, OSError) as e:  # the --config file itself
        _fail(_config_file_error(argv, e, config), prog)
    except (AttributeError, KeyError) as e:  # ml_collections: an override names a key the config does not have
        if "get_config" in str(e):
            _fail(_config_file_error(argv, e, config), prog)
        _fail(unknown_config_key(argv, e, config.keys if config else "configs/base.py"), prog)
    except (ValueError, TypeError) as e:  # a value of the wrong type for a key
        _fail(f"bad config override: {str(e).splitlines()[0]}", prog)
    raise AssertionError("unreachable")


def command_help(fv: flags.FlagValues, command: Command | None, names: Sequence[str], full: bool = False) -> str:
    """--help: the usage line, the command's doc and its flags (--helpfull: every flag the program knows)."""
    if command and command.usage:
        head = f"usage: {command.usage} [flags]\n\n{command.doc.strip()}"
    else:  # run_absl: the program's own docstring, as absl's help shows it
        head = (sys.modules["__main__"].__doc__ or "").strip()
    own = [fv[n] for n in names] or fv.get_key_flags_for_module(sys.argv[0])
    text = f"{head}\n\nflags:\n" + "\n".join(_describe(f) for f in own)
    return f"{text}\n\nevery flag:\n{fv.get_help()}" if full else f"{text}\n\n--helpfull lists absl's own flags too."


def _describe(flag: flags.Flag) -> str:
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    default = f" (default: {flag.default_as_str})" if flag.default is not None else ""
    return textwrap.fill(
        " ".join(f"{name}: {flag.help}{default}".split()),
        118,
        initial_indent="  ",
        subsequent_indent="      ",
        break_on_hyphens=False,
    )


def _config_file_error(argv: Sequence[str], e: BaseException, config: ConfigFile | None) -> str:
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
    example = config.example if config else "configs/tiny.py"
    return (
        f"cannot load the config file {path}: {why}; give a Python file whose get_config() returns the config "
        f"({example})"
    )


def _fail(message: str, prog: str | None = None) -> None:
    print(f"{prog + ': ' if prog else ''}error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
