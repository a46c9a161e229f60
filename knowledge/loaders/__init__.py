"""Files in, lightweight Markdown out: find the files to ingest and read each into text.

Every loader returns :class:`~knowledge.types.LoadedText` whose text is lightweight Markdown
(``#`` headings, blank-line separated paragraphs), whatever the file format. Every failure is a
:class:`~knowledge.errors.LoadError` with a short reason a user can act on.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.errors import EmptyFileError, LoadError
from knowledge.loaders.html import load_html
from knowledge.loaders.markdown import load_markdown
from knowledge.loaders.pdf import load_pdf
from knowledge.loaders.text import load_text
from knowledge.types import LoadedText

__all__ = ["SUPPORTED_SUFFIXES", "Discovered", "discover", "load_file"]

log = logging.getLogger(__name__)

_LOADERS: dict[str, Callable[[Path, bytes], LoadedText]] = {
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".text": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
}
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_LOADERS)
_NO_TEXT = {".pdf": "no text found (a scanned PDF needs OCR first)"}


def load_file(path: Path) -> LoadedText:
    """Read one file into its title and lightweight-Markdown text.

    Raises :class:`LoadError` when the file is missing or unreadable, of an unsupported type,
    corrupt, or holds no text; :class:`EmptyFileError` (a LoadError) when it holds nothing but
    whitespace, which says its document is gone rather than that reading failed.
    """
    path = Path(path)
    _check_regular_file(path)
    suffix = path.suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise LoadError(str(path), f"{_unsupported(suffix)} (supported: {supported})")
    data = _read_bytes(path)
    if not data.strip():
        raise EmptyFileError(str(path), "no text found (the file is empty)")
    try:
        loaded = loader(path, data)
    except LoadError:
        raise
    except RecursionError as e:
        raise LoadError(str(path), "its structure is nested too deeply to read") from e
    except Exception as e:  # a parser's bug or an input no loader foresaw: this file fails, not the ingest
        log.warning("unexpected error loading %s", path, exc_info=True)
        raise LoadError(str(path), f"cannot read the file ({type(e).__name__})") from e
    if not loaded.text.strip():
        raise LoadError(str(path), _NO_TEXT.get(suffix, "no text found"))
    return loaded


def _check_regular_file(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise LoadError(str(path), _os_reason(path, e)) from e
    if stat.S_ISDIR(mode):
        raise LoadError(str(path), "is a directory, not a file")
    if not stat.S_ISREG(mode):
        # Reading a named pipe or a device could block forever or never end.
        raise LoadError(str(path), "not a regular file")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise LoadError(str(path), _os_reason(path, e)) from e


def _os_reason(path: Path, error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "broken symbolic link" if path.is_symlink() else "file not found"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, IsADirectoryError):
        return "is a directory, not a file"
    if error.errno == errno.ELOOP:
        return "symbolic link loop"
    return f"cannot read the file ({error.strerror or error})"


def _unsupported(suffix: str) -> str:
    return f"unsupported file type '{suffix}'" if suffix else "unsupported file type (no file extension)"


@dataclass(frozen=True)
class Discovered:
    """The files to load, and what was passed over while walking directories (with why)."""

    files: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...]


def discover(paths: list[Path]) -> Discovered:
    """Expand files and directories into the files to load, in a stable order.

    A path given explicitly is kept even if unsupported or missing, so that :func:`load_file`
    reports it. Directories are walked recursively in name order: hidden entries are passed
    over silently; unsupported files, unreadable entries and symbolic links that lead out of
    the directory given are listed in ``skipped`` with why. Links inside it are followed, each
    real directory is walked once (no loops), and each real file is listed once.
    """
    walk = _Walk()
    for path in paths:
        path = Path(path)
        if os.path.isdir(path):  # False, not an error, for a name the file system refuses
            walk.directory(path, root=Path(os.path.realpath(path)))
        else:
            walk.file(path)
    return Discovered(files=tuple(walk.files), skipped=tuple(walk.skipped))


@dataclass
class _Walk:
    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    seen_files: set[str] = field(default_factory=set)
    seen_dirs: set[str] = field(default_factory=set)

    def file(self, path: Path) -> None:
        real = os.path.realpath(path)
        if real not in self.seen_files:
            self.seen_files.add(real)
            self.files.append(path)

    def directory(self, path: Path, *, root: Path) -> None:
        real = os.path.realpath(path)
        if real in self.seen_dirs:
            return
        self.seen_dirs.add(real)
        try:
            with os.scandir(path) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as e:
            self.skipped.append((path, f"cannot read the directory ({_os_reason(path, e)})"))
            return
        for entry in entries:
            if not entry.name.startswith("."):
                self.entry(entry, root=root)

    def entry(self, entry: os.DirEntry[str], *, root: Path) -> None:
        path = Path(entry.path)
        try:
            problem = _link_problem(path, root) if entry.is_symlink() else None
            is_dir, is_file = (False, False) if problem else (entry.is_dir(), entry.is_file())
        except OSError as e:  # a link loop, a name the file system refuses: this entry, not the walk
            problem = _os_reason(path, e)
        if problem:
            self.skipped.append((path, problem))
        elif is_dir:
            self.directory(path, root=root)
        elif not is_file:
            self.skipped.append((path, "not a regular file"))
        elif path.suffix.lower() in SUPPORTED_SUFFIXES:
            self.file(path)
        else:
            self.skipped.append((path, _unsupported(path.suffix.lower())))


def _link_problem(link: Path, root: Path) -> str | None:
    """Why a symbolic link met in a walk is not followed, or None: a link must stay inside the
    directory given, or it would bring in files (and their access) nobody asked for."""
    try:
        os.stat(link)
    except OSError as e:
        return _os_reason(link, e)
    if not Path(os.path.realpath(link)).is_relative_to(root):
        return "symbolic link to outside the folder being ingested (not followed)"
    return None
