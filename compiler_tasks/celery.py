"""Celery's own convention: ``celery -A compiler_tasks worker`` and ``... flower`` find the app.

Given a package, ``celery -A`` looks for a Celery instance at ``compiler_tasks.app`` or
``compiler_tasks.celery``, then imports the ``compiler_tasks.celery`` submodule: this
one. The package's ``__init__`` stays free of Celery on purpose (the client's cache-hit
path imports its submodules), so the app is reached through here; the app itself lives
in :mod:`compiler_tasks.app`, and ``celery -A compiler_tasks.app`` works as before.
"""

from __future__ import annotations

from .app import app

__all__ = ["app"]
