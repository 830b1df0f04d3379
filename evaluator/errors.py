"""User-facing errors: one clear line, exit code 2, never a traceback."""

from __future__ import annotations

import errno
import os


class UserError(Exception):
    """A problem the user can fix (bad job file, missing data, unknown model). The CLI prints it and exits 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # always one line


# errno -> (what it means, what to do); anything else falls back to the system's own words
_OS_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on device", "free space"),
    errno.EDQUOT: ("disk quota exceeded", "free space or raise the quota"),
    errno.EFBIG: ("file too large for this file system", "write to another file system"),
    errno.EROFS: ("read-only file system", "make that folder writable (or copy the run folder somewhere writable)"),
    errno.EACCES: ("permission denied", "fix its permissions or use a folder you can write to"),
    errno.EPERM: ("operation not permitted", "fix its permissions or use a folder you can write to"),
    errno.ENOTDIR: ("a part of that path is a file, not a folder", "move the file away or choose another path"),
    errno.EEXIST: ("a file is in the way where a folder is needed", "move the file away or choose another path"),
    errno.EISDIR: ("it is a folder, not a file", "choose a file path"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path"),
    errno.EMFILE: ("too many open files", "raise the open-file limit (ulimit -n)"),
    errno.EIO: ("input/output error on the device", "check the disk"),
}


def os_error_line(exc: OSError, kept: str = "files already written are kept") -> str:
    """One line for an OSError: the path, what the errno means, what was kept and what to do."""
    name = errno.errorcode.get(exc.errno or 0)
    fallback = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__)
    meaning, fix = _OS_ERRORS.get(exc.errno or -1, (fallback, ""))
    where = str(exc.filename) if exc.filename is not None else "a file"
    if exc.filename2 is not None:
        where += f" -> {exc.filename2}"
    code = f" ({name})" if name else ""
    todo = f"{fix} and run the same command again" if fix else "fix it and run the same command again"
    return " ".join(f"{where}: {meaning}{code} — {kept}; {todo}".split())
