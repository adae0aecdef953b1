#!/bin/sh
# Container entry point.
#   serve  (default) serve TRIMODAL_INDEX with TRIMODAL_CKPT; on a first run with empty volumes
#          (no index yet) build the SynthAV demo into them first, unless TRIMODAL_DEMO_ON_EMPTY=false
#          (with the query encoders exported to ONNX: a served container answers for long)
#   index  build a new index version from TRIMODAL_MANIFEST (the running API picks it up)
#   *      any other trimodal command, e.g. `docker compose run api trimodal index info ...`
set -eu
: "${TRIMODAL_INDEX:=/data/indexes/main}"
: "${TRIMODAL_CKPT:=/data/checkpoints/main/best}"
: "${TRIMODAL_MANIFEST:=/data/corpus/manifest.jsonl}"
: "${TRIMODAL_DEVICE:=cpu}"
case "${1:-serve}" in
serve)
    if [ ! -f "$TRIMODAL_INDEX/CURRENT" ] && [ "${TRIMODAL_DEMO_ON_EMPTY:-true}" = "true" ]; then
        echo "trimodal: no index at $TRIMODAL_INDEX yet: building the SynthAV demo into the volumes"
        trimodal demo --corpus-dir /data/corpus/synthav --model-dir "$(dirname "$TRIMODAL_CKPT")" \
            --index-dir "$TRIMODAL_INDEX" --no-serve --onnx
    fi
    exec trimodal serve --index "$TRIMODAL_INDEX" --ckpt "$TRIMODAL_CKPT" --device "$TRIMODAL_DEVICE" \
        --host 0.0.0.0 --port "${TRIMODAL_PORT:-8000}"
    ;;
index)
    exec trimodal index build --manifest "$TRIMODAL_MANIFEST" --ckpt "$TRIMODAL_CKPT" \
        --out "$TRIMODAL_INDEX" --device "$TRIMODAL_DEVICE" --resume
    ;;
*)
    exec "$@"
    ;;
esac
