"""Shared state in Redis: connections and ACLs, the lock and its renewal, done events,
fleet, commits."""
