package klrl.run;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Consumer;
import klrl.checkpoint.Checkpoints;
import klrl.config.TrainConfig;
import klrl.data.Dataset;
import klrl.data.Example;
import klrl.data.Prompts;
import klrl.model.Decoder;
import klrl.model.SafeTensors;
import klrl.model.TinyModel;
import klrl.model.Tokenizer;
import klrl.train.Sft;

/**
 * The built-in default model: init-tiny (qwen2 architecture, fixed seed) followed by a short,
 * deterministic supervised warm-up on the bundled arithmetic train set and a share of its
 * out-of-domain families, leaving a policy that has the answer format and partial skill — room for RL to show it learns. Built once into the cache
 * folder ($KLRL_CACHE, default ~/.cache/klrl) and reused.
 */
public final class TinyDefault {
    private TinyDefault() {}

    public static final String VERSION = "tiny-sft-v4"; // v4: the v3 recipe on two threads everywhere (WARM_UP_THREADS)
    public static final TinyModel.Spec SPEC = new TinyModel.Spec("qwen2", 128, 3, 4, 2, 384, 7, "F32", Long.MAX_VALUE, false, 0.02, 0);
    public static final int SFT_STEPS = 800, SFT_BATCH = 32;
    public static final double SFT_LR = 1e-3;
    /**
     * libtorch threads the warm-up computes on, whatever the machine's cores: kernels split their sums by
     * thread count, and the warm-up's 800 steps carry a rounding difference far (built on one thread it
     * ended at 16 % greedy accuracy on the held-out sums, on two at 35 %), so the built-in model is the
     * same on any core count for a given kind of CPU. Two: what the 2-core machines it was tuned on use.
     */
    static final int WARM_UP_THREADS = 2;

    public static Path cacheDir() {
        String env = System.getenv("KLRL_CACHE");
        return env != null && !env.isBlank() ? Path.of(env) : Path.of(System.getProperty("user.home"), ".cache", "klrl");
    }

    /** The built-in model's shape (its config.json), without building it: from the cache, or written to a temporary folder. */
    public static klrl.model.ModelConfig shape() {
        Path built = cacheDir().resolve(VERSION).resolve("config.json");
        try {
            if (Files.isRegularFile(built)) {
                return klrl.model.ModelConfig.load(built.getParent());
            }
            Path tmp = Files.createTempDirectory("klrl-tiny-shape");
            try {
                TinyModel.write(tmp, SPEC);
                return klrl.model.ModelConfig.load(tmp);
            } finally {
                Checkpoints.deleteTree(tmp);
            }
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    /** Thrown out of the warm-up's step loop when the process is asked to stop (SIGTERM). */
    private static final class Stopped extends RuntimeException {
        Stopped() {
            super(null, null, false, false);
        }
    }

    public static synchronized Path ensure(Consumer<String> log) throws IOException {
        Path dir = cacheDir().resolve(VERSION);
        if (Files.isRegularFile(dir.resolve("READY"))) {
            return dir;
        }
        // one process builds it; the others started beside it wait and take its result (three building it at once
        // on two cores took over 15 minutes, and each would build the same model)
        Files.createDirectories(cacheDir());
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(cacheDir().resolve(VERSION + ".lock"),
                java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.WRITE);
             java.nio.channels.FileLock ignored = lockOrWait(ch, log)) {
            if (Files.isRegularFile(dir.resolve("READY"))) {
                return dir;
            }
            return build(dir, log);
        }
    }

    private static java.nio.channels.FileLock lockOrWait(java.nio.channels.FileChannel ch, Consumer<String> log) throws IOException {
        java.nio.channels.FileLock l = ch.tryLock();
        if (l == null) {
            log.accept("another trainer is building the default tiny model: waiting for it");
            l = ch.lock();
        }
        return l;
    }

    private static Path build(Path dir, Consumer<String> log) throws IOException {
        removeStaleBuilds();
        log.accept("building the default tiny model (init-tiny + " + SFT_STEPS + " SFT steps) into " + dir);
        Path tmp = cacheDir().resolve(VERSION + TMP + ProcessHandle.current().pid());
        Checkpoints.deleteTree(tmp);
        // SIGTERM mid-way: the step loop stops at its next step and frees its tensors before the JVM exits (exiting
        // under a running backward crashed libtorch); the hook waits for that, then the half-built folder goes
        java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
        java.util.concurrent.CountDownLatch unwound = new java.util.concurrent.CountDownLatch(1);
        Thread hook = new Thread(() -> {
            stop.set(true);
            try {
                unwound.await(60, java.util.concurrent.TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            warmUp(tmp, stop, log);
        } catch (Stopped e) {
            Checkpoints.deleteTree(tmp);
            String why = "stopped during the built-in model's warm-up, which is not resumable: it starts again at the next run";
            log.accept(why); // said here, before the hook lets the exiting JVM halt (the error below may not be printed)
            throw new klrl.util.UserError(why);
        } finally {
            unwound.countDown();
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException exiting) {
                // the JVM is already shutting down (the signal): the hook is running and now returns
            }
        }
        Files.createDirectories(dir.getParent());
        if (!Files.isRegularFile(dir.resolve("READY"))) {
            Checkpoints.deleteTree(dir);
            Files.move(tmp, dir, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        } else {
            Checkpoints.deleteTree(tmp);
        }
        return dir;
    }

    private static final String TMP = ".tmp-";

    /** Half-built folders of warm-ups whose process is gone (killed, or the machine went down) are removed. */
    private static void removeStaleBuilds() throws IOException {
        if (!Files.isDirectory(cacheDir())) {
            return;
        }
        try (var s = Files.list(cacheDir())) {
            for (Path p : s.toList()) {
                String n = p.getFileName().toString();
                if (n.startsWith(VERSION + TMP) && n.substring((VERSION + TMP).length()).matches("\\d{1,19}")) {
                    long pid = Long.parseLong(n.substring((VERSION + TMP).length()));
                    if (ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
                        continue; // another trainer is building it now
                    }
                    Checkpoints.deleteTree(p);
                }
            }
        }
    }

    /** init-tiny into {@code tmp}, then the supervised warm-up, its weights written there with READY. */
    private static void warmUp(Path tmp, java.util.concurrent.atomic.AtomicBoolean stop, Consumer<String> log) throws IOException {
        TinyModel.write(tmp, SPEC);
        klrl.util.Runtime.engine(); // libtorch loaded before its thread count is read
        int threads = ai.djl.pytorch.jni.JniUtils.getNumThreads();
        ai.djl.pytorch.jni.JniUtils.setNumThreads(WARM_UP_THREADS);
        try (NDManager root = NDManager.newBaseManager("PyTorch");
             Tokenizer tok = Tokenizer.load(tmp);
             Decoder model = Decoder.load(tmp, root, DataType.FLOAT32)) {
            Prompts prompts = new Prompts(tok, TrainConfig.Data.defaults().promptFormat());
            // the sums RL trains on, plus a small share of the out-of-domain families (see Arithmetic)
            List<Example> data = new java.util.ArrayList<>(Dataset.load(Dataset.BUNDLED_TRAIN, null, null));
            data.addAll(Dataset.load(Dataset.BUNDLED_WARMUP_FAMILIES, null, null));
            double loss = Sft.run(model, tok, prompts, data, SFT_STEPS, SFT_BATCH, SFT_LR, 11, root, s -> {
                if (stop.get()) {
                    throw new Stopped();
                }
                if ((s + 1) % 100 == 0) {
                    log.accept("  sft step " + (s + 1) + "/" + SFT_STEPS);
                }
            });
            SafeTensors.write(tmp, model.parameters(), "F32", Long.MAX_VALUE);
            log.accept(String.format("  sft done, final loss %.3f", loss));
        } finally {
            ai.djl.pytorch.jni.JniUtils.setNumThreads(threads);
        }
        Files.writeString(tmp.resolve("READY"), VERSION + "\n");
    }
}
