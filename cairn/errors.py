"""Turn the project's known errors into one clear line and a non-zero exit code."""

from __future__ import annotations

import functools

import click

from node.consent import ConsentError
from node.crypto import CryptoError
from node.importers import FormatError
from node.ingest import ImportFailed
from node.node_dir import NodeDirError
from node.store import StoreError
from privacy.policy import PolicyError

KNOWN = (FormatError, ConsentError, CryptoError, ImportFailed, NodeDirError, StoreError, PolicyError, FileNotFoundError)


def friendly(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KNOWN as e:
            raise click.ClickException(str(e)) from None
        except Exception as e:  # errors raised by the privacy core carry their rule in the message
            if type(e).__module__.startswith(("privacy", "node", "coordinator")):
                raise click.ClickException(f"{type(e).__name__}: {e}") from None
            raise

    return wrapper
