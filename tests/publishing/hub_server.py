"""A Hub-compatible HTTP endpoint on loopback: the subset of the Hugging Face Hub API that HfApi.repo_exists,
create_repo and upload_folder call (repo info, repo creation, model-card YAML validation, preupload, commit), storing
files in memory.

It answers preupload with uploadMode "regular" for every file, so commits carry the files base64-encoded in the
commit's NDJSON payload (the LFS / Xet storage path of large files on the real Hub is not emulated).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml


class FakeHub:
    """Repos: {repo_id: {path: bytes}}; `requests`: every request answered. `token`: required bearer token (None:
    any). `hang_s`: delay every answer."""

    def __init__(self, token: str | None = None, hang_s: float = 0.0) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.commits: list[dict[str, Any]] = []
        self.metadata: list[dict[str, Any]] = []
        self.requests: list[str] = []  # every request answered, as the server logs it
        self.token = token
        self.hang_s = hang_s
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet; every request kept in hub.requests
                hub.requests.append(format % args)

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if hub.hang_s:
                    time.sleep(hub.hang_s)
                if hub.token is None or self.headers.get("authorization") == f"Bearer {hub.token}":
                    return True
                self._send(401, {"error": "Invalid credentials"}, {"X-Error-Message": "Invalid credentials"})
                return False

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _validate_yaml(self, content: str) -> None:
                """The model card's YAML front matter must parse to a mapping (what the Hub checks first)."""
                match = re.match(r"---\n(.*?)\n---\n", content, re.S)
                try:
                    metadata = yaml.safe_load(match.group(1)) if match else None
                except yaml.YAMLError as error:
                    metadata = error
                if not isinstance(metadata, dict):
                    self._send(400, {"errors": [{"message": f"invalid YAML metadata: {metadata!r}"}]})
                    return
                hub.metadata.append(metadata)
                self._send(200, {"errors": [], "warnings": []})

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                match = re.fullmatch(r"/api/models/([^/]+/[^/?]+)(?:/revision/[^?]+)?(?:\?.*)?", self.path)
                if match and match.group(1) in hub.repos:
                    repo = match.group(1)
                    siblings = [{"rfilename": path} for path in sorted(hub.repos[repo])]
                    self._send(
                        200, {"id": repo, "modelId": repo, "sha": "0" * 40, "siblings": siblings, "private": False}
                    )
                    return
                self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})

            def do_POST(self) -> None:
                if not self._authorized():
                    return
                body = self._body()
                if self.path == "/api/validate-yaml":
                    self._validate_yaml(json.loads(body)["content"])
                    return
                if self.path == "/api/repos/create":
                    request = json.loads(body)
                    repo = f"{request.get('organization') or 'user'}/{request['name']}"
                    if repo in hub.repos:
                        self._send(409, {"error": "You already created this model repo", "url": repo})
                        return
                    hub.repos[repo] = {}
                    self._send(200, {"url": f"{hub.endpoint}/{repo}", "name": repo})
                    return
                match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/([^?]+)(?:\?.*)?", self.path)
                if not match or match.group(1) not in hub.repos:
                    self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                    return
                repo, action = match.group(1), match.group(2)
                if action == "preupload":
                    files = json.loads(body)["files"]
                    self._send(
                        200,
                        {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
                    )
                    return
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                header = next(line["value"] for line in lines if line["key"] == "header")
                for line in lines:
                    if line["key"] == "file":
                        value = line["value"]
                        hub.repos[repo][value["path"]] = base64.b64decode(value["content"])
                    elif line["key"] != "header":
                        self._send(400, {"error": f"unsupported commit operation {line['key']}"})
                        return
                oid = hashlib.sha1(body).hexdigest()
                hub.commits.append({"repo": repo, "summary": header.get("summary"), "oid": oid})
                self._send(
                    200, {"commitUrl": f"{hub.endpoint}/{repo}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}
                )

        return Handler
