#!/usr/bin/env bash
# Mutation testing with mutmut (installed into .venv at a pinned version): each soundness-critical or math module
# mutated one change at a time, each mutant run against that module's own tests only (fast), on one core.
#
#   bash scripts/mutation.sh                      every module below, in order
#   bash scripts/mutation.sh interval certify     only these (names from the table below)
#   TESTS_REF=b4144e5 bash scripts/mutation.sh interval    against the tests of an older commit (a "before" figure)
#   nice -n 10 bash scripts/mutation.sh ... > out/mutation.log 2>&1 &    the usual way: it takes a while
#
# Each module runs in its own folder out/mutation/<name>[-<ref>]/ (a copy of src/, tests/ and pyproject.toml plus a
# setup.cfg naming the module and its tests), so runs never touch the work tree. Afterwards, in that folder:
# `../../../.venv/bin/mutmut results` lists the surviving mutants, `... mutmut show <mutant>` shows one as a diff.
# One line per module (killed, survived, timeouts, ..., kill rate) is appended to out/mutation/summary.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
MUTMUT_VERSION=3.8.1
"$PY" -m pip show mutmut 2>/dev/null | grep -qx "Version: $MUTMUT_VERSION" ||
  "$PY" -m pip install -q "mutmut==$MUTMUT_VERSION"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# name -> "module under src/hooked_bilinear|pytest arguments selecting its tests, one per line"
# (sae: the three tests on the shipped model, ~35 s a run, are left out by name; the fast tests of train_saes on a
# tiny stand-in model reach the same code)
declare -A PLAN=(
  [interval]="toy/modadd/interval.py|tests/toy/modadd/test_interval.py"
  [certify]="toy/modadd/certify.py|tests/toy/modadd/test_certify.py
-k
not shipped and not snapshots and not damaged"
  [interaction]="analysis/interaction.py|tests/analysis/test_interaction.py"
  [eigen]="analysis/eigen.py|tests/analysis/test_eigen.py"
  [factors]="analysis/factors.py|tests/analysis/test_factors.py"
  [hosvd]="analysis/hosvd.py|tests/analysis/test_hosvd.py"
  [truncation]="analysis/truncation.py|tests/analysis/test_truncation.py"
  [features]="analysis/features.py|tests/analysis/test_features.py
-k
not shipped_model"
  [components]="components/*|tests/components
-k
not shapes_are_checked_at_run_time"
  [to_llama]="publishing/to_llama.py|tests/publishing/test_to_llama.py"
  [sae]="sae/*|tests/sae
-k
not test_streamed_training_equals_in_memory_training and not test_interrupted_training_resumes_to_the_same_weights and not test_streamed_training_bad_input"
)
ORDER=(interval certify interaction eigen factors hosvd truncation features components to_llama sae)
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=("${ORDER[@]}")
for name in "${NAMES[@]}"; do
  [ -n "${PLAN[$name]:-}" ] || { echo "unknown module '$name': pick from ${ORDER[*]}" >&2; exit 2; }
done

mkdir -p out/mutation
for name in "${NAMES[@]}"; do
  module=${PLAN[$name]%%|*}
  selection=${PLAN[$name]#*|}
  work=out/mutation/$name${TESTS_REF:+-$TESTS_REF}
  rm -rf "$work" && mkdir -p "$work"
  cp -r src pyproject.toml "$work"/
  "$PY" scripts/mutation_undecorate.py "$work"/src/hooked_bilinear/$module  # else mutmut skips decorated functions
  if [ -n "${TESTS_REF:-}" ]; then
    git archive "$TESTS_REF" tests | tar -x -C "$work"
  else
    cp -r tests "$work"/
  fi
  {
    echo "[mutmut]"
    echo "source_paths = src/hooked_bilinear"
    echo "only_mutate = src/hooked_bilinear/$module"
    echo "also_copy = tests"
    echo "pytest_add_cli_args_test_selection ="
    printf '    %s\n' "${selection//$'\n'/$'\n'    }"
    echo "pytest_add_cli_args ="
    echo "    -p"
    echo "    no:cacheprovider"
  } > "$work/setup.cfg"
  echo "== $name: src/hooked_bilinear/$module against: ${selection//$'\n'/ } (tests ${TESTS_REF:-of the work tree})"
  start=$(date +%s)
  (cd "$work" && "$ROOT/.venv/bin/mutmut" run --max-children 1 > run.log 2>&1) || echo "mutmut run failed: $work/run.log"
  (cd "$work" && "$ROOT/.venv/bin/mutmut" export-cicd-stats > /dev/null 2>&1) || true
  "$PY" - "$work" "$name" "$(( $(date +%s) - start ))" "${TESTS_REF:-HEAD}" <<'PYEOF' | tee -a out/mutation/summary.tsv
import json, sys
work, name, seconds, ref = sys.argv[1:]
try:
    s = json.load(open(f"{work}/mutants/mutmut-cicd-stats.json"))
except OSError:
    print(f"{name}\t{ref}\tno result (see {work}/run.log)")
    raise SystemExit
# a mutant no test reaches counts against the tests, as one that survives them does; a timeout counts as killed
decided = s["killed"] + s["survived"] + s["timeout"] + s["no_tests"] + s["suspicious"]
rate = (s["killed"] + s["timeout"]) / decided if decided else float("nan")
rest = ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("killed", "survived", "timeout", "total") and v)
print(f"{name}\t{ref}\tkilled {s['killed']}\tsurvived {s['survived']}\ttimeout {s['timeout']}\t"
      f"total {s['total']}\t{rest or '-'}\tkill rate {rate:.1%}\t{seconds} s")
PYEOF
done
