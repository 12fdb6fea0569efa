"""Publishing a bundle folder on the Hugging Face Hub: one commit, never a key or a checkpoint.

:func:`push_folder` (``sdbox push``) uploads a folder that ``save_pretrained`` or ``sdbox wrap``
wrote. It does not hand huggingface_hub the folder and ignore patterns: it hands it the explicit
list of files :func:`~sdbox.publish.plan_upload` chose (keys and checkpoints left out by name and
by content, symlinks out of the folder or to a secret refused), so that no file name is ever
read as a pattern and no symlink is followed unchecked. ``SafeBox.push_to_hub`` saves the box into
a fresh temporary folder first (huggingface_hub's mixin), which holds the three bundle files only.
``hf upload`` and ``HfApi().upload_folder`` do no such check: a key saved inside the folder would
be published with it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi

from .config import read_config
from .formats import CONFIG_NAME
from .errors import BundleError
from .publish import plan_upload
from .terminal import escaped


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload a Safe Distillation Box (sdbox)",
) -> CommitInfo:
    """Create ``repo_id`` (``private`` as asked) if needed and upload the bundle in ``folder`` in one commit.

    The folder must hold a valid bundle (its config.json is checked first) and no symlink out of
    it or to a secret (:class:`~sdbox.errors.PublishError`); both are checked before anything
    reaches the network. Key files and checkpoints in it are left out, and a warning names them:
    they have no business next to a bundle.
    """
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        raise BundleError(f"{folder} holds no {CONFIG_NAME}: pass a folder written by `box.save_pretrained` or `sdbox wrap --out`.")
    read_config(folder / CONFIG_NAME)
    plan = plan_upload(folder)
    if plan.left_out:
        shown = "; ".join(f"{name!r} ({kind})" for name, kind in list(plan.left_out.items())[:5])
        warnings.warn(escaped(f"Leaving key file(s) out of the upload: {shown}. Move them out of {folder}."), stacklevel=2)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(source)) for name, source in plan.files.items()]
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True)
    return api.create_commit(repo_id=repo.repo_id, operations=operations, commit_message=commit_message)
