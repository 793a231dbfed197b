"""What clients and workers exchange: the job, its Celery message, a minimal RESP client
and its Sentinel lookup."""
