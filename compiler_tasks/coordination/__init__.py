"""Shared state in Redis: connections and ACLs, the lock, done events, fleet, commits."""
