#!/usr/bin/env bash
# Train the shipped TD-MPC agents one after another (each run resumes from its folder's resume
# state if it has one) and commit each finished agent folder. From the repository root:
#   nohup checkpoints/tdmpc/queue.sh >> checkpoints/tdmpc/queue.log 2>&1 &
# RUNS lists task:seed[:precision] (a precision given there suffixes the folder name, for side-by-side
# comparisons); PRECISION sets the precision of every run without changing folder names; WAIT_PID makes
# the queue wait for that process first.
set -u
export MUJOCO_GL=egl
THREADS=${THREADS:-1}
STEPS=${STEPS:-100000}
PRECISION=${PRECISION:-}
RUNS=${RUNS:-"cartpole-swingup:1 cartpole-swingup:2 cartpole-swingup:3 reacher-easy:1 cup-catch:1 cheetah-run:1 walker-walk:1"}
child=""
trap 'test -n "$child" && kill "$child"; exit 143' TERM INT
commit_dir() {
  for attempt in 1 2 3 4 5; do
    git add "$1" && git commit -q -m "$2" -- "$1" && return 0
    sleep 5
  done
  echo "commit of $1 failed" >&2
}
if [ -n "${WAIT_PID:-}" ]; then
  while kill -0 "$WAIT_PID" 2>/dev/null; do sleep 10; done
fi
for run in $RUNS; do
  IFS=: read -r task seed precision <<< "$run"
  dir=checkpoints/tdmpc/${task}-seed${seed}${precision:+-$precision}
  precision=${precision:-$PRECISION}
  echo "$(date -u +%FT%TZ) start ${task} seed ${seed} ${precision:-}"
  .venv/bin/python -m agents.tdmpc.train --task "$task" --seed "$seed" --steps "$STEPS" --preset cpu \
      ${precision:+--precision "$precision"} --out "$dir" --threads "$THREADS" --no-progress &
  child=$!
  if wait "$child"; then
    commit_dir "$dir" "TD-MPC agent ${task} seed ${seed}${precision:+ ($precision)}: ${STEPS} env steps, cpu preset"
  fi
  echo "$(date -u +%FT%TZ) end ${task} seed ${seed} ${precision:-}"
done
