"""Slack's file upload, as `WebClient.files_upload_v2` drives it: `files.getUploadURLExternal`
(a file id and an upload URL for `length` bytes), a POST of the bytes to that URL (HTTP 200, body
"OK - <length>"), then `files.completeUploadExternal` (the files shared in a channel, with the
initial comment). Shapes follow tests/conformance/slack/web_api/files.*; the emulator keeps the
bytes so tests can open what zqbo uploaded."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

MAX_FILE_BYTES = 1024 * 1024 * 1024  # Slack's limit per file: 1 GB


@dataclass
class UploadedFile:
    id: str
    filename: str
    length: int
    team_id: str
    data: bytes = b""
    uploaded: bool = False
    title: str = ""
    channel: str = ""
    initial_comment: str = ""
    shared: bool = False
    alt_txt: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_api(self, created: int, user: str) -> dict[str, Any]:
        """A file object as completeUploadExternal answers it (id and title, as the sample has
        them, and the common fields of Slack's file objects)."""
        return {
            "id": self.id,
            "created": created,
            "timestamp": created,
            "name": self.filename,
            "title": self.title or self.filename,
            "mimetype": _mimetype(self.filename),
            "filetype": self.filename.rsplit(".", 1)[-1].lower() if "." in self.filename else "",
            "user": user,
            "size": len(self.data),
        }


class Files:
    """Uploads in progress and files shared, by id."""

    def __init__(self) -> None:
        self.by_id: dict[str, UploadedFile] = {}
        self.by_key: dict[str, str] = {}  # the secret part of an upload URL -> file id

    def start(self, args: dict[str, Any], team_id: str) -> tuple[dict[str, Any], str]:
        """files.getUploadURLExternal: (answer, upload key)."""
        filename = str(args.get("filename") or "")
        try:
            length = int(str(args.get("length", "")))
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}, ""
        if not filename or length <= 0 or length > MAX_FILE_BYTES:
            return {"ok": False, "error": "invalid_arguments"}, ""
        file_id = "F" + secrets.token_hex(5).upper()
        key = secrets.token_urlsafe(12)
        self.by_id[file_id] = UploadedFile(
            file_id, filename, length, team_id, alt_txt=str(args.get("alt_txt") or "")
        )
        self.by_key[key] = file_id
        return {"ok": True, "file_id": file_id}, key

    def upload(self, key: str, data: bytes) -> tuple[int, str]:
        """The POST of the bytes: (HTTP status, body)."""
        file_id = self.by_key.get(key)
        upload = self.by_id.get(file_id or "")
        if upload is None or upload.uploaded:
            return 404, "Not Found"
        if len(data) != upload.length:
            return 400, f"length {len(data)} is not the {upload.length} bytes announced"
        upload.data, upload.uploaded = data, True
        return 200, f"OK - {len(data)}"

    def complete(self, args: dict[str, Any], team_id: str) -> tuple[list[UploadedFile], str | None]:
        """files.completeUploadExternal: the files to share, or Slack's error."""
        try:
            wanted = json.loads(args["files"]) if isinstance(args.get("files"), str) else args.get("files")
        except (KeyError, ValueError):
            return [], "invalid_arguments"
        if not isinstance(wanted, list) or not wanted:
            return [], "invalid_arguments"
        found = []
        for item in wanted:
            upload = self.by_id.get(str(item.get("id", ""))) if isinstance(item, dict) else None
            if upload is None or upload.team_id != team_id or not upload.uploaded or upload.shared:
                return [], "file_not_found"
            upload.title = str(item.get("title") or upload.filename)
            found.append(upload)
        return found, None


def _mimetype(filename: str) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return {"png": "image/png", "csv": "text/csv", "txt": "text/plain"}.get(ext, "application/octet-stream")
