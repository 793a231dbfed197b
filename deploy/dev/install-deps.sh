#!/bin/sh
# Run by the `deps` service of docker-compose.dev.yml: installs the mounted
# project into /venv, the `venv` volume every dev service shares, exactly as
# `make setup` does: the hash-checked versions of requirements/dev.lock, then
# the project itself (editable, no dependencies, the lock's build backend).
# Dependencies install once: the next start finds the stamp of the same lock
# and pyproject.toml and does nothing; a changed one reinstalls, from pip's
# cache on the shared `pip-cache` volume where it can.
set -eu
cd /app
stamp="/venv/.installed-$(cat requirements/dev.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ -e "$stamp" ]; then
    echo "deps: up to date ($stamp)"
    exit 0
fi
[ -x /venv/bin/python ] || python -m venv /venv
/venv/bin/python -m pip install --require-hashes -r requirements/dev.lock
/venv/bin/python -m pip install --no-deps --no-build-isolation -e .
rm -f /venv/.installed-*
touch "$stamp"
echo "deps: installed"
