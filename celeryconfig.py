"""Celery settings for the scssq fleet, read from :class:`compiler_tasks.settings.Settings`.

Nothing here is configured twice: every value comes from the typed settings
object (``SCSSQ_*`` variables, documented defaults) or is a fixed policy of
the service explained beside it.

Celery loads this module when a command first reads its configuration (a worker: while
parsing its options), so this is where a worker meets a bad ``SCSSQ_*`` value: it exits
with one line naming the variable, the value and the fix, not a traceback through
Celery's option parsing.
"""

from compiler_tasks.coordination import connections
from compiler_tasks.errors import ConfigError
from compiler_tasks.settings import Settings

try:
    _settings = Settings.from_env()
except ConfigError as _error:
    raise SystemExit(f"scssq worker cannot start: {_error}") from None

# SCSSQ_BROKER_URL; with SCSSQ_SENTINELS, kombu's Sentinel transport (`sentinel://` URLs,
# one per Sentinel, and `master_name` below): each new broker connection asks the
# Sentinels where the master is, so workers follow a failover without a restart.
broker_url = connections.broker_url(_settings)
# rediss://: verify the server's certificate (kombu alone would use CERT_NONE).
broker_use_ssl = connections.broker_ssl(_settings)
broker_connection_retry_on_startup = True
broker_transport_options = {
    # Longer than the longest task, else Redis hands a running task to a second worker.
    "visibility_timeout": _settings.visibility_timeout,
    # A broker connection can die silently (a dropped NAT or firewall entry, a failover
    # behind a proxy): no FIN or RST, so the socket stays open and nothing arrives on it.
    # kombu then drops a consumer's BRPOP that is overdue (health_check_interval, also
    # the pub/sub connection's PING) and fails a synchronous command (publish, ack,
    # event) whose reply does not come (socket_timeout) instead of waiting forever;
    # both lead to a reconnection. The BRPOP itself carries a 1 s server-side timeout,
    # so a live broker always answers well within either limit.
    "socket_timeout": _settings.redis_reply_timeout,
    "health_check_interval": _settings.broker_health_check_interval,
    # A command that timed out is sent once more on a new connection. Without it, an
    # ack lost that way stays pending in the consumer, which at prefetch 1 then never
    # consumes again. A repeated ack, event or task message is harmless here (a second
    # delivery of a finished compile finds its result).
    "retry_on_timeout": True,
    **connections.broker_transport_options(_settings),
}

# Messages are JSON, never pickle (invariant 8).
task_serializer = "json"
result_serializer = "json"
event_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# Results travel through scssq's own keys and pub/sub, not Celery's backend (so no
# result_backend_transport_options either: the Sentinel setup above is all Celery needs).
task_ignore_result = True
result_backend = None

# Acknowledge after the task ran, requeue when its worker dies; the task itself
# counts deliveries so a poison message is not redelivered forever.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# A running compile survives a broker blip: its lock, result and wake-up go through
# scssq's own Redis calls, and a duplicate delivery of a finished task is a no-op
# (it finds the result), so cancelling would only waste the compile.
worker_cancel_long_running_tasks_on_connection_loss = False

task_default_queue = _settings.queue
task_create_missing_queues = True

# Task events for Flower.
worker_send_task_events = True
task_send_sent_event = True

worker_hijack_root_logger = False
