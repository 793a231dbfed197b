"""The libsass engine: a killable child process and the program it runs."""
