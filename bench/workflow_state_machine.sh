#!/usr/bin/env bash
# A long run of the workflow state machine (tests/integration/workflow/test_workflow_state_machine.py):
# generated sequences of every workflow step with the promises checked after each one.
#   bench/workflow_state_machine.sh               # 500 sequences of up to 100 steps
#   EXAMPLES=2000 STEPS=200 bench/workflow_state_machine.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export JITGATE_STATEFUL_EXAMPLES="${EXAMPLES:-500}" JITGATE_STATEFUL_STEPS="${STEPS:-100}"
exec .venv/bin/pytest -q -p no:cacheprovider --hypothesis-show-statistics \
  tests/integration/workflow/test_workflow_state_machine.py
