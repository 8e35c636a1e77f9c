#!/usr/bin/env bash
# `make demo`'s comparison with the work it did on the day issue 12 was filed, timed for an older
# checkout and for this one, one after the other on the same machine, each with a fresh graph cache:
#
# - the older checkout runs `pixgraph compare` with make demo's arguments (its own defaults: on
#   0b1551c four arms, one model per seed, 32 faithfulness images);
# - this checkout runs the same comparison with that work: arms A-D, one regularisation candidate per
#   seed (no dropout, no weight decay), one weight decay for the probe, 32 faithfulness images (the
#   default). Arm E and the validation candidates that later issues added are left out, so the two wall
#   times compare the code, not the amount of work.
#
# Usage:   benchmarks/demo_then_and_now.sh OLD_CHECKOUT [new|old|both (default)] [OUT_DIR]
#          e.g. git worktree add /tmp/old 0b1551c && benchmarks/demo_then_and_now.sh /tmp/old
# Output:  the wall time of each run (GNU time's "Elapsed" line when /usr/bin/time exists) and each
#          run's accuracies and inference images/s; logs and run folders under OUT_DIR (default
#          a new temporary folder). Takes about 15 minutes on 2 cores.
# Environment: PYTHON (default: this repository's .venv/bin/python), used for both checkouts.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
old="${1:?give the older checkout, e.g. a git worktree of 0b1551c}"
which="${2:-both}"
out="${3:-$(mktemp -d)}"
PYTHON="${PYTHON:-$here/.venv/bin/python}"
[ -d "$old/bridge" ] || { echo "demo_then_and_now.sh: $old has no bridge/ package; give a pixgraph checkout" >&2; exit 2; }
case "$which" in new|old|both) ;; *) echo "demo_then_and_now.sh: second argument: new, old or both, got $which" >&2; exit 2;; esac
mkdir -p "$out"
out="$(cd "$out" && pwd)"  # absolute: the runs start in other folders
ARGS=(--data elpv --max-per-class 250 --image-size 160 --seeds 0,1,2 --no-progress)
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -v)

summary() {  # accuracy and inference images/s per arm from a run folder's results.json
    "$PYTHON" -c "
import json, sys
r = json.load(open(sys.argv[1] + '/results.json'))
for arm, v in r['arms'].items():
    s = v.get('summary')
    if not s:  # every seed of the arm failed: no summary
        print(f\"  {arm}: {v.get('status', '?')}, no summary ({v.get('errors')})\")
        continue
    print(f\"  {arm}: accuracy {s['accuracy_mean']:.3f} +- {s['accuracy_std']:.3f}, train {s['train_time_s_mean']:.1f} s per seed, {s['images_per_s']:.1f} img/s\")
" "$1"
}

run_old() {
    rm -rf "$out/cache_old" "$out/run_old"
    local t0=$SECONDS
    (cd "$old" && PIXGRAPH_CACHE="$out/cache_old" MPLBACKEND=Agg "${timer[@]}" "$PYTHON" -c "
import sys
sys.path.insert(0, '.')  # the older checkout's packages, not this one's
from bridge.cli import main
sys.argv = ['pixgraph', 'compare'] + sys.argv[1:]
sys.exit(main())" "${ARGS[@]}" --out "$out/run_old" > "$out/old.log" 2>&1) || {
        echo "old run failed (exit status $?); see $out/old.log"
        return 0
    }
    echo "old ($old, $(git -C "$old" rev-parse --short HEAD 2>/dev/null || echo '?')): $((SECONDS - t0)) s; $(grep -h 'Elapsed' "$out/old.log" | sed 's/^\s*//' || true)"
    summary "$out/run_old"
}

run_new() {
    rm -rf "$out/cache_new" "$out/run_new"
    local t0=$SECONDS
    (cd "$here" && PIXGRAPH_CACHE="$out/cache_new" MPLBACKEND=Agg "${timer[@]}" "$PYTHON" -c "
import sys
sys.path.insert(0, '.')
from engine.memory import keep_freed_memory
keep_freed_memory()  # as the pixgraph command does
from bridge.compare import compare
from bridge.compare.config import CompareConfig
cfg = CompareConfig(data='elpv', max_per_class=250, image_size=160, seeds=(0, 1, 2),
                    arms=('linear_probe', 'finetune', 'gnn_cnn', 'gnn_color'),
                    gnn_regularisation=((0.0, 0.0),), probe_weight_decays=(0.0,))
compare(cfg, out=sys.argv[1], progress=False)" "$out/run_new" > "$out/new.log" 2>&1) || {
        echo "new run failed (exit status $?); see $out/new.log"
        return 0
    }
    echo "new ($here, $(git -C "$here" rev-parse --short HEAD)): $((SECONDS - t0)) s; $(grep -h 'Elapsed' "$out/new.log" | sed 's/^\s*//' || true)"
    summary "$out/run_new"
}

echo "demo_then_and_now.sh: logs and runs in $out"
case "$which" in
    old) run_old ;;
    new) run_new ;;
    both) run_old; run_new ;;
esac
