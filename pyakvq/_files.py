"""Output files of the commands and helpers that write one (akvq-convert's GGUF files,
write_tsa_layers, the --json reports): written whole under a temporary name beside the target and
renamed over it at the end, so that an interrupted write leaves the old file, never half of one.

One rule for what a path names, shared by all of them: a symbolic link is followed (the file it
names is replaced, the link stays), and an existing path that is not a regular file (a device such
as /dev/null or /dev/stdout, a FIFO, a socket) is never replaced by the rename, which would swap the
device node itself for a regular file. Text is written through such a path; a GGUF file, written
with seeks, is refused there."""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import stat
from collections.abc import Iterator


def output_target(path: str | os.PathLike) -> tuple[pathlib.Path, bool]:
    """(target, regular) for an output path: target is the path with its symbolic links resolved
    (the file that is written); regular is False when target exists and is not a regular file
    (a device, a FIFO, a socket). IsADirectoryError when it is a directory."""
    target = pathlib.Path(path).resolve()
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target, True
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{os.fspath(path)}: is a directory; give a file path")
    return target, stat.S_ISREG(mode)


def special_file_error(path: str | os.PathLike) -> str:
    """The message refusing a GGUF output at a path that is not a regular file."""
    return (
        f"{os.fspath(path)}: is not a regular file (a device, FIFO or socket); a GGUF file is written "
        "whole under its name: give a file path"
    )


def temporary_path(final: pathlib.Path) -> pathlib.Path:
    """A new empty file beside `final` for its data until it is complete: a name of its own (two
    writers of the same output never share one), made with the umask's permissions. OSError when
    the directory cannot take it."""
    while True:
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """`with replacing(dst) as tmp:` write the file at tmp; at the block's end it is renamed over
    dst's target (output_target), or removed if the block raised. ValueError when dst exists and
    is not a regular file (special_file_error); IsADirectoryError for a directory."""
    target, regular = output_target(path)
    if not regular:
        raise ValueError(special_file_error(path))
    tmp = temporary_path(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes text (UTF-8) to path: whole or not at all for a file (replacing), straight through
    a device or FIFO (`--json /dev/stdout`)."""
    target, regular = output_target(path)
    if not regular:
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
        return
    with replacing(target) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def exit_on_sigterm() -> None:
    """Makes SIGTERM (`kill`, a service manager stopping the command) raise SystemExit(143) in
    the main thread, so that a command writing an output still runs its cleanup and leaves no
    temporary file behind (Python's default for SIGTERM ends the process at once). A no-op
    outside the main thread."""
    import signal

    def _exit(signum, frame):  # noqa: ARG001 - signal handler signature
        raise SystemExit(128 + signum)

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, _exit)
