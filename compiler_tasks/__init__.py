"""scssq's worker side: Celery app, compile task, lock, engines, storage, events.

Importing the package itself is cheap (no Celery, no boto3): the client's
cache-hit path uses ``keys``, ``settings``, ``events`` and ``storage`` only.
"""

__version__ = "0.1.0"
