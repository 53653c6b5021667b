# Process-start settings for libtorch on the JVM, measured by scripts/bench (benchmarks.md):
# glibc's default malloc re-faults a step's tensors from the OS every step (~2x slower); one arena,
# no trimming and a fixed 32 MiB mmap threshold (glibc's largest) keep them in the heap. Blocks of
# 32 MiB and more (the output head's [chunk, vocabulary] tensors) are mapped and given back when
# freed: kept in one heap, blocks that size fragment it (benchmarks.md: Launch settings).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-1}"
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-33554432}"
export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-100000000000}"
# A small fixed young generation: G1 otherwise grows eden to hundreds of MB, and every decode step's
# small Java objects then land on fresh, uncached memory (measured: batch-1 decoding ~1.4x faster).
# The serial collector keeps that eden at one address range: G1 kept committing heap around a 12 MB
# live set and moved eden through it (RSS 664 -> 710 MB over 800 steps; serial 655 -> 657 MB).
KLRL_JAVA_OPTS="${KLRL_JAVA_OPTS--Xmn32m -XX:+UseSerialGC}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JAR="$ROOT/trainer/target/trainer.jar"
ensure_jar() {
  if [ ! -f "$JAR" ] || [ -n "$(find "$ROOT/trainer/src" "$ROOT/rewards/src" "$ROOT/pom.xml" -newer "$JAR" -print -quit 2>/dev/null)" ]; then
    (cd "$ROOT" && mvn -B -q -ntp -DskipTests package) >&2
  fi
}
# MKL's AVX-512 kernels on AMD CPUs that have AVX-512 (scripts/mkl-on-amd.c; measured 2x fp32 GEMM).
# Call after ensure_jar. KLRL_MKL_ON_AMD=0 keeps MKL's own choice.
mkl_on_amd() {
  [ "${KLRL_MKL_ON_AMD:-1}" = 1 ] || return 0
  grep -q -m1 AuthenticAMD /proc/cpuinfo 2>/dev/null && grep -q -m1 -w avx512f /proc/cpuinfo || return 0
  local so="$ROOT/trainer/target/native/libmkl-on-amd.so"
  if [ ! -f "$so" ] || [ "$ROOT/scripts/mkl-on-amd.c" -nt "$so" ]; then
    mkdir -p "$(dirname "$so")"
    if ! cc -shared -fPIC -O2 -o "$so.$$" "$ROOT/scripts/mkl-on-amd.c" 2>/dev/null; then
      rm -f "$so.$$"
      echo "note: could not build scripts/mkl-on-amd.c with cc: MKL keeps its AMD code path (about 2x slower fp32 matmuls here)" >&2
      return 0
    fi
    mv "$so.$$" "$so"  # atomic: concurrent launches never preload a half-written file
  fi
  export LD_PRELOAD="$so${LD_PRELOAD:+:$LD_PRELOAD}"
}
