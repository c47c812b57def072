"""The argparse parser of the command lines (pyakvq's subcommands, akvq-convert)."""

from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser; with one_line_errors=True a bad argument gives one line on stderr,
    `<prog>: error: <what> (see <prog> --help)`, and exit status 2 (no usage block)."""

    def __init__(self, *args, one_line_errors: bool = False, **kw):
        super().__init__(*args, **kw)
        self.one_line_errors = one_line_errors

    def error(self, message: str):
        if not self.one_line_errors:
            super().error(message)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
