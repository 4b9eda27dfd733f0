"""Output files: atomic writes, writability checks made up front, and no temp file left behind.

:func:`atomic_path` writes to a hidden temporary name in the target's folder and renames it over the
target. While such a temp file exists, SIGTERM and SIGINT handlers are installed that remove it and
then behave as the previous handler would (the default action kills the process with the same signal);
the previous handlers come back once no temp file is left.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError, MedscoreError, OutputError

__all__ = ["atomic_path", "atomic_group", "check_not_input", "ensure_writable", "check_free", "check_out_folder",
           "check_out_dir", "live_temp_files"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_live: set[Path] = set()
_previous: dict[int, Any] = {}
_lock = threading.Lock()
_group: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar("medscore_atomic_group",
                                                                                         default=None)


def live_temp_files() -> frozenset[Path]:
    """Temp files of writes in progress (removed on SIGTERM/SIGINT)."""
    return frozenset(_live)


def _remove_live() -> None:
    for p in list(_live):
        with contextlib.suppress(OSError):
            p.unlink()
        _live.discard(p)


def _restore_handlers() -> None:
    for sig, old in _previous.items():
        with contextlib.suppress(ValueError, TypeError):  # not the main thread / foreign handler object
            signal.signal(sig, old)
    _previous.clear()


def _on_signal(signum: int, frame: Any) -> None:
    """Remove the temp files, put the previous handler back and let it act."""
    old = _previous.get(signum, signal.SIG_DFL)
    _remove_live()
    _restore_handlers()
    if callable(old):
        old(signum, frame)  # e.g. Python's default SIGINT handler raises KeyboardInterrupt
    elif old == signal.SIG_DFL:
        os.kill(os.getpid(), signum)  # the default action, now that our handler is gone


def _register(tmp: Path) -> None:
    with _lock:
        _live.add(tmp)
        if _previous or threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNALS:
            _previous[sig] = signal.getsignal(sig)
            signal.signal(sig, _on_signal)


def _unregister(tmp: Path) -> None:
    with _lock:
        _live.discard(tmp)
        if not _live and _previous and threading.current_thread() is threading.main_thread():
            _restore_handlers()


def _existing_folder(path: Path) -> Path:
    for folder in (path.parent, *path.parent.parents):
        if folder.exists():
            return folder
    return Path(".")


def _check_folder(folder: Path, path: Path, name: str) -> None:
    """``folder`` (the nearest existing one above ``path``) is a folder in which a temp file can be created."""
    if not folder.is_dir():
        raise OutputError(f"cannot write {name} {path}: {folder} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".medscore-check-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"cannot write {name} {path}: {folder} is not writable ({exc.strerror or exc})") from None


def ensure_writable(path: str | Path, name: str = "output") -> Path:
    """Check that ``path`` can be written by creating (and removing) a temp file where it will go.

    Creates no folder: when the parent is missing, its nearest existing ancestor must be writable.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{name} {path} is a folder: give a file name")
    _check_folder(_existing_folder(path), path, name)
    return path


def check_free(paths: Iterable[str | Path], name: str = "output") -> None:
    """Before any work: no path of ``paths`` is an existing folder, and the nearest existing folder above each is
    writable (one temp file created and removed per folder). Creates nothing; ``name`` is what messages call the
    files (``--out``). Existing files are fine: outputs replace them atomically."""
    folders: dict[Path, Path] = {}
    for path in map(Path, paths):
        if path.is_dir():
            raise OutputError(f"cannot write {name} {path}: a folder of that name is in the way (remove it or "
                              "choose another output name)")
        folders.setdefault(_existing_folder(path), path)
    for folder, path in folders.items():
        _check_folder(folder, path, name)


def check_out_folder(out: str | Path, files: Iterable[str | Path], name: str = "--out") -> Path:
    """An output folder written over a long run (demo, benchmark): refused up front when it is a file, lies under
    a file or cannot be written, or when one of the ``files`` it will hold (relative to it) is a folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{name} {out} is a file: give a folder")
    check_free([out / f for f in files], name)
    return out


def check_out_dir(out: str | Path, *, resume: bool = False, overwrite: bool = False, name: str = "--out",
                  flags: tuple[str, str] = ("--resume", "--overwrite")) -> Path:
    """A run folder: refuse a non-empty one unless resuming or overwriting, and an unwritable one.
    ``name`` and ``flags`` are how the caller spells the folder and the two switches."""
    out = Path(out)
    if resume and overwrite:
        raise OutputError(f"{flags[0]} and {flags[1]} exclude each other: one continues the run, the other replaces it")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{name} {out} is a file: give a folder")
    if out.is_dir() and any(out.iterdir()) and not (resume or overwrite):
        held = ", ".join(sorted(p.name for p in out.iterdir())[:4])
        raise OutputError(f"{name} {out} is not empty ({held}, ...): pass {flags[0]} to continue that run, "
                          f"{flags[1]} to replace it, or choose an empty folder")
    ensure_writable(out / "model.json", name)
    return out


def _write_error(target: Path, exc: OSError, grouped: bool = False) -> OutputError:
    reason = exc.strerror or (str(exc).splitlines() or [exc.__class__.__name__])[0]
    left = "no output of this run was written" if grouped else "no partial file was left"
    return OutputError(f"cannot write {target}: {reason}; {left}")


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()
    _unregister(tmp)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target`` (same suffixes); rename it to ``target`` on success.

    On any exception, SIGTERM or SIGINT the temporary file is removed and ``target`` is left as it was; an OSError
    of the write (a full disk: "File too large", "No space left on device") becomes a one-line OutputError. Inside
    :func:`atomic_group` the rename waits for the end of the group.
    """
    target = Path(target)
    suffix = "".join(target.suffixes) or ".tmp"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name.split('.')[0]}-", suffix=suffix, dir=target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path, group = Path(tmp), _group.get()
    _register(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
        if group is None:
            os.replace(tmp_path, target)
        else:
            group.append((tmp_path, target))
    except MedscoreError:
        raise
    except OSError as exc:
        raise _write_error(target, exc, group is not None) from None
    finally:
        if group is None or (tmp_path, target) not in group:
            _discard(tmp_path)


@contextlib.contextmanager
def atomic_group() -> Iterator[None]:
    """The :func:`atomic_path` writes inside the block land together: each temp file is renamed over its target
    when the block ends without error; on an error none is and every temp file is removed, so when a run's last
    file fails (a full disk) every target is left as it was. A nested group joins the outer one."""
    if _group.get() is not None:
        yield
        return
    pending: list[tuple[Path, Path]] = []
    token = _group.set(pending)
    try:
        try:
            yield
        finally:
            _group.reset(token)
        for tmp, target in pending:
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise _write_error(target, exc) from None
    finally:
        for tmp, _ in pending:
            _discard(tmp)  # the temp files not renamed (all of them after an error)


def check_not_input(output: str | Path, *inputs: str | Path | None) -> None:
    """Refuse to write ``output`` over one of the inputs."""
    out = Path(output).resolve()
    for p in inputs:
        if p is not None and Path(p).exists() and Path(p).resolve() == out:
            raise InputError(f"refusing to overwrite the input {p}: choose another output path")
