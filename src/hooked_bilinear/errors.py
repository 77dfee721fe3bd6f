"""The errors hooked_bilinear raises for bad input: each names the problem and what to do."""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class HookedBilinearError(Exception):
    """Base class of every error this package raises on purpose."""


class CheckpointFormatError(HookedBilinearError, ValueError):
    """config.json matches no known format, or holds inconsistent values."""


class CheckpointWeightsError(HookedBilinearError, ValueError):
    """The weight files are missing, unreadable, or do not fit the config."""


class CheckpointNotFoundError(HookedBilinearError, FileNotFoundError):
    """A name resolves to no shipped checkpoint, local folder or reachable Hub repo."""


class NotBilinearError(HookedBilinearError, TypeError):
    """A bilinear-only operation was asked of a gated (GLU) or plain MLP."""


class ConversionError(HookedBilinearError, ValueError):
    """A model cannot be represented in the requested form, or its conversion failed verification."""


class PublishError(HookedBilinearError, RuntimeError):
    """Saving or uploading a model failed (target exists, not writable, network or auth failure)."""


class DatasetError(HookedBilinearError, ValueError):
    """A token dataset does not fit the model (tokens outside the vocabulary, too short, wrong shape)."""


_COMMAND_LINE: ContextVar[bool] = ContextVar("hooked_bilinear_command_line", default=False)


@contextmanager
def command_line_errors() -> Iterator[None]:
    """Within this block, error messages name command-line flags instead of keyword arguments."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def said(python: str, command_line: str) -> str:
    """`command_line` when the error is for the command line (see `command_line_errors`), else `python`."""
    return command_line if _COMMAND_LINE.get() else python


def option(name: str, value: object = True) -> str:
    """How the user passes an option: `--name` (`--name VALUE`) on the command line, else `name=value`."""
    flag = "--" + name.replace("_", "-")
    return said(f"{name}={value}", flag if value is True else f"{flag} {value}")


class SAEError(HookedBilinearError, ValueError):
    """A sparse autoencoder folder, config or object is malformed, or does not fit the activations it is used on."""


class DashboardError(HookedBilinearError, ValueError):
    """A dashboard was asked of something that is not there: a layer, a direction, an output folder."""


class WriteError(HookedBilinearError, OSError):
    """Writing an artifact failed (disk full, file too large, read-only, locked by another process); the message
    names the path, and the previous artifact is intact (see hooked_bilinear.atomic)."""
