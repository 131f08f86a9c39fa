#!/usr/bin/env bash
# Build logitkit with AddressSanitizer + UndefinedBehaviorSanitizer and run the whole test
# suite under them, once per SIMD target this CPU supports.
#
# Usage (from anywhere; the script works from the repository root):
#
#   bash tools/sanitize.sh                       # GCC (c++ / g++)
#   CXX=clang++ bash tools/sanitize.sh           # Clang (needs its compiler-rt runtimes,
#                                                #   e.g. Debian/Ubuntu libclang-rt-NN-dev)
#   bash tools/sanitize.sh -x -k softmax         # extra arguments go to pytest
#
# Environment:
#   CXX                 compiler (default: c++); GCC and Clang are supported.
#   SANITIZE_DIR        work directory (default: build/sanitize, ignored by git). It holds the
#                       virtualenv (venv/), the CMake build directory (build/) and the
#                       sanitizer logs (logs/). It is wiped at the start of each run, so the
#                       build is always fresh; a normal build (build/<wheel tag>) is untouched.
#   SANITIZE_REUSE=1    keep the existing venv and build from a previous run (for iterating).
#   SANITIZE_TARGETS    space-separated SIMD targets to test (default: every supported one).
#   PYTHON              interpreter to create the virtualenv from (default: python3).
#
# What it does:
#   1. A fresh virtualenv; `pip install ".[test]"` with the sanitizer flags handed to CMake
#      through scikit-build-core (-C cmake.define.CMAKE_CXX_FLAGS / *_LINKER_FLAGS,
#      -C build-dir, RelWithDebInfo so that pybind11 neither strips the module nor needs LTO).
#      CMakeLists.txt is not modified. The kernel translation units keep their own
#      -O3 -fno-trapping-math -ffp-contract=fast; the sanitizer flags are added to every
#      translation unit and the script checks that each kernel object is instrumented.
#   2. For each supported target: LOGITKIT_SIMD=<target> python -m pytest, with the ASan
#      runtime preloaded into the (uninstrumented) interpreter. Subprocesses started by the
#      tests inherit LD_PRELOAD and the options, so they run sanitized too.
#   3. Sanitizer reports go to files in $SANITIZE_DIR/logs (pytest captures file descriptor
#      2, so a report written there would be lost when the sanitizer kills the process);
#      they are printed at the end. abort_on_error=1 makes a report end in SIGABRT, so the
#      faulthandler of pytest prints the Python stack of the test that triggered it.
#
# Exit status: non-zero if any test run fails or any sanitizer report was written.
#
# Known limits: the interpreter and NumPy are not instrumented (only their malloc'd memory
# is checked; PYTHONMALLOC=malloc routes Python objects through malloc too), and NumPy keeps
# a small cache of freed data buffers, which can hide a use-after-free of a small array.
set -euo pipefail

# Everything is in main, which bash parses whole before running it: editing this file (or
# checking out another version) while it runs cannot change what the running copy does.
main() {
  ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  cd "$ROOT"

  CXX="${CXX:-c++}"
  PYTHON="${PYTHON:-python3}"
  SANITIZE_DIR="${SANITIZE_DIR:-$ROOT/build/sanitize}"
  mkdir -p "$SANITIZE_DIR"
  SANITIZE_DIR="$(cd "$SANITIZE_DIR" && pwd)"
  VENV="$SANITIZE_DIR/venv"
  BUILD_DIR="$SANITIZE_DIR/build"
  LOG_DIR="$SANITIZE_DIR/logs"

  log() { printf '\n=== %s\n' "$*" >&2; }
  die() { printf 'sanitize.sh: %s\n' "$*" >&2; exit 2; }

  # --- Compiler and runtime ---------------------------------------------------------------
  command -v "$CXX" >/dev/null || die "compiler not found: $CXX"
  if "$CXX" --version 2>/dev/null | grep -qi clang; then
    COMPILER=clang
  else
    COMPILER=gcc
  fi

  # -fsanitize=float-cast-overflow: GCC leaves it out of "undefined" (Clang includes it); an
  # out-of-range float -> int conversion is undefined behaviour either way.
  SAN_FLAGS="-fsanitize=address,undefined,float-cast-overflow"
  SAN_FLAGS+=" -fno-sanitize-recover=undefined,float-cast-overflow -fno-omit-frame-pointer"
  if [[ $COMPILER == clang ]]; then
    # The module is loaded into an uninstrumented python: link it against the shared ASan
    # runtime (which also carries UBSan's), the one preloaded below.
    SAN_LDFLAGS="-fsanitize=address,undefined,float-cast-overflow -shared-libasan"
    # Older Clang: lib/linux/libclang_rt.asan-<arch>.so; newer (per-target runtime
    # directories): lib/<triple>/libclang_rt.asan.so.
    ASAN_RT="$("$CXX" -print-file-name="libclang_rt.asan-$(uname -m).so")"
    if [[ $ASAN_RT != /* ]]; then
      ASAN_RT="$("$CXX" -print-runtime-dir 2>/dev/null)/libclang_rt.asan.so"
    fi
    PRELOAD="$ASAN_RT"
    # Clang's reports are symbolized by llvm-symbolizer; use the one matching the compiler.
    if [[ -z ${ASAN_SYMBOLIZER_PATH:-} ]]; then
      clang_bin="$(dirname "$(readlink -f "$(command -v "$CXX")")")"
      if [[ -x $clang_bin/llvm-symbolizer ]]; then
        export ASAN_SYMBOLIZER_PATH="$clang_bin/llvm-symbolizer"
      fi
    fi
  else
    SAN_LDFLAGS="-fsanitize=address,undefined,float-cast-overflow"
    ASAN_RT="$("$CXX" -print-file-name=libasan.so)"
    UBSAN_RT="$("$CXX" -print-file-name=libubsan.so)"
    PRELOAD="$ASAN_RT:$UBSAN_RT"
    [[ $UBSAN_RT == /* && -e $UBSAN_RT ]] || die "no libubsan.so for $CXX (got: $UBSAN_RT)"
  fi
  [[ $ASAN_RT == /* && -e $ASAN_RT ]] || die "no shared ASan runtime for $CXX (got: $ASAN_RT)"
  log "compiler: $CXX ($COMPILER); preload: $PRELOAD"

  # --- Build ------------------------------------------------------------------------------
  if [[ ${SANITIZE_REUSE:-0} == 1 && -x $VENV/bin/python ]]; then
    log "reusing $VENV (SANITIZE_REUSE=1)"
  else
    rm -rf "$VENV" "$BUILD_DIR"
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    log "building with: $SAN_FLAGS"
    # CMAKE_CXX_COMPILER through the environment: scikit-build-core passes CXX to CMake.
    CXX="$CXX" "$VENV/bin/python" -m pip install --verbose ".[test]" \
      -Cbuild-dir="$BUILD_DIR" \
      -Ccmake.build-type=RelWithDebInfo \
      "-Ccmake.define.CMAKE_CXX_FLAGS=$SAN_FLAGS" \
      "-Ccmake.define.CMAKE_MODULE_LINKER_FLAGS=$SAN_LDFLAGS" \
      "-Ccmake.define.CMAKE_SHARED_LINKER_FLAGS=$SAN_LDFLAGS" \
      >"$SANITIZE_DIR/pip-install.log" 2>&1 || {
        tail -n 60 "$SANITIZE_DIR/pip-install.log" >&2
        die "build failed (full log: $SANITIZE_DIR/pip-install.log)"
      }
  fi

  # Every kernel object (one per SIMD target) and the rest of the module must be instrumented:
  # a per-target flag that switched the sanitizers off would silently check nothing.
  objects=()
  while IFS= read -r -d '' obj; do objects+=("$obj"); done \
    < <(find "$BUILD_DIR" -name '*.o' -path '*CMakeFiles*' -print0)
  ((${#objects[@]} > 0)) || die "no object files under $BUILD_DIR"
  for obj in "${objects[@]}"; do
    undefined="$(nm -u "$obj")"
    grep -q '__asan_' <<<"$undefined" || die "not instrumented by ASan: $obj"
    grep -q '__ubsan_handle_' <<<"$undefined" || die "not instrumented by UBSan: $obj"
  done
  log "all ${#objects[@]} object files are instrumented (ASan and UBSan)"

  # --- Run --------------------------------------------------------------------------------
  rm -rf "$LOG_DIR"
  mkdir -p "$LOG_DIR"
  # detect_leaks=0: CPython does not free everything at exit. abort_on_error=1: a report ends
  # in SIGABRT (faulthandler then shows the Python stack). log_path: one file per process.
  # Options already in the environment come last, so they win.
  # detect_stack_use_after_return moves locals to ASan's "fake stack", whose frames GCC 12
  # does not align for 64-byte locals: the AVX-512 kernels keep 64-byte-aligned arrays there
  # (half.inl's lk_write_row) and the aligned load of one faults (#GP, reported as a SEGV
  # at `vmovaps -0x9c0(%r11),%zmm6`, the fake frame in r11). So with GCC the check is off;
  # a Clang run keeps it.
  local use_after_return=1
  [[ $COMPILER == gcc ]] && use_after_return=0
  local asan="detect_leaks=0:abort_on_error=1:halt_on_error=1"
  asan+=":detect_stack_use_after_return=$use_after_return"
  asan+=":check_initialization_order=1:strict_init_order=1:log_path=$LOG_DIR/asan"
  export ASAN_OPTIONS="$asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  local ubsan="print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$LOG_DIR/ubsan"
  export UBSAN_OPTIONS="$ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
  export PYTHONMALLOC=malloc
  export PYTHONFAULTHANDLER=1
  unset PYTHONPATH

  run_sanitized() { LD_PRELOAD="$PRELOAD${LD_PRELOAD:+:$LD_PRELOAD}" "$VENV/bin/python" "$@"; }

  supported="$(run_sanitized -c 'import logitkit; print(*logitkit.capabilities()["supported"])')" ||
    die "cannot import the sanitized module (see $LOG_DIR)"
  targets="${SANITIZE_TARGETS:-$supported}"
  log "supported SIMD targets: $supported; testing: $targets"

  status=0
  summary=()
  for target in $targets; do
    log "LOGITKIT_SIMD=$target python -m pytest $*"
    start=$SECONDS
    rc=0
    LOGITKIT_SIMD="$target" run_sanitized -m pytest -p no:cacheprovider "$@" || rc=$?
    elapsed=$((SECONDS - start))
    summary+=("$target: pytest exit $rc, ${elapsed}s")
    ((rc == 0)) || status=1
  done

  # Sanitizer reports, from any process (the tests' subprocesses included).
  reports=()
  while IFS= read -r -d '' f; do reports+=("$f"); done \
    < <(find "$LOG_DIR" -type f -size +0 -print0 | sort -z)
  if ((${#reports[@]} > 0)); then
    status=1
    for f in "${reports[@]}"; do
      log "sanitizer report: $f"
      cat "$f" >&2
    done
  fi

  log "summary ($COMPILER)"
  for line in "${summary[@]}"; do echo "  $line" >&2; done
  echo "  sanitizer reports: ${#reports[@]}" >&2
  exit "$status"
}

main "$@"
