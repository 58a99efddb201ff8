"""The project's expected failures: one hierarchy, so the CLI reports every one of them the same way.

Anything derived from `DeepicdError` is a problem the user can fix (a path, a
column, a setting, a server that did not start) and reaches them as one line
and exit code 2; anything else is a bug and keeps its traceback. Library code
raises these and never imports the CLI package. Classes that callers used to
catch as `ValueError` or `RuntimeError` still are those too.
"""

from __future__ import annotations


class DeepicdError(Exception):
    """Base of every expected failure: the message alone must tell the user what to fix."""


class UserError(DeepicdError):
    """A problem with the user's input or configuration: the message names the file, column or setting."""


class ConfigError(UserError, ValueError):
    """A preset, file or override that cannot be turned into the stage's schema."""
