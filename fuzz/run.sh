#!/usr/bin/env bash
# Runs every cargo-fuzz target for a given time, one after another, on one core.
#
#   fuzz/run.sh SECONDS_PER_TARGET [TARGET...]     (default: all six targets)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target
# starts from the committed seeds fuzz/corpus/<target>/ and grows a working corpus in
# fuzz/work/<target>/ (not committed). Crashes are written to fuzz/artifacts/<target>/;
# minimise one with `cargo +nightly fuzz tmin <target> <file>` and keep it as a regression
# input in fuzz/corpus/<target>/ once the defect is fixed. Executions and findings per target are summarised at the end.
#
# Environment: FUZZ_MAX_LEN (default 4096 bytes), FUZZ_RSS_MB (default 2048),
# FUZZ_FORK=1 to keep going after a crash (libFuzzer -fork=1 -ignore_crashes=1).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:?usage: fuzz/run.sh SECONDS_PER_TARGET [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(bed fragments gzip toml atok state)
max_len=${FUZZ_MAX_LEN:-4096}
rss_mb=${FUZZ_RSS_MB:-2048}

# Temporary files of the targets on a tmpfs when there is one; the core on one thread.
[ -d /dev/shm ] && export TMPDIR=/dev/shm
export ATACFORMER_NUM_THREADS=1
# Keep freed memory in the heap: the readers' large buffers otherwise cost fresh pages
# (page faults) on every input, six times fewer executions per second.
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824

# No sanitizer: the code under test is Rust (safe, with overflow checks on), and ASan's
# allocator makes these allocation-heavy targets ten times slower. FUZZ_SANITIZER=address
# builds with it (in a separate target folder) for the C code (libdeflate) too.
sanitizer=${FUZZ_SANITIZER:-none}
build=(--debug-assertions --sanitizer "$sanitizer" --target-dir "target-$sanitizer")
cargo +nightly fuzz build "${build[@]}"

summary=()
for t in "${targets[@]}"; do
    mkdir -p "work/$t" "artifacts/$t"
    log="artifacts/$t/fuzz.log"
    extra=()
    if [ "${FUZZ_FORK:-0}" = 1 ]; then
        extra=(-fork=1 -ignore_crashes=1)
    fi
    echo "==== $t: ${seconds}s"
    status=0
    cargo +nightly fuzz run "${build[@]}" "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -max_len="$max_len" \
        -timeout=10 -print_final_stats=1 -artifact_prefix="artifacts/$t/" "${extra[@]}" \
        >"$log" 2>&1 || status=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    if [ -z "$execs" ]; then  # fork mode prints per-job totals instead
        execs=$(grep -o '#[0-9]*' "$log" | tr -d '#' | sort -n | tail -1 || true)
    fi
    crashes=$(find "artifacts/$t" -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' | wc -l)
    summary+=("$t: ${execs:-?} executions, exit $status, $crashes crash/oom/timeout file(s)")
done

echo
echo "==== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
