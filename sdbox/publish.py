"""Which files of a bundle folder may be published: an explicit list, never a key or a checkpoint.

Uploading "the folder minus some ignore patterns" leaked the key three ways (issue 20): a key
named ``owner[1]`` was passed on as an fnmatch pattern, where ``[1]`` is a character class, so the
pattern missed the file it was meant to exclude; a copy of ``wrap_state.pt`` under another name
(``resume.pt``) matched no pattern at all; and huggingface_hub followed a symlink to a key that
sdbox's key finder had skipped. So sdbox now lists the files to upload itself, reading each
one's content, and hands huggingface_hub that list; nothing in a file's name is ever read as a
pattern.

The rules, in the order they apply to each entry under the folder:

* hidden files and folders (any path part starting with ``.``: the atomic writer's temporary
  files, ``.git``, ``.cache``) are never uploaded;
* a symlink is refused (:class:`~sdbox.errors.PublishError`) unless it points to a regular
  file inside the folder that holds no secret; a symlink to a folder is refused too;
* a file that holds a secret is left out: an sdbox key (named ``*.key`` / ``*.key.*``, or a key
  file under any name, read by its header) or a wrap checkpoint (named ``*wrap_state.pt``, or a
  torch zip or pickle under any name whose pickle holds the checkpoint's layout or an sdbox
  ``Key`` object, read with :mod:`pickletools`, which executes nothing);
* anything else that is a regular file is uploaded (FIFOs, sockets and devices are skipped).

What this cannot see: a key or checkpoint inside another container (a tar, a compressed or
encrypted file), a key tensor saved without sdbox's markers (``torch.save(key.tensor)``,
``numpy.save``), the unprotected original model saved as plain weights, or a file changed
between the check and the upload.
"""

from __future__ import annotations

import fnmatch
import os
import pickletools
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .errors import PublishError
from .formats import CHECKPOINT_NAME, CHECKPOINT_PARTS, is_key_file

# What each kind of secret is, as the warnings and refusals name it.
KEY_FILE = "an sdbox key"
CHECKPOINT_FILE = "a wrap checkpoint, which holds the key and the unprotected original model"
PICKLED_KEY = "a pickled sdbox Key"
UNCHECKED_PICKLE = "a pickle too large to check, which may hold a checkpoint"
# Names that hold a secret whatever their content (a key's backup, a checkpoint's usual name).
# Matched against each file's own name; the names themselves are never used as patterns.
SECRET_NAME_PATTERNS = {"*.key": KEY_FILE, "*.key.*": KEY_FILE, f"*{CHECKPOINT_NAME}": CHECKPOINT_FILE}
# A bundle is three files; a folder of thousands is not one, and reading each would take long.
MAX_FOLDER_FILES = 1000
# A checkpoint's pickle holds its structure, not its tensors (torch keeps those apart): a few
# hundred kB for large models. Past this much pickle in one file (all of a zip's members
# together, so that a hostile archive cannot make a scan slow), it is treated as a secret unchecked.
MAX_PICKLE_BYTES = 64 << 20
_STRING_OPCODES = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING", "GLOBAL"}
_KEY_MODULE = "sdbox.key"


class _Unreadable(Exception):
    """A pickle too large to read to its end: sdbox cannot say what it holds."""


class _Budget:
    """How many more pickle bytes one file's scan may read (:data:`MAX_PICKLE_BYTES` in all)."""

    def __init__(self) -> None:
        self.left = MAX_PICKLE_BYTES

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise _Unreadable


class _BoundedReader:
    """The ``read``/``readline`` that :func:`pickletools.genops` needs, over ``size`` bytes of a
    stream, within ``budget``. A read past the stream's end is no pickle (EOFError), and neither
    is a declared length beyond it; a pickle past the budget is :class:`_Unreadable`. So a
    non-pickle costs a few bytes, and no length in it allocates."""

    def __init__(self, stream: IO[bytes], size: int, budget: _Budget):
        self._stream, self._left, self._budget = stream, size, budget

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._left:
            raise EOFError
        return self._take(self._stream.read(n))

    def readline(self) -> bytes:
        return self._take(self._stream.readline(min(self._left, self._budget.left) + 1))

    def _take(self, data: bytes) -> bytes:
        self._left -= len(data)
        self._budget.spend(len(data))
        return data


@dataclass
class UploadPlan:
    """What an upload of ``folder`` sends, and what it leaves out because it holds a secret."""

    folder: Path
    files: dict[str, Path] = field(default_factory=dict)  # path in the repo -> the file read for it
    left_out: dict[str, str] = field(default_factory=dict)  # path in the folder -> which secret it holds


def plan_upload(folder: str | os.PathLike) -> UploadPlan:
    """The explicit list of files to publish from ``folder`` (see the module's rules).

    Raises :class:`~sdbox.errors.PublishError` for a symlink that leads out of the folder, to
    nothing, to a folder or to a secret, and for a folder of more than :data:`MAX_FOLDER_FILES`
    files: each is refused whole, before anything is uploaded.
    """
    root = Path(os.path.realpath(folder))
    plan = UploadPlan(root)
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in dirnames:
            if (here / name).is_symlink():
                raise PublishError(_symlink_refusal(root, here / name, "a folder", _COPY_OR_REMOVE))
        for name in sorted(n for n in filenames if not n.startswith(".")):
            seen += 1
            if seen > MAX_FOLDER_FILES:
                raise PublishError(f"{root} holds more than {MAX_FOLDER_FILES} files: a bundle is config.json, model.safetensors "
                                   "and README.md. Upload a folder that holds the bundle only.")
            _add(plan, here / name)
    return plan


def find_secret_files(folder: str | os.PathLike) -> dict[str, str]:
    """Every file under ``folder`` that would publish a secret, by relative path: what a check
    before saving into (or showing) a folder needs. Symlinks to secrets count, wherever they point."""
    root = Path(os.path.realpath(folder))
    found = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            if not path.is_dir() or path.is_symlink():
                kind = secret_kind(path)
                if kind is not None:
                    found[path.relative_to(root).as_posix()] = kind
    return found


def secret_kind(path: str | os.PathLike) -> str | None:
    """What secret ``path`` (a symlink: its target) holds, by name or by content; None if none."""
    path = Path(path)
    for name in {path.name, Path(os.path.realpath(path)).name}:
        for pattern, kind in SECRET_NAME_PATTERNS.items():
            if fnmatch.fnmatchcase(name, pattern):
                return kind
    if not path.is_file():
        return None
    if is_key_file(path):
        return KEY_FILE
    return pickled_secret(path)


def pickled_secret(path: str | os.PathLike) -> str | None:
    """What secret a torch zip archive or a pickle at ``path`` holds, whatever its name: a wrap
    checkpoint (its pickle names every part ``wrap_state.pt`` stores) or an sdbox ``Key`` object.

    The pickle is disassembled with :mod:`pickletools` (nothing is executed or imported). A
    pickle too large to read through is :data:`UNCHECKED_PICKLE`: unknown is not safe.
    """
    budget = _Budget()
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if info.filename.endswith(".pkl"):
                        with archive.open(info) as member:
                            kind = _secret_in_pickles(_BoundedReader(member, info.file_size, budget))
                        if kind is not None:
                            return kind
            return None
        with open(path, "rb") as f:
            return _secret_in_pickles(_BoundedReader(f, os.fstat(f.fileno()).st_size, budget))
    except _Unreadable:
        return UNCHECKED_PICKLE
    except (OSError, zipfile.BadZipFile, RuntimeError, NotImplementedError):  # unreadable as an archive: no pickle seen
        return None


def _secret_in_pickles(stream: _BoundedReader) -> str | None:
    """Scan the pickles at the start of ``stream`` (torch's legacy format writes several in a
    row) for the checkpoint's parts or a reference to sdbox's Key class."""
    strings: set[str] = set()
    while True:
        try:
            for opcode, arg, _ in pickletools.genops(stream):
                if opcode.name in _STRING_OPCODES and isinstance(arg, (str, bytes)):
                    strings.add(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        except (ValueError, EOFError, UnicodeDecodeError, OverflowError):
            break  # the end of the pickle data, or no pickle at all
    if set(CHECKPOINT_PARTS) <= strings:
        return CHECKPOINT_FILE
    modules = {s.split(" ", 1)[0] for s in strings}  # GLOBAL's argument is "module name"
    return PICKLED_KEY if _KEY_MODULE in modules else None


def _add(plan: UploadPlan, path: Path) -> None:
    """Sort one entry of the folder into the plan (or refuse the folder)."""
    name = path.relative_to(plan.folder).as_posix()
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if not target.exists():
            raise PublishError(_symlink_refusal(plan.folder, path, "nothing", "Remove it."))
        kind = secret_kind(target)
        if kind is not None:
            raise PublishError(_symlink_refusal(plan.folder, path, f"{target.name}, {kind}", "Remove it: the secret must not be published."))
        if plan.folder not in target.parents:
            raise PublishError(_symlink_refusal(plan.folder, path, f"{target}, outside the folder", _COPY_OR_REMOVE))
        if not target.is_file():
            raise PublishError(_symlink_refusal(plan.folder, path, "something that is not a regular file", "Remove it."))
        plan.files[name] = target  # a plain file inside the folder: upload its content under the link's name
        return
    if not stat.S_ISREG(path.lstat().st_mode):
        return  # a FIFO, socket or device: nothing to upload (and reading a FIFO would block)
    kind = secret_kind(path)
    if kind is not None:
        plan.left_out[name] = kind
    else:
        plan.files[name] = path


_COPY_OR_REMOVE = "Replace the link by a copy of what it points to (`cp -rL`), or remove it."


def _symlink_refusal(folder: Path, link: Path, leads_to: str, fix: str) -> str:
    return (f"Refusing to publish {folder}: {link.relative_to(folder).as_posix()!r} is a symlink to {leads_to}, "
            f"and an upload would publish what it points to. {fix}")
