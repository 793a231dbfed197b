#!/bin/sh
# Run by the `deps` service of docker-compose.dev.yml: installs the mounted
# project (editable) with its dev extra into /venv, the `venv` volume every dev
# service shares. Dependencies install once: the next start finds the stamp of
# the same pyproject.toml and does nothing; a changed pyproject.toml reinstalls,
# from pip's cache on the shared `pip-cache` volume where it can.
set -eu
cd /app
stamp="/venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ -e "$stamp" ]; then
    echo "deps: up to date ($stamp)"
    exit 0
fi
[ -x /venv/bin/python ] || python -m venv /venv
/venv/bin/pip install --upgrade pip
/venv/bin/pip install -e '.[dev]'
rm -f /venv/.installed-*
touch "$stamp"
echo "deps: installed"
