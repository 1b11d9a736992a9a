"""Putting a directory in place without losing anything: bundles (:func:`nnaudio_export.export`)
and Triton model directories are assembled beside their final path and renamed into place.

The rules, for every directory this package writes:

- **One writer per path.** :func:`target_lock` holds an exclusive ``flock`` on
  ``.<name>.lock`` beside the target for the whole write; a second writer fails at once
  with one line naming the holder's pid. The kernel drops the lock when its process dies
  (even ``kill -9``), so a lock never goes stale; the file is removed on release.
- **Our leftovers carry a marker.** Everything assembled beside the target lives in a
  container directory ``.<name>.<random>.tmp`` / ``.<name>.old.<random>`` holding the file
  :data:`MARKER` (JSON: tool, target name, kind) and the directory itself under ``<name>``.
  A run killed at any point leaves only such containers; the next writer to the same path,
  holding the lock, removes every container whose marker names its target (and puts back
  a previous version that a killed replacement had moved aside). Nothing is recognised by
  its name alone.
- **Replace only what we wrote.** With ``overwrite`` an existing target is replaced only
  when ``foreign(target)`` (the caller's ownership test) finds nothing this package did not
  write; anything else (a file, a link, a directory with other content) is refused with one
  line saying what is there.

Standard library only (bottom of the package order).
"""
import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Union

MARKER = ".nnaudio_export-leftover"
TOOL = "nnaudio_export"

# foreign(path) -> None when everything in the existing directory ``path`` was written by
# this package (it may be replaced), else a short description of what else is there.
Foreign = Callable[[Path], Optional[str]]


class TargetBusy(RuntimeError):
    """Another process is writing the same target."""


def target_path(path: Union[str, Path]) -> Path:
    """``path`` made absolute and normalised (``.``, ``..`` resolved lexically, links kept),
    so that ``--out .`` names the directory itself; the filesystem root is refused."""
    p = Path(os.path.abspath(os.fspath(path)))
    if not p.name:
        raise ValueError(f"{path}: cannot write a directory in place of the filesystem root")
    return p


@contextlib.contextmanager
def target_lock(final: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``final`` (POSIX ``flock`` on ``.<name>.lock`` beside it);
    raise :class:`TargetBusy` at once when another process holds it."""
    import fcntl

    final.parent.mkdir(parents=True, exist_ok=True)
    lock_path = final.parent / f".{final.name}.lock"
    for _ in range(10):   # the holder may unlink the file between our open and flock
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise TargetBusy(f"{final} is being written by another nnaudio_export process "
                             f"(pid {holder}); wait for it to finish or choose another path") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:  # pragma: no cover - ten lost races in a row
        raise TargetBusy(f"{final}: could not take the lock {lock_path}")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)


def _new_container(final: Path, kind: str) -> Path:
    """A new marked container beside ``final`` (``kind``: 'staging' or 'aside')."""
    suffix = ".tmp" if kind == "staging" else ""
    prefix = f".{final.name}." + ("old." if kind == "aside" else "")
    box = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=final.parent))
    (box / MARKER).write_text(json.dumps({"tool": TOOL, "target": final.name, "kind": kind,
                                          "pid": os.getpid()}) + "\n")
    return box


def _marker_of(box: Path) -> Optional[dict]:
    """The parsed marker of a container of ours, else None."""
    try:
        if box.is_symlink() or not box.is_dir():
            return None
        m = box / MARKER
        if m.is_symlink() or not m.is_file():
            return None
        data = json.loads(m.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == TOOL else None


def remove_tree(path: Path) -> None:
    """Remove a directory tree we own, read-only parts included (write bits are added to its
    directories first, without following links)."""
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    for root, dirs, _files in os.walk(path):
        for d in [root] + [os.path.join(root, d) for d in dirs]:
            st = os.lstat(d)
            if stat.S_ISDIR(st.st_mode) and (st.st_mode & 0o700) != 0o700:
                os.chmod(d, st.st_mode | 0o700)
    shutil.rmtree(path)


def remove_leftovers(final: Path) -> List[Path]:
    """Remove the containers that killed or failed writers of ``final`` left beside it
    (recognised by their marker naming ``final``); a previous version that a killed
    replacement had moved aside is put back first when ``final`` is missing. Call with the
    lock held. Returns the removed containers."""
    removed = []
    if not final.parent.is_dir():
        return removed
    for box in sorted(final.parent.iterdir()):
        if not box.name.startswith(f".{final.name}."):
            continue
        marker = _marker_of(box)
        if marker is None or marker.get("target") != final.name:
            continue
        inner = box / final.name
        if marker.get("kind") == "aside" and not os.path.lexists(final) and inner.is_dir():
            os.replace(inner, final)
        remove_tree(box)
        removed.append(box)
    return removed


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A new empty directory to assemble ``final`` in, inside a marked container beside it
    (same filesystem, so it can be renamed into place). The container is removed when the
    block ends, whether it failed or :func:`install_dir` moved the directory out."""
    final.parent.mkdir(parents=True, exist_ok=True)
    box = _new_container(final, "staging")
    inner = box / final.name
    inner.mkdir()
    try:
        yield inner
    finally:
        remove_tree(box)


def check_replaceable(final: Path, overwrite: bool, foreign: Foreign) -> None:
    """Raise unless ``final`` is absent, or ``overwrite`` is set and ``final`` is a directory
    whose every entry this package wrote (``foreign(final)`` is None)."""
    if not os.path.lexists(final):
        return
    if not overwrite:
        raise FileExistsError(f"{final} already exists; pass overwrite=True (CLI: --force) to replace it")
    if final.is_symlink():
        raise FileExistsError(f"{final} is a symbolic link; --force replaces only directories "
                              "nnaudio_export wrote: remove it or choose another path")
    if not final.is_dir():
        raise FileExistsError(f"{final} is a file, not a directory nnaudio_export wrote; "
                              "--force does not replace it: remove it or choose another path")
    what = foreign(final)
    if what is not None:
        raise FileExistsError(f"{final} {what}, which nnaudio_export did not write; --force "
                              "replaces only its own output: remove that or choose another path")


_STOP_REQUESTED = False


def request_stop() -> None:
    """Note that the process was asked to stop (the CLI's SIGTERM handler calls it before it
    raises ``KeyboardInterrupt``): :func:`install_dir` then refuses to put anything in place,
    even when a library on the stack swallowed the interrupt (seen once in the suite: a
    SIGTERM during an AOTInductor compile, and the build carried on and installed)."""
    global _STOP_REQUESTED
    _STOP_REQUESTED = True


def install_dir(tmp: Path, final: Path, overwrite: bool, foreign: Foreign) -> None:
    """Rename the finished directory ``tmp`` (from :func:`staging_dir`) onto ``final`` (made
    0755: a bundle is meant to be shared). An existing ``final`` is checked with
    :func:`check_replaceable`, moved aside into a marked container, replaced, and put back if
    the replacement fails; the container is then removed. After :func:`request_stop` it
    raises ``KeyboardInterrupt`` instead (the staging directory is then removed)."""
    if _STOP_REQUESTED:
        raise KeyboardInterrupt("stop requested")
    os.chmod(tmp, 0o755)
    check_replaceable(final, overwrite, foreign)
    if not os.path.lexists(final):
        os.replace(tmp, final)
        return
    mode = os.lstat(final).st_mode
    if mode & 0o200 == 0:   # moving a directory to another parent needs write access to it
        os.chmod(final, mode | 0o700)
    box = _new_container(final, "aside")
    try:
        os.replace(final, box / final.name)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(box / final.name, final)
            raise
    finally:
        remove_tree(box)

