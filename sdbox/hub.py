"""Publishing a bundle folder on the Hugging Face Hub: one commit, never a key file.

``SafeBox.push_to_hub`` uploads a box held in memory; :func:`push_folder` uploads a folder that
``save_pretrained`` (or ``sdbox wrap``) wrote. Both go through huggingface_hub's own client and
exclude key files by name (:data:`~sdbox.box.KEY_FILE_PATTERNS`) and by content (a key saved
under any other name). ``hf upload`` and ``HfApi().upload_folder`` do no such check: a key saved
inside the folder would be published with it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from huggingface_hub import CommitInfo, HfApi

from .box import CONFIG_NAME, KEY_FILE_PATTERNS, read_config
from .errors import BundleError
from .key import find_key_files


def upload_ignore_patterns(folder: str | os.PathLike) -> list[str]:
    """The patterns that keep every key file under ``folder`` out of an upload."""
    folder = Path(folder)
    by_content = [p.relative_to(folder).as_posix() for p in find_key_files(folder)]
    return [*KEY_FILE_PATTERNS, *by_content]


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload a Safe Distillation Box (sdbox)",
) -> CommitInfo:
    """Create ``repo_id`` (``private`` as asked) if needed and upload the bundle in ``folder`` in one commit.

    The folder must hold a valid bundle (its config.json is checked first). Key files found in
    it are left out, and a warning names them: a key has no business next to a bundle.
    """
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        raise BundleError(f"{folder} holds no {CONFIG_NAME}: pass a folder written by `box.save_pretrained` or `sdbox wrap --out`.")
    read_config(folder / CONFIG_NAME)
    keys = find_key_files(folder)
    if keys:
        warnings.warn(f"Leaving key file(s) {[p.name for p in keys][:5]} out of the upload: move them out of {folder}.", stacklevel=2)
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(repo_id=repo.repo_id, folder_path=folder, commit_message=commit_message,
                             ignore_patterns=upload_ignore_patterns(folder))
