# Shared by scripts/*.sh: create .venv with Python >= 3.11 and install fedchain with extras.
# Re-installs only when pyproject.toml changed since the last install.
ensure_venv() {
    local extras="$1" py="${PYTHON:-}"
    if [ -z "$py" ] && [ ! -x .venv/bin/python ]; then
        for candidate in python3 python3.13 python3.12 python3.11; do
            if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
                py="$candidate"; break
            fi
        done
    fi
    [ -n "$py" ] || [ -x .venv/bin/python ] || { echo "fedchain needs Python >= 3.11 on PATH (or set PYTHON=...)" >&2; exit 1; }
    [ -x .venv/bin/python ] || "$py" -m venv .venv
    local stamp=".venv/.installed-$extras"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "== installing fedchain[$extras] into .venv"
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e ".[$extras]"
        touch "$stamp"
    fi
}
