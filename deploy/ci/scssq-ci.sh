#!/usr/bin/env bash
# scssq in a CI job: install the client, submit the commit, exit with submit's exit code.
# Run by the GitHub Actions composite action (github/action.yml) and the GitLab CI
# template (gitlab/scssq.gitlab-ci.yml); docs/deploy.md, "CI integration", has the details.
#
# Usage: scssq-ci.sh [COMMIT]    (COMMIT defaults to $SCSSQ_CI_COMMIT, else submit's
#                                 own default, git rev-parse HEAD)
# Run it in the checkout: scssq.toml there (or SCSSQ_CI_ARGS) says what to compile.
#
#   SCSSQ_CI_INSTALL  what pip installs into the client's venv: a path, scssq==0.1.0, a
#                     git URL; with [s3] after the name (scssq[s3]==0.1.0) for boto3,
#                     which an S3 store may need (docs/deploy.md, "CI integration").
#                     Default: the scssq checkout this script lives in.
#                     "none": install nothing, run the scssq found on PATH.
#   SCSSQ_CI_ARGS     extra submit arguments, quoted like a shell's (nothing is expanded),
#                     e.g. --entry "scss/main.scss" --style compressed
#   SCSSQ_CI_RESULT   file for submit's --json result (also printed); unset: plain output
#   SCSSQ_CI_PYTHON   the interpreter the venv is made with [python3]
#   SCSSQ_CI_VENV     where the venv goes [$RUNNER_TEMP, else $TMPDIR, else /tmp; /scssq-ci-venv]
#
# The client's own settings pass through from the job's environment: SCSSQ_REDIS_URL,
# SCSSQ_STORE, AWS_*, SENTRY_DSN, any SCSSQ_* (docs/configuration.md); PIP_* for pip.
# Exit codes: submit's (0 ok, 1 compile error, 2 usage or configuration, 3 infrastructure
# or timeout); also 2 when SCSSQ_CI_ARGS does not parse, 3 when the client cannot be
# installed. On GitHub, the step outputs exit-code and result (the --json file).
set -uo pipefail

fail() {
  echo "scssq-ci: $2" >&2
  exit "$1"
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${SCSSQ_CI_PYTHON:-python3}"
install="${SCSSQ_CI_INSTALL:-$here/../..}"
commit="${1:-${SCSSQ_CI_COMMIT:-}}"
result="${SCSSQ_CI_RESULT:-}"

command -v "$python" >/dev/null || fail 3 "no $python here; set SCSSQ_CI_PYTHON"

# SCSSQ_CI_ARGS, split the way a shell splits words (shlex), each word NUL-terminated.
split='import shlex, sys
sys.stdout.write("".join(w + "\0" for w in shlex.split(sys.argv[1])))'
args=()
if [[ -n "${SCSSQ_CI_ARGS:-}" ]]; then
  "$python" -c "$split" "$SCSSQ_CI_ARGS" >/dev/null ||
    fail 2 "SCSSQ_CI_ARGS does not parse (an unclosed quote?): $SCSSQ_CI_ARGS"
  while IFS= read -r -d '' word; do
    args+=("$word")
  done < <("$python" -c "$split" "$SCSSQ_CI_ARGS")
fi

if [[ "$install" == none ]]; then
  scssq="$(command -v scssq)" || fail 3 "SCSSQ_CI_INSTALL=none, but no scssq on PATH"
else
  venv="${SCSSQ_CI_VENV:-${RUNNER_TEMP:-${TMPDIR:-/tmp}}/scssq-ci-venv}"
  "$python" -m venv "$venv" || fail 3 "could not create a venv in $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$install" ||
    fail 3 "pip could not install $install (SCSSQ_CI_INSTALL)"
  scssq="$venv/bin/scssq"
fi

cmd=("$scssq" submit)
if [[ -n "$commit" ]]; then
  cmd+=("$commit")
fi
cmd+=(${args[@]+"${args[@]}"})

if [[ -n "$result" ]]; then
  mkdir -p "$(dirname "$result")"
  "${cmd[@]}" --json >"$result"
  rc=$?
  cat "$result"
else
  "${cmd[@]}"
  rc=$?
fi

if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
  echo "exit-code=$rc" >>"$GITHUB_OUTPUT"
  if [[ -n "$result" ]]; then
    echo "result=$result" >>"$GITHUB_OUTPUT"
  fi
fi
exit "$rc"
