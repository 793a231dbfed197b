"""The worker side of a compile: per-process context, Celery steps, the task and its steps."""
