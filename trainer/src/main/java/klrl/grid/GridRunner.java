package klrl.grid;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import klrl.checkpoint.Checkpoints;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * Runs a grid: every run a normal training run in its own JVM (OUT/runs/NAME, its output in train.log),
 * {@code jobs} at a time with the cores shared between them. Resumable: a run with grid-status.json
 * is done and skipped, one with a checkpoint continues from it, one without starts afresh. A run that
 * stops with a one-line error (exit 2: e.g. too many non-finite updates) is done — its stop is a
 * result; one that dies otherwise is left to be retried.
 */
public final class GridRunner {
    private GridRunner() {}

    public static final String STATUS = "grid-status.json";

    /** Runs what is not done yet; returns how many runs failed (neither finished nor stopped). */
    public static int run(GridSpec spec, String specText, Path out, int jobs, Consumer<String> console) throws IOException {
        Files.createDirectories(out.resolve("runs"));
        // The spec is fixed once a grid has started: a different one in the same folder is refused.
        Path saved = out.resolve("grid-spec.yaml");
        if (Files.isRegularFile(saved) && !Files.readString(saved).equals(specText)) {
            throw new UserError(saved + ": this grid folder was started with another spec; use a new --out (or the same spec)");
        }
        if (!Files.isRegularFile(saved)) {
            Json.writeAtomically(saved, specText);
        }
        List<GridSpec.Run> runs = spec.runs();
        int cores = Runtime.getRuntime().availableProcessors();
        int threads = Math.max(1, cores / jobs);
        Set<Process> live = ConcurrentHashMap.newKeySet();
        // SIGTERM: each child checkpoints and exits (the trainer's own handling); a rerun resumes them.
        Thread hook = new Thread(() -> live.forEach(klrl.util.Processes::terminateAndWait));
        Runtime.getRuntime().addShutdownHook(hook);
        AtomicInteger done = new AtomicInteger(), failed = new AtomicInteger();
        ExecutorService pool = Executors.newFixedThreadPool(jobs);
        try {
            List<Future<?>> fs = new ArrayList<>();
            for (GridSpec.Run r : runs) {
                fs.add(pool.submit(() -> {
                    String line = one(spec, r, out.resolve("runs").resolve(r.name()), threads, live);
                    if (line.startsWith("failed")) {
                        failed.incrementAndGet();
                    }
                    console.accept(String.format("[%d/%d] %s: %s", done.incrementAndGet(), runs.size(), r.name(), line));
                    return null;
                }));
            }
            for (Future<?> f : fs) {
                try {
                    f.get();
                } catch (java.util.concurrent.ExecutionException e) {
                    throw new IOException(e.getCause());
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            pool.shutdownNow();
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException shuttingDown) {
                // the hook is running: the children are being stopped
            }
        }
        return failed.get();
    }

    /** One run to completion (or its stop); returns the console line's text. */
    private static String one(GridSpec spec, GridSpec.Run r, Path dir, int threads, Set<Process> live) throws IOException, InterruptedException {
        if (Files.isRegularFile(dir.resolve(STATUS))) {
            return "done earlier (" + Json.read(dir.resolve(STATUS)).path("status").asText() + ")";
        }
        boolean resume = hasCheckpoint(dir);
        if (!resume) {
            Checkpoints.deleteTree(dir); // a start without any checkpoint: nothing worth keeping
        }
        Files.createDirectories(dir);
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (!a.startsWith("-agentlib:jdwp") && !a.startsWith("-Dai.djl.pytorch.num_")) {
                cmd.add(a);
            }
        }
        cmd.add("-Dai.djl.pytorch.num_threads=" + threads);
        cmd.add("-Dai.djl.pytorch.num_interop_threads=1");
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), "klrl.cli.Main", "train", "--config", spec.base()));
        for (String a : r.assignments()) {
            cmd.add("--set");
            cmd.add(a);
        }
        cmd.add("--set");
        cmd.add("output_dir=" + dir);
        if (resume) {
            cmd.add("--resume");
            cmd.add(dir.toString());
        }
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("train.log").toFile()));
        pb.environment().put("KLRL_PROGRESS", "0");
        klrl.util.Processes.endWithThisProcess(pb); // a grid killed with SIGKILL takes its running trainer along
        pb.environment().put("OMP_NUM_THREADS", Integer.toString(threads));
        pb.environment().put("MKL_NUM_THREADS", Integer.toString(threads));
        long t0 = System.nanoTime();
        Process p = pb.start();
        live.add(p);
        int code;
        try {
            code = p.waitFor();
        } finally {
            live.remove(p);
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        String last = lastLine(dir.resolve("train.log"));
        if (code != 0 && code != 2) {
            return "failed (exit " + code + ": " + last + "); a rerun retries it";
        }
        ObjectNode s = Json.MAPPER.createObjectNode();
        s.put("status", code == 0 ? "finished" : "stopped");
        s.put("exit", code);
        s.put("seconds", Math.round(seconds * 10) / 10.0);
        s.put("threads", threads);
        if (code != 0) {
            s.put("message", last);
        }
        Json.writeAtomically(dir.resolve(STATUS), Json.write(s));
        return (code == 0 ? "finished" : "stopped: " + last) + String.format(" (%.0f s)", seconds);
    }

    private static boolean hasCheckpoint(Path dir) throws IOException {
        if (!Files.isDirectory(dir.resolve("checkpoints"))) {
            return false;
        }
        try (var s = Files.list(dir.resolve("checkpoints"))) {
            return s.anyMatch(x -> x.getFileName().toString().matches("step-\\d+"));
        }
    }

    private static String lastLine(Path log) throws IOException {
        List<String> lines = Files.readAllLines(log);
        for (int i = lines.size() - 1; i >= 0; i--) {
            if (!lines.get(i).isBlank()) {
                return lines.get(i).strip();
            }
        }
        return "";
    }
}
