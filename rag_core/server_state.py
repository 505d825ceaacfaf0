"""How a command finds the warm embedding server of a running session.

The server writes ``<DATA_DIR>/embedding-server.json`` once its model is loaded and removes
it when it stops: its URL, model, dtype and process id. ``rag search`` reads it and uses the
server only if that process is alive, answers ``/health`` and serves the model and dtype the
settings ask for. A stale file (a killed session) is therefore ignored, never trusted.

The file is written with mode 0600 so that it can also carry a per-session secret for the
client to send (a ``token`` field is passed through untouched to whoever reads the state).
Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = "embedding-server.json"


@dataclass(frozen=True)
class ServerState:
    """A running embedding server as its state file describes it."""

    url: str
    model: str
    dtype: str
    pid: int
    token: str = ""


def state_path(data_dir: Path) -> Path:
    """Where the session's embedding server announces itself."""
    return Path(data_dir) / STATE_FILE


def write_state(path: Path, state: ServerState) -> None:
    """Write ``state`` atomically, readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(state), handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_state(path: Path, pid: int) -> None:
    """Remove the state file if it still names process ``pid`` (a newer server keeps its own)."""
    state = read_state(path)
    if state is not None and state.pid == pid:
        path.unlink(missing_ok=True)


def read_state(path: Path) -> ServerState | None:
    """The state in ``path``, or None when there is none or it is unreadable."""
    try:
        data = json.loads(Path(path).read_text())
        return ServerState(
            url=str(data["url"]),
            model=str(data["model"]),
            dtype=str(data["dtype"]),
            pid=int(data["pid"]),
            token=str(data.get("token", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, but not ours to use
        return False
    return True


def live_server(path: Path, model: str, dtype: str, timeout: float = 1.0) -> ServerState | None:
    """The server announced in ``path`` if it is alive, answers, and serves ``model`` in
    ``dtype``; None otherwise (no file, a dead process, another model or dtype)."""
    from rag_core.embedding_client import health

    state = read_state(path)
    if state is None or not _alive(state.pid):
        return None
    if (state.model, state.dtype) != (model, dtype):
        return None
    described = health(state.url, state.token, timeout=timeout)
    if not described or (described.get("model"), described.get("dtype")) != (model, dtype):
        return None
    return state
