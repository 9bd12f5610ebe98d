# Sourced by ./run and ./test: find Python >= 3.12, create .venv, install the project.
# Re-installs only when pyproject.toml changed (a hash stamp inside .venv).
set -euo pipefail

TS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TS_VENV="${TS_VENV:-$TS_ROOT/.venv}"

ts_find_python() {
    local candidate version
    # An explicit choice wins; then the newest suitable interpreter on PATH; then pyenv's.
    for candidate in "${TOWNSQUARE_PYTHON:-}" python3.13 python3.12 python3 python; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        # pyenv shims exist for every installed version but fail unless that version is selected.
        version=$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            command -v "$candidate"; return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9]|[2-9][0-9])(\.[0-9]+)?$' | sort -rV); do
            candidate="$(pyenv root)/versions/$version/bin/python3"
            if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
        done
    fi
    return 1
}

ts_ensure_venv() {
    if [ ! -x "$TS_VENV/bin/python" ] || ! "$TS_VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
        local py
        if ! py=$(ts_find_python); then
            echo "Townsquare needs Python 3.12 or newer (Django 6 requires it)." >&2
            echo "None was found on PATH (python3.13, python3.12, python3) or in pyenv." >&2
            echo "Install one, or point TOWNSQUARE_PYTHON at it: TOWNSQUARE_PYTHON=/path/to/python3.12 $0" >&2
            exit 2
        fi
        echo "==> creating $TS_VENV with $py ($("$py" --version))"
        rm -rf "$TS_VENV"
        "$py" -m venv "$TS_VENV"
    fi
    local stamp="$TS_VENV/.townsquare-installed" want
    want=$(cat "$TS_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "==> installing Townsquare and its dependencies into $TS_VENV"
        "$TS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
        "$TS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$TS_ROOT[dev]"
        echo "$want" > "$stamp"
    fi
    export PATH="$TS_VENV/bin:$PATH"
}
