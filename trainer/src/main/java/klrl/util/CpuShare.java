package klrl.util;

import ai.djl.pytorch.jni.JniUtils;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.function.IntSupplier;
import java.util.stream.Stream;

/**
 * Trainers on one CPU machine share its cores. Each sizes libtorch's threads as if alone, and
 * libtorch's workers spin while they wait, so several started together oversubscribe the cores and
 * each runs many times slower than its share. A trainer on CPU marks itself in a folder of running
 * trainers (a file named by its process id) and, before each step, gives its computing thread
 * the cores ÷ the trainers alive there; alone it keeps every thread, so a lone run is unchanged.
 * Threads set by the user (OMP_NUM_THREADS, -Dai.djl.pytorch.num_threads) or KLRL_SHARE_CORES=0 turn
 * it off.
 */
public final class CpuShare implements AutoCloseable {
    private final Path dir, own;
    private final int base;
    private int current;

    private CpuShare(Path dir, int base) {
        this.dir = dir;
        this.own = dir.resolve(Long.toString(ProcessHandle.current().pid()));
        this.base = base;
        this.current = base;
    }

    /** The share for the calling (computing) thread, or null when it does not apply. */
    public static CpuShare start(Path dir, boolean cpu) {
        if (!cpu || System.getProperty("ai.djl.pytorch.num_threads") != null) {
            return null;
        }
        return start(dir, System.getenv(), JniUtils::getNumThreads);
    }

    /**
     * The share for the calling thread, whose libtorch thread count when alone is {@code threads}
     * (read only when the share applies), or null when {@code env} sets the threads by hand or turns
     * the sharing off.
     */
    static CpuShare start(Path dir, Map<String, String> env, IntSupplier threads) {
        if (env.get("OMP_NUM_THREADS") != null || "0".equals(env.get("KLRL_SHARE_CORES"))) {
            return null;
        }
        CpuShare s = new CpuShare(dir, threads.getAsInt());
        s.adjust();
        return s;
    }

    /** How many trainers run on this machine now, this one included (dead processes' marks removed). */
    int running() {
        try {
            Files.createDirectories(dir);
            if (!Files.exists(own)) {
                Files.writeString(own, "");
            }
            int n = 0;
            try (Stream<Path> s = Files.list(dir)) {
                for (Path p : s.toList()) {
                    String name = p.getFileName().toString();
                    if (!name.matches("\\d{1,19}")) {
                        continue;
                    }
                    if (p.equals(own) || ProcessHandle.of(Long.parseLong(name)).map(ProcessHandle::isAlive).orElse(false)) {
                        n++;
                    } else {
                        Files.deleteIfExists(p);
                    }
                }
            }
            return Math.max(1, n);
        } catch (IOException | RuntimeException e) {
            return 1; // an unwritable cache: behave as alone
        }
    }

    /** Sets the calling thread's libtorch threads to its share; returns the count. */
    public int adjust() {
        int want = Math.max(1, base / running());
        if (want != current) {
            JniUtils.setNumThreads(want);
            current = want;
        }
        return current;
    }

    @Override
    public void close() {
        try {
            Files.deleteIfExists(own);
        } catch (IOException e) {
            // the next trainer's count removes a dead process's mark
        }
        if (current != base) {
            JniUtils.setNumThreads(base);
        }
    }
}
