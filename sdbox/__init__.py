"""sdbox: publish an image classifier for everyone's inference; let only key holders distil it.

Data flows key → proxy input → losses → wrap → box → bundle → keyed teacher → student.
"""

from .box import SafeBox
from .distill import distill, kd_loss
from .fastpath import FastPath
from .errors import (
    BundleError,
    CheckpointError,
    FidelityError,
    InputError,
    KeyFileError,
    NonFiniteLossError,
    SdboxError,
    WrongKeyError,
)
from .key import Key
from .proxy import mix
from .teacher import KeyedTeacher
from .settings import SDBSettings

__version__ = "0.1.0"

__all__ = [
    "SafeBox", "Key", "KeyedTeacher", "SDBSettings", "FastPath", "mix", "kd_loss", "distill",
    "SdboxError", "WrongKeyError", "KeyFileError", "BundleError", "CheckpointError", "FidelityError", "NonFiniteLossError", "InputError",
]
