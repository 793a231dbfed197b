"""scssq's worker side, and the parts of it the client shares.

Packages, by concept:

* ``engines``: compiling one entry of a bundle. ``base`` (what every engine shares),
  ``registry`` (which engines exist, opening one), ``resolver`` (import rules inside
  the bundle), ``libsass/`` (a killable child process) and ``dart/`` (a long-lived
  Dart Sass compiler and its host).
* ``bundle``: the source files of one submit: ``model`` (the values), ``collect``,
  ``sources`` (reading a source file), ``archive`` (transport), ``fileio``.
* ``store``: the artifact store: ``base`` (interface), ``file``, ``s3``, ``presigned``,
  ``bundles`` (uploaded bundles, believed only if they hash to their digest).
* ``coordination``: shared state in Redis: ``connections``, ``acl``, ``lock``,
  ``renewal`` (one thread per job keeps the lock), ``events``, ``fleet``, ``commits``.
* ``protocol``: what clients and workers exchange: ``jobs``, ``messages``, ``resp``,
  ``sentinel`` (finding the Redis master on the client side).
* ``observability``: ``sentry``, ``metrics``, ``logs`` (task log lines), ``signals``
  (the Celery signal handlers that wire them in), ``stats`` (fleet-wide counters).
* ``worker``: ``context`` (per-process resources) and ``pipeline`` (the steps of a
  compile), both free of Celery; ``tasks``, ``bootsteps`` and ``acks`` on Celery;
  ``probe`` (Kubernetes probes).

Beside them: ``app`` (the Celery application, ``celery -A compiler_tasks.app``),
``settings``, ``errors`` and ``keys`` (names, hashes and every Redis key).

Importing the package, or any of its packages, is cheap (no Celery, no boto3): the
client's cache-hit path imports modules such as ``keys``, ``settings``, ``errors``,
``protocol.messages`` and ``store.presigned``.
"""

__version__ = "0.1.0"
