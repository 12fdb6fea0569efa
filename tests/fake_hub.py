"""A Hugging Face Hub in memory, behind huggingface_hub's real client (its HTTP transport faked).

Everything above the transport is the library's own code: repo creation, YAML validation,
preupload, the commit, and downloads with their cache. The fake records what reached the wire,
so tests assert the token, the visibility, the number of commits and the files of each one.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field

import httpx2


@dataclass
class FakeHub:
    repos: dict[str, dict] = field(default_factory=dict)  # repo id -> the create request's body
    commits: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)  # (repo id, {path: bytes})
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, token)
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo id -> current files

    def client(self) -> httpx2.Client:
        return httpx2.Client(transport=httpx2.MockTransport(self.handle), follow_redirects=True)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        auth = request.headers.get("authorization")
        self.requests.append((request.method, path, auth.removeprefix("Bearer ") if auth else None))
        if path == "/api/repos/create":
            body = json.loads(request.content)
            repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
            self.repos[repo_id] = body
            self.files.setdefault(repo_id, {})
            return httpx2.Response(200, json={"url": f"https://huggingface.co/{repo_id}"})
        if path == "/api/validate-yaml":
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if path.startswith("/api/models/") and "/preupload/" in path:
            files = json.loads(request.content)["files"]
            return httpx2.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        if path.startswith("/api/models/") and "/commit/" in path:
            repo_id = path.removeprefix("/api/models/").split("/commit/")[0]
            added = {}
            for line in request.content.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            self.commits.append((repo_id, added))
            self.files.setdefault(repo_id, {}).update(added)
            return httpx2.Response(200, json={"commitUrl": f"https://huggingface.co/{repo_id}/commit/{self.revision(repo_id)}",
                                              "commitOid": self.revision(repo_id)})
        if "/resolve/" in path:
            repo_id, rest = path.lstrip("/").split("/resolve/", 1)
            filename = rest.split("/", 1)[1]
            data = self.files.get(repo_id, {}).get(filename)
            if data is None:
                return httpx2.Response(404, headers={"X-Error-Code": "EntryNotFound"}, json={"error": "not found"})
            headers = {"X-Repo-Commit": self.revision(repo_id), "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                       "Content-Length": str(len(data))}
            return httpx2.Response(200, headers=headers, content=b"" if request.method == "HEAD" else data)
        return httpx2.Response(404, json={"error": f"the fake Hub does not serve {request.method} {path}"})

    def tokens(self, *fragments: str) -> set[str | None]:
        """The tokens sent with the requests whose path contains one of ``fragments``."""
        return {token for _, path, token in self.requests if any(f in path for f in fragments)}

    def revision(self, repo_id: str) -> str:
        return hashlib.sha1(f"{repo_id}:{len([c for c in self.commits if c[0] == repo_id])}".encode()).hexdigest()
