"""What every entry point (`python -m medvqa.run`, and later evaluate / predict / export) does with an error.

A user's mistake (a wrong path, a missing download, a bad config value) is answered with its one message
on stderr and exit status 1, no traceback: the message already names the config key, the file and the
fix. A bug still raises, with its traceback. `HYDRA_FULL_ERROR=1` shows the full trace of every error.

    from medvqa.cli import user_errors

    with user_errors():  # or @user_errors() on the function
        run(cfg)

A user's mistake is a `DataError` (medvqa/data/errors.py), a `ModelUnavailableError`
(medvqa/models/builders.py), or a ValueError / FileNotFoundError / KeyError whose message names a config
key as `key=value` (`ckpt_path=last but ...`, `stage.init_adapter=... has no adapter_config.json`): by
house rule such a message is written for the user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys

# top-level config keys and groups (conf/train.yaml): a message naming one as `key=` is meant for the user
CONFIG_KEYS = ("data", "model", "stage", "trainer", "peft", "callbacks", "logger", "paths", "pipeline",
               "augment", "precision", "hydra", "experiment", "hparams_search", "ckpt_path", "seed", "tags",
               "optimized_metric", "monitor_mode", "effective_batch_size", "eval_untrained", "test_weights")  # fmt: skip
# python -m medvqa.export (conf/export.yaml)
CONFIG_KEYS += ("run", "out", "force", "check_items", "quantize", "device")
# python -m medvqa.evaluate (conf/evaluate.yaml) and the eval group (conf/eval/default.yaml)
CONFIG_KEYS += ("adapter", "split", "predictions", "eval")
# python -m medvqa.predict (conf/predict.yaml)
CONFIG_KEYS += ("image", "question", "inputs", "inputs_root", "batch_size", "progress")
# python -m medvqa.app (conf/app.yaml) and the guard group it shares with predict / evaluate
CONFIG_KEYS += ("app", "guard")
NAMES_A_KEY = re.compile(r"(?<![\w.])(?:" + "|".join(CONFIG_KEYS) + r")(?:\.[\w\-\[\]]+)*=")
FULL_ERROR = "HYDRA_FULL_ERROR"


def override_key(override: str) -> str:
    """The config key a command-line override sets: `+data.root=/x` -> `data.root`, `~guard` -> `guard`."""
    return override.split("=", 1)[0].lstrip("+~")


def user_error(error: BaseException) -> BaseException | None:
    """The user's mistake behind `error` (itself, or what Hydra's `instantiate` wrapped), else None."""
    from hydra.errors import InstantiationException

    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return error if is_user_error(error) else None


def is_user_error(error: BaseException) -> bool:
    """True for errors whose message is the whole answer (see the module docstring)."""
    from medvqa.data.errors import DataError
    from medvqa.models.builders import ModelUnavailableError

    if isinstance(error, (DataError, ModelUnavailableError)):
        return True
    return isinstance(error, (ValueError, FileNotFoundError, KeyError)) and bool(
        NAMES_A_KEY.search(str(error))
    )


def message(error: BaseException) -> str:
    # str(KeyError) quotes its argument; the user wants the sentence
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return f"Error: {text}"


class user_errors(contextlib.ContextDecorator):
    """Turns a user's mistake into its message on stderr and `SystemExit(1)`; anything else, and every
    error under HYDRA_FULL_ERROR=1, propagates unchanged (so Hydra prints the trace)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb) -> bool:
        mistake = user_error(error) if isinstance(error, Exception) else None
        if mistake is None or os.environ.get(FULL_ERROR) == "1":
            return False
        print(message(mistake), file=sys.stderr, flush=True)
        raise SystemExit(1) from None


# Lightning's lines that say nothing about this run: the hardware it did not find (printed once per Trainer,
# so twice a run) and an advertisement. They buried the one line a failed run has to say.
NOISE = ("GPU available:", "TPU available:", "HPU available:", "💡 Tip:")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISE)


def quiet_lightning() -> None:
    """Drop Lightning's hardware and tip lines (NOISE) from the log; idempotent."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropNoise) for f in rank_zero.filters):
        rank_zero.addFilter(_DropNoise())


# keys whose values are a user's free text or file names: taken as typed (commas, quotes, '=', brackets),
# not as Hydra override syntax (where `question=Is it big, or small?` is a sweep: "Ambiguous value")
RAW_VALUE_KEYS = ("question", "image", "inputs", "inputs_root")


def raw_values(argv: list[str], keys: tuple[str, ...] = RAW_VALUE_KEYS) -> list[str]:
    """`argv` with each `key=value` of `keys` rewritten as a quoted Hydra string that parses back to exactly
    the text typed. Hydra has no raw-string option, so this quotes for it: a quote is escaped, backslashes
    are doubled only before a quote or the end (elsewhere Hydra keeps them as typed), and `${` (with any
    backslashes before it) is escaped so OmegaConf does not read it as an interpolation. A value the user
    already quoted is left alone."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in keys and not _quoted(value):
            value = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), value)
            value = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)  # OmegaConf's escapes
            arg = f"{key}='{value}'"
        out.append(arg)
    return out


def _quoted(value: str) -> bool:
    return len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
