# Process-start settings for libtorch on the JVM, measured by scripts/bench (see DJL-NOTES):
# glibc's default malloc re-faults big tensors from the OS every step (~2x slower); one arena,
# no mmap and no trimming keep them in the heap.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-1}"
export MALLOC_MMAP_MAX_="${MALLOC_MMAP_MAX_:-0}"
export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-100000000000}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JAR="$ROOT/trainer/target/trainer.jar"
ensure_jar() {
  if [ ! -f "$JAR" ] || [ -n "$(find "$ROOT/trainer/src" "$ROOT/rewards/src" "$ROOT/pom.xml" -newer "$JAR" -print -quit 2>/dev/null)" ]; then
    (cd "$ROOT" && mvn -B -q -ntp -DskipTests package) >&2
  fi
}
