package klrl.cli;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Gives a plain {@code java -jar trainer.jar} the launch settings that scripts/env.sh applies (they
 * are worth up to 2× on CPU, see the README): when the process lacks them, it starts the same command
 * once more in a child JVM that has them and passes its exit code on. Only Linux and only the commands
 * that run the model; {@code KLRL_RELAUNCH=0} turns it off. The settings, as in scripts/env.sh:
 * glibc malloc with one arena, blocks under 32 MiB kept in the heap untrimmed and larger ones mapped; {@code KLRL_JAVA_OPTS} or else
 * {@code -Xmn32m -XX:+UseSerialGC}; and on AMD CPUs with AVX-512 the one-line mkl-on-amd.c, compiled
 * with {@code cc} into ~/.cache/klrl/native and preloaded ({@code KLRL_MKL_ON_AMD=0} skips it).
 */
final class Launcher {
    private Launcher() {}

    static final String MARK = "KLRL_LAUNCHED";
    static final Map<String, String> MALLOC = Map.of("MALLOC_ARENA_MAX", "1", "MALLOC_MMAP_THRESHOLD_", "33554432",
            "MALLOC_TRIM_THRESHOLD_", "100000000000");
    static final List<String> JVM_DEFAULTS = List.of("-Xmn32m", "-XX:+UseSerialGC");
    /** Commands that run the model: the others start faster than a relaunch would save. */
    static final Set<String> HEAVY = Set.of("train", "eval", "sft", "generate", "logprobs", "bench", "gpu-check", "grid");

    /** A child command line and its environment additions; {@code applied} says what was missing. */
    record Plan(List<String> command, Map<String, String> env, List<String> applied) {}

    /**
     * What to relaunch with, or null to run here.
     *
     * @param jar     the jar this runs from, or null (classes on a class path: tests, IDEs)
     * @param mkl     gives the compiled mkl-on-amd library to preload, or null when it does not apply
     *                (asked only when a relaunch is possible at all)
     */
    static Plan plan(Map<String, String> env, List<String> jvmArgs, Path jar, String javaBin, String command,
                     String[] args, java.util.function.Supplier<Path> mkl) {
        if (jar == null || env.containsKey(MARK) || "0".equals(env.get("KLRL_RELAUNCH")) || !HEAVY.contains(command)) {
            return null;
        }
        List<String> applied = new ArrayList<>();
        Map<String, String> add = new LinkedHashMap<>();
        MALLOC.forEach((k, v) -> {
            if (!env.containsKey(k)) {
                add.put(k, v);
            }
        });
        if (!add.isEmpty()) {
            applied.add("malloc settings");
        }
        List<String> extra = new ArrayList<>();
        boolean tunedHeap = jvmArgs.stream().anyMatch(a -> a.startsWith("-Xmn") || a.matches("-XX:\\+Use\\w*GC"));
        if (!tunedHeap) {
            String opts = env.get("KLRL_JAVA_OPTS");
            extra.addAll(opts != null ? List.of(opts.trim().split("\\s+")) : JVM_DEFAULTS);
            extra.removeIf(String::isEmpty);
            if (!extra.isEmpty()) {
                applied.add(String.join(" ", extra));
            }
        }
        String preload = env.getOrDefault("LD_PRELOAD", "");
        Path mklLib = preload.contains("mkl-on-amd") ? null : mkl.get();
        if (mklLib != null) {
            add.put("LD_PRELOAD", mklLib + (preload.isEmpty() ? "" : ":" + preload));
            applied.add("MKL kernels by CPU features");
        }
        if (applied.isEmpty()) {
            return null;
        }
        add.put(MARK, "1");
        List<String> cmd = new ArrayList<>();
        cmd.add(javaBin);
        cmd.addAll(jvmArgs);
        cmd.addAll(extra);
        cmd.addAll(List.of("-cp", jar.toString(), Main.class.getName()));
        cmd.addAll(List.of(args));
        return new Plan(cmd, add, applied);
    }

    /** The subcommand that runs: the first argument when it names one, else the default, train. */
    static String command(String[] args, Set<String> subcommands) {
        return args.length > 0 && subcommands.contains(args[0]) ? args[0] : "train";
    }

    /** Relaunches when {@link #plan} says so and returns the child's exit code; null = run in this JVM. */
    static Integer relaunchIfNeeded(String[] args, Set<String> subcommands) {
        if (!System.getProperty("os.name", "").toLowerCase(java.util.Locale.ROOT).contains("linux")) {
            return null;
        }
        Map<String, String> env = System.getenv();
        Plan p = plan(env, java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments(), runningJar(),
                Path.of(System.getProperty("java.home"), "bin", "java").toString(), command(args, subcommands), args,
                () -> mklOnAmd(env));
        if (p == null) {
            return null;
        }
        ProcessBuilder pb = new ProcessBuilder(p.command()).inheritIO();
        pb.environment().putAll(p.env());
        klrl.util.Processes.endWithThisProcess(pb);
        try {
            Process child = pb.start();
            // SIGTERM to this JVM (a preempted node) reaches the child, which checkpoints and exits
            Thread forward = new Thread(() -> klrl.util.Processes.terminateAndWait(child));
            Runtime.getRuntime().addShutdownHook(forward);
            int code = child.waitFor();
            try {
                Runtime.getRuntime().removeShutdownHook(forward);
            } catch (IllegalStateException shuttingDown) {
                // already exiting: the hook waits for the child
            }
            return code;
        } catch (IOException e) {
            System.err.println("note: could not relaunch with the launch settings (" + e.getMessage() + "); running without them");
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return 130;
        }
    }

    private static Path runningJar() {
        try {
            Path p = Path.of(Main.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            return Files.isRegularFile(p) && p.toString().endsWith(".jar") ? p : null;
        } catch (Exception e) {
            return null;
        }
    }

    /** The mkl-on-amd library for this CPU (compiled once), or null when the CPU or the settings say no. */
    static Path mklOnAmd(Map<String, String> env) {
        if ("0".equals(env.get("KLRL_MKL_ON_AMD"))) {
            return null;
        }
        try {
            String cpu = Files.readString(Path.of("/proc/cpuinfo"));
            if (!cpu.contains("AuthenticAMD") || !cpu.matches("(?s).*\\bavx512f\\b.*")) {
                return null;
            }
            Path dir = klrl.run.TinyDefault.cacheDir().resolve("native");
            Path so = dir.resolve("libmkl-on-amd.so");
            if (Files.isRegularFile(so)) {
                return so;
            }
            Files.createDirectories(dir);
            Path src = dir.resolve("mkl-on-amd.c"), tmp = dir.resolve("libmkl-on-amd.so." + ProcessHandle.current().pid());
            try (InputStream in = Launcher.class.getResourceAsStream("/native/mkl-on-amd.c")) {
                Files.copy(in, src, StandardCopyOption.REPLACE_EXISTING);
            }
            Process cc = new ProcessBuilder("cc", "-shared", "-fPIC", "-O2", "-o", tmp.toString(), src.toString())
                    .redirectErrorStream(true).start();
            cc.getInputStream().transferTo(java.io.OutputStream.nullOutputStream());
            if (cc.waitFor() != 0) {
                Files.deleteIfExists(tmp);
                throw new IOException("cc failed");
            }
            Files.move(tmp, so, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            return so;
        } catch (IOException | InterruptedException | RuntimeException e) {
            System.err.println("note: could not build mkl-on-amd.c with cc: MKL keeps its AMD code path (about 2x slower fp32 matmuls)");
            return null;
        }
    }
}
