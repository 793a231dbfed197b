"""What a worker tells its operators: Sentry, Prometheus metrics, task log lines, counters."""
