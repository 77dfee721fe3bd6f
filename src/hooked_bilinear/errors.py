"""The errors hooked_bilinear raises for bad input: each names the problem and what to do."""


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


class SAEError(HookedBilinearError, ValueError):
    """A sparse autoencoder folder, config or object is malformed, or does not fit the activations it is used on."""
