#!/usr/bin/env bash
# The unit suite on every other supported Python (3.12, 3.13; the main .venv is the lowest, 3.11).
# Each version gets its own environment under .venvs/ (UV_PROJECT_ENVIRONMENT), so the main .venv is
# never touched. A version with no interpreter on this machine is reported and left out; uv is not
# allowed to download one (CI machines carry pyenv's builds, as this one does).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
VERSIONS=${PYTHON_VERSIONS:-"3.12 3.13"}

find_python() {
    local version=$1 candidate
    local pyenv_root
    pyenv_root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    # pyenv's shims only answer for the global version, so look in its versions directory first.
    for candidate in "$pyenv_root"/versions/"$version".*/bin/python"$version" "$(command -v "python$version" || true)"; do
        if [[ -x "$candidate" ]] && "$candidate" -c 'pass' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

status=0
for version in $VERSIONS; do
    if ! python=$(find_python "$version"); then
        echo "python $version: no interpreter on this machine, not run"
        continue
    fi
    started=$SECONDS
    echo "python $version: unit suite with $python"
    if UV_PROJECT_ENVIRONMENT=".venvs/py$version" UV_PYTHON_DOWNLOADS=never \
        "$UV" run --frozen --quiet --python "$python" pytest -m "not integration" -q -p no:cacheprovider; then
        echo "python $version: passed in $((SECONDS - started)) s"
    else
        echo "python $version: FAILED after $((SECONDS - started)) s"
        status=1
    fi
done
exit $status
