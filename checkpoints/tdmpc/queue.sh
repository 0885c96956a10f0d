#!/usr/bin/env bash
# Train the shipped TD-MPC agents one after another (resuming any unfinished run), committing each
# finished agent folder. Run from the repository root: nohup checkpoints/tdmpc/queue.sh > checkpoints/tdmpc/queue.log 2>&1 &
set -u
export MUJOCO_GL=egl
THREADS=${THREADS:-1}
echo $$ > checkpoints/tdmpc/queue.pid
child=""
trap 'test -n "$child" && kill "$child"; exit 143' TERM INT
RUNS=${RUNS:-"cartpole-swingup:1 cartpole-swingup:2 cartpole-swingup:3 reacher-easy:1 cup-catch:1 cheetah-run:1 walker-walk:1"}
commit_dir() {
  for attempt in 1 2 3 4 5; do
    git add "$1" && git commit -q -m "$2" -- "$1" && return 0
    sleep 5
  done
  echo "commit of $1 failed" >&2
}
for run in $RUNS; do
  task=${run%%:*}; seed=${run##*:}; dir=checkpoints/tdmpc/${task}-seed${seed}
  echo "$(date -u +%FT%TZ) start ${task} seed ${seed}"
  .venv/bin/python -m agents.tdmpc.train --task "$task" --seed "$seed" --steps 100000 --preset cpu \
      --threads "$THREADS" --no-progress &
  child=$!
  if wait "$child"; then
    commit_dir "$dir" "Trained TD-MPC agent: ${task} seed ${seed}, 100k env steps (cpu preset)"
  fi
  echo "$(date -u +%FT%TZ) end ${task} seed ${seed}"
done
