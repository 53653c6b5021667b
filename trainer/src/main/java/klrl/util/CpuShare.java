package klrl.util;

import ai.djl.pytorch.jni.JniUtils;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;
import java.util.Optional;
import java.util.function.IntSupplier;
import java.util.stream.Stream;

/**
 * Trainers on one CPU machine share its cores. Each sizes libtorch's threads as if alone, and
 * libtorch's workers spin while they wait, so several started together oversubscribe the cores and
 * each runs many times slower than its share. A trainer on CPU marks itself in a folder of running
 * trainers (a file named by its process id) and, before each step, counts the trainers alive there;
 * every computing thread of it (the step loop's, and the workers registered with {@link #thread}:
 * data-parallel replicas, pipeline stages, the rollout copy) then runs with its own thread count ÷
 * that number. Alone each keeps every thread, so a lone run is unchanged. Threads set by the user
 * (OMP_NUM_THREADS, -Dai.djl.pytorch.num_threads) or KLRL_SHARE_CORES=0 turn it off.
 *
 * <p>A mark names its process's start and its machine, and counts only while that very process runs:
 * a process id alone would count a program that got the id of a trainer gone without removing its
 * mark, and, in a cache shared by containers or hosts, a process of this machine that merely has the
 * id another machine's trainer has there. The start is read where it stays the same for every reader
 * (on Linux the start in clock ticks since boot from /proc, exact; the start instant Java derives from
 * it moves with the boot time each JVM reads, which the kernel gives in whole seconds and which moves
 * when the clock is set; elsewhere the start instant the kernel recorded). The machine is the boot's
 * id and the process-id namespace (Linux), so another machine's or container's mark is neither counted
 * (its process cannot be seen) nor removed (its own trainers remove it).
 */
public final class CpuShare implements AutoCloseable {
    /**
     * The trainers running here as this process's share last counted them (1: alone, or no share).
     * One process is one trainer (its mark is its process id), so it holds for all its threads.
     */
    private static volatile int trainers = 1;
    /** A computing thread's libtorch thread count when alone, and the count the share last gave it. */
    private static final ThreadLocal<int[]> OWN = new ThreadLocal<>();

    /** This machine, as processes' ids and starts are seen from it: the boot's id and the process-id namespace (Linux). */
    static final String MACHINE = machine();

    private final Path dir, own;
    /** This process's mark: its start and its machine. */
    private final String mark;

    private CpuShare(Path dir) {
        long pid = ProcessHandle.current().pid();
        this.dir = dir;
        this.own = dir.resolve(Long.toString(pid));
        this.mark = mark(pid);
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
        CpuShare s = new CpuShare(dir);
        thread(threads.getAsInt());
        s.adjust();
        return s;
    }

    /**
     * Registers the calling thread as a computing thread whose libtorch thread count when alone is
     * {@code threads} (it has that count now): {@link #follow} gives it its share.
     */
    public static void thread(int threads) {
        OWN.set(new int[] {threads, threads});
    }

    /**
     * Gives the calling computing thread its share of its threads, as the trainers running were last
     * counted, before its next piece of work; nothing for a thread not registered, or when alone and
     * the share unchanged (a lone run's threads are never touched). Returns its count (0 if not registered).
     */
    public static int follow() {
        int[] t = OWN.get();
        if (t == null) {
            return 0;
        }
        int want = Math.max(1, t[0] / trainers);
        if (want != t[1]) {
            JniUtils.setNumThreads(want);
            t[1] = want;
        }
        return t[1];
    }

    /**
     * The mark of process {@code pid} of this machine: its start and the machine, one {@code key=value}
     * a line (no start where the platform does not tell it: such a mark counts nowhere).
     */
    static String mark(long pid) {
        return started(pid).map(s -> "start=" + s + "\n").orElse("") + "machine=" + MACHINE + "\n";
    }

    /** The start of process {@code pid}, the same whoever reads it while it runs (see the class comment). */
    static Optional<String> started(long pid) {
        Path stat = Path.of("/proc", Long.toString(pid), "stat");
        if (Files.isDirectory(Path.of("/proc/self"))) {
            try {
                // "pid (name) state ppid …": the name may hold spaces and parentheses; starttime is field 22
                String s = Files.readString(stat);
                String[] f = s.substring(s.lastIndexOf(')') + 2).trim().split(" ");
                return Optional.of("ticks:" + f[19]);
            } catch (IOException | RuntimeException e) {
                return Optional.empty();
            }
        }
        return ProcessHandle.of(pid).flatMap(h -> h.info().startInstant()).map(i -> "ms:" + i.toEpochMilli());
    }

    private static String machine() {
        String boot, ns;
        try {
            boot = Files.readString(Path.of("/proc/sys/kernel/random/boot_id")).trim();
        } catch (IOException | RuntimeException e) {
            boot = "-";
        }
        try {
            ns = Files.readSymbolicLink(Path.of("/proc/self/ns/pid")).toString();
        } catch (IOException | RuntimeException e) {
            ns = "-";
        }
        return boot + " " + ns;
    }

    /** What a mark says of its process. */
    enum Seen { TRAINER, GONE, UNKNOWN }

    /**
     * A mark of process {@code pid} with this text: TRAINER while the process that wrote it runs;
     * GONE once it has ended (no process has the id, or another process that started at another time
     * has it); UNKNOWN when it cannot be told here (another machine's mark, a mark with no start such
     * as an older version's, a process whose start this user may not read).
     */
    static Seen seen(long pid, String text) {
        String start = null, machine = null;
        for (String line : text.split("\n")) {
            if (line.startsWith("start=")) {
                start = line.substring(6);
            } else if (line.startsWith("machine=")) {
                machine = line.substring(8);
            }
        }
        if (machine != null && !machine.equals(MACHINE)) {
            return Seen.UNKNOWN;
        }
        if (!ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
            return Seen.GONE;
        }
        Optional<String> now = started(pid);
        if (start == null || now.isEmpty()) {
            return Seen.UNKNOWN;
        }
        return start.equals(now.get()) ? Seen.TRAINER : Seen.GONE;
    }

    /** How many trainers run on this machine now, this one included (ended trainers' marks removed). */
    int running() {
        try {
            Files.createDirectories(dir);
            if (!mark.equals(read(own))) {
                // written whole under another name and moved in: a reader never sees half a mark
                Path tmp = dir.resolve("." + own.getFileName() + ".tmp");
                Files.writeString(tmp, mark);
                Files.move(tmp, own, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            }
            int n = 0;
            try (Stream<Path> s = Files.list(dir)) {
                for (Path p : s.toList()) {
                    String name = p.getFileName().toString();
                    if (!name.matches("\\d{1,18}")) {
                        continue;
                    }
                    if (p.equals(own)) {
                        n++;
                        continue;
                    }
                    String text;
                    try {
                        text = Files.readString(p);
                    } catch (IOException e) {
                        continue; // removed meanwhile, or not readable here: not counted
                    }
                    Seen seen = seen(Long.parseLong(name), text);
                    if (seen == Seen.TRAINER) {
                        n++;
                    } else if (seen == Seen.GONE) {
                        try {
                            Files.deleteIfExists(p);
                        } catch (IOException e) {
                            // left for the next count
                        }
                    }
                }
            }
            return Math.max(1, n);
        } catch (IOException | RuntimeException e) {
            return 1; // an unwritable cache: behave as alone
        }
    }

    /** The file's text, or null once it is gone. */
    private static String read(Path p) throws IOException {
        try {
            return Files.readString(p);
        } catch (NoSuchFileException e) {
            return null;
        }
    }

    /** Counts the trainers running and gives the calling (computing) thread its share; returns its thread count. */
    public int adjust() {
        trainers = running();
        return follow();
    }

    @Override
    public void close() {
        try {
            Files.deleteIfExists(own);
        } catch (IOException e) {
            // the next trainer's count removes an ended process's mark
        }
        trainers = 1;
        follow();
        OWN.remove();
    }
}
