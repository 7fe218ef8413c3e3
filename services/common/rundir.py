"""Run directories: a local path or any pyarrow filesystem URI (s3://, gs://, file://, ...).

A run writes ``config.json`` (resolved arguments), ``result.json`` (final metrics),
``checkpoints/`` and pictures. All I/O goes through pyarrow.fs so the same code writes
to a laptop disk or to object storage on a cluster.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from typing import Any

import pyarrow.fs as pafs

from services.common.config import ConfigError


class RunDir:
    """One run's directory on a pyarrow filesystem."""

    def __init__(self, uri: str):
        if not uri:
            raise ConfigError("--run-dir must not be empty")
        self.uri = uri
        if "://" in uri:
            try:
                self.fs, self.root = pafs.FileSystem.from_uri(uri)
            except Exception as exc:  # noqa: BLE001 - pyarrow raises several types
                raise ConfigError(f"--run-dir {uri!r}: {exc}") from exc
        else:
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(uri)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def local_path(self, *parts: str) -> str:
        """A local filesystem path (only for local run-dirs; e.g. for matplotlib)."""
        if not self.is_local:
            raise ValueError(f"{self.uri} is not a local directory")
        return self.path(*parts)

    def ensure_writable(self) -> RunDir:
        """Create the directory and prove we can write to it; ConfigError otherwise."""
        probe = self.path(f".write-probe-{uuid.uuid4().hex}")
        try:
            self.fs.create_dir(self.root, recursive=True)
            with self.fs.open_output_stream(probe) as f:
                f.write(b"ok")
            self.fs.delete_file(probe)
        except (OSError, PermissionError) as exc:
            raise ConfigError(f"--run-dir {self.uri!r} is not writable: {exc}") from exc
        return self

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def makedirs(self, *parts: str) -> str:
        p = self.path(*parts)
        self.fs.create_dir(p, recursive=True)
        return p

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write atomically where the filesystem allows it (temp file, then move)."""
        target = self.path(name)
        self.fs.create_dir(posixpath.dirname(target), recursive=True)
        tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        try:
            self.fs.move(tmp, target)
        except OSError:  # object stores without rename: write directly
            with self.fs.open_output_stream(target) as f:
                f.write(data)
            self.fs.delete_file(tmp)

    def read_bytes(self, name: str) -> bytes:
        with self.fs.open_input_stream(self.path(name)) as f:
            return f.read()

    def write_json(self, name: str, obj: Any) -> None:
        self.write_bytes(name, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name))

    def listdir(self, *parts: str) -> list[str]:
        sel = pafs.FileSelector(self.path(*parts), allow_not_found=True)
        return sorted(posixpath.basename(i.path) for i in self.fs.get_file_info(sel))

    def delete(self, name: str) -> None:
        self.fs.delete_file(self.path(name))

    def __repr__(self) -> str:
        return f"RunDir({self.uri!r})"
