"""Every error sdbox raises on purpose.

Each class also subclasses the matching built-in, so ``except ValueError`` keeps working, and
every message names the problem *and* the fix.
"""

from __future__ import annotations


class SdboxError(Exception):
    """Base class: catch this to handle any sdbox error."""


class WrongKeyError(SdboxError, ValueError):
    """The key does not belong to this box (fingerprint or shape mismatch)."""


class KeyFileError(SdboxError, OSError):
    """A key file is missing, corrupt, truncated or of an unknown format."""


class BundleError(SdboxError, OSError, ValueError):
    """A saved box (config.json + model.safetensors) is missing, corrupt or tampered with.

    A bundle is untrusted input (anyone can publish one): every field is checked, and the
    message names the field and the fix. An OSError (a file is missing or unreadable) and a
    ValueError (a value is wrong), like ``io.UnsupportedOperation``.
    """


class CheckpointError(SdboxError, ValueError):
    """A wrap checkpoint is unreadable, or belongs to another model, key, data or settings."""


class FidelityError(SdboxError, RuntimeError):
    """No wrapped epoch kept clean accuracy within ``max_accuracy_drop`` of the original.

    ``accuracy_before`` and ``closest`` (the epoch record nearest to passing) let an interface
    say the fix in its own terms (the CLI names its flags, the API its arguments).
    """

    def __init__(self, message: str, *, accuracy_before: float = float("nan"), closest: dict | None = None):
        super().__init__(message)
        self.accuracy_before, self.closest = accuracy_before, closest or {}


class SaveError(SdboxError, OSError):
    """A finished wrap's key or bundle could not be written (a full disk, a permission); what was kept says how to finish."""


class NonFiniteLossError(SdboxError, FloatingPointError):
    """A loss term became NaN or infinite during wrapping."""


class InputError(SdboxError, ValueError):
    """An input tensor, model or loader does not have the shape, dtype or content expected."""


class PublishError(SdboxError, OSError):
    """A folder cannot be published safely: a symlink leads out of it, to nothing, or to a secret."""


class ResumeWarning(UserWarning):
    """A wrap goes on from its checkpoint instead of starting over (a caller that already said so can filter this category)."""
