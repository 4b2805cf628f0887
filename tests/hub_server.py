"""A Hugging Face hub and a torchvision weights host on 127.0.0.1, for tests without network.

``huggingface_hub`` talks to ``HF_ENDPOINT`` through a handful of routes; this server answers the
ones downloads use, the way the hub does:

- ``HEAD/GET /{repo}/resolve/{revision}/{file}``: the file, with ``X-Repo-Commit`` (required),
  ``ETag`` and ``Content-Length``; a missing file is 404 with ``X-Error-Code: EntryNotFound`` (so
  the library records it as absent), an unknown repo 404 with ``X-Error-Code: RepoNotFound``.
- ``GET /api/models/{repo}[/revision/{revision}]``: model info (``sha``, ``siblings`` with sizes).
- ``GET /api/models/{repo}/tree/{revision}[/{path}]``: the file listing ``snapshot_download`` reads.
- any other ``GET /{name}``: a static file (torchvision weights, fetched by URL).

Every request is logged as ``(method, path)`` so tests can count downloads.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


def _sha(data: bytes, algo: str = "sha256") -> str:
    return hashlib.new(algo, data).hexdigest()


class FakeHub:
    """``FakeHub(repos={"org/name": directory}, files={"name.pth": path})``; ``start()`` returns the URL."""

    def __init__(self, repos: dict | None = None, files: dict | None = None):
        self.repos = {repo: Path(d) for repo, d in (repos or {}).items()}
        self.files = {name: Path(p) for name, p in (files or {}).items()}
        self.log: list[tuple[str, str]] = []
        self.server = None
        self.port = None

    def commit(self, repo: str) -> str:
        return _sha(repo.encode(), "sha1")

    def listing(self, repo: str) -> dict[str, bytes]:
        root = self.repos[repo]
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    def downloads(self, suffix: str = "") -> list[str]:
        """Paths fetched with GET (not HEAD) that end with ``suffix``."""
        return [path for method, path in self.log if method == "GET" and path.endswith(suffix)]

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _send(self, status, data: bytes = b"", headers=None, body=True, content_type="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if body and data:
                    self.wfile.write(data)

            def _json(self, obj, body=True):
                self._send(200, json.dumps(obj).encode(), body=body)

            def _error(self, code: str, repo: str | None = None, body=True):
                headers = {"X-Error-Code": code, "X-Error-Message": code}
                if repo in hub.repos:
                    headers["X-Repo-Commit"] = hub.commit(repo)
                self._send(404, json.dumps({"error": code}).encode(), headers, body)

            def _answer(self, body: bool):
                path = unquote(urlsplit(self.path).path)
                hub.log.append((self.command, path))
                if path.startswith("/api/models/"):
                    return self._api(path[len("/api/models/"):], body)
                if "/resolve/" in path:
                    repo, _, rest = path.lstrip("/").partition("/resolve/")
                    _rev, _, name = rest.partition("/")
                    if repo not in hub.repos:
                        return self._error("RepoNotFound", body=body)
                    files = hub.listing(repo)
                    if name not in files:
                        return self._error("EntryNotFound", repo, body)
                    data = files[name]
                    return self._send(200, data, {"X-Repo-Commit": hub.commit(repo), "ETag": f'"{_sha(data)}"'},
                                      body, "application/octet-stream")
                name = path.lstrip("/")
                if name in hub.files:
                    return self._send(200, hub.files[name].read_bytes(), body=body,
                                      content_type="application/octet-stream")
                return self._send(404, b"not found", body=body, content_type="text/plain")

            def _api(self, rest: str, body: bool):
                for marker in ("/revision/", "/tree/"):
                    if marker in rest:
                        repo, _, tail = rest.partition(marker)
                        break
                else:
                    repo, marker, tail = rest, "", ""
                if repo not in hub.repos:
                    return self._error("RepoNotFound", body=body)
                files = hub.listing(repo)
                if marker == "/tree/":
                    _rev, _, sub = tail.partition("/")
                    entries = [{"type": "file", "path": n, "size": len(d), "oid": _sha(d, "sha1")}
                               for n, d in files.items() if not sub or n.startswith(sub.rstrip("/") + "/")]
                    if sub and not entries:
                        return self._error("EntryNotFound", repo, body)
                    return self._json(entries, body)
                return self._json({"id": repo, "modelId": repo, "sha": hub.commit(repo), "private": False,
                                   "siblings": [{"rfilename": n, "size": len(d), "blobId": _sha(d, "sha1")}
                                                for n, d in files.items()]}, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port or 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Shut the server down and close its socket: later connections are refused."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
