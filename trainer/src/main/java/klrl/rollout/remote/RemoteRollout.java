package klrl.rollout.remote;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.LongConsumer;
import klrl.config.TrainConfig;
import klrl.rollout.RolloutEngine;
import klrl.rollout.Sample;
import klrl.rollout.SamplingParams;

/**
 * Rollouts on SGLang or vLLM servers (rollout.engine). Every sample is one request whose sampler is
 * seeded with the sample's own stream seed ({@link RolloutEngine#streamSeed}), so a batch does not
 * depend on which server drew which sample. A batch is all or nothing: every sample must come back
 * whole and from the version of the weights asked for, else the step fails (after the retries) and
 * nothing of it is used. New weights are published as version folders under rollout.weights_dir and
 * loaded on every server before the next rollout.
 */
public final class RemoteRollout implements AutoCloseable {
    /** Folders of published versions kept in weights_dir: the newest and the one before (a server may still be loading it). */
    static final int KEEP_VERSIONS = 2;

    private final Dialect dialect;
    private final ServerPool pool;
    private final Path weightsDir;
    private final List<Long> stopIds;
    private final ExecutorService threads;
    private Dialect.Weights current;
    private double syncSeconds;

    /** Writes one version of the policy into a folder: an HF model folder, or a PEFT adapter. */
    public interface Writer {
        void write(Path dir) throws java.io.IOException;
    }

    /**
     * The servers of rollout.urls in the engine's dialect; for vLLM the served model's name is read from
     * the first server that answers {@code GET /v1/models} (requests name it, or a LoRA version).
     */
    public static RemoteRollout connect(TrainConfig.Rollout rc, List<Long> stopIds, java.util.function.Consumer<String> log) {
        ServerPool pool = new ServerPool(rc.urls(), Duration.ofMillis((long) (rc.requestTimeoutS() * 1000)), rc.maxRetries(),
                rc.maxInflight(), Duration.ofMillis(200));
        String served = null;
        if (rc.engine().equals("vllm")) {
            served = pool.request(new Dialect.Call("/v1/models", null), a -> {
                String id = a.body() == null ? "" : a.body().path("data").path(0).path("id").asText("");
                if (id.isEmpty()) {
                    throw new Dialect.Refused("/v1/models lists no model");
                }
                return id;
            });
        }
        log.accept("rollouts on " + rc.engine() + " servers " + pool.urls() + (served != null ? " (model " + served + ")" : "")
                + "; weights through " + rc.weightsDir());
        return new RemoteRollout(Dialect.of(rc.engine(), served), pool, Path.of(rc.weightsDir()), stopIds, rc.maxInflight());
    }

    RemoteRollout(Dialect dialect, ServerPool pool, Path weightsDir, List<Long> stopIds, int maxInflight) {
        this.dialect = dialect;
        this.pool = pool;
        this.weightsDir = weightsDir;
        this.stopIds = List.copyOf(stopIds);
        int n = Math.max(1, Math.min(256, maxInflight * pool.urls().size()));
        this.threads = Executors.newFixedThreadPool(n, r -> {
            Thread t = new Thread(r, "rollout-request");
            t.setDaemon(true);
            return t;
        });
    }

    public ServerPool pool() {
        return pool;
    }

    /** The version the servers serve (null before the first publish). */
    public Dialect.Weights current() {
        return current;
    }

    /**
     * Makes every server serve {@code version} of the policy, unless it already does: writes it to
     * weights_dir/klrl-v{version} (through a temporary folder renamed when complete, so a server never
     * reads a half-written version) and loads it on each server, checking the version each reports.
     */
    public void publish(long version, boolean lora, Writer writer) {
        if (current != null && current.version() == version) {
            return;
        }
        long t0 = System.nanoTime();
        Dialect.Weights w = new Dialect.Weights(version, weightsDir.resolve("klrl-v" + version), lora);
        Path tmp = weightsDir.resolve("klrl-v" + version + ".tmp");
        try {
            Files.createDirectories(weightsDir);
            klrl.checkpoint.Checkpoints.deleteTree(tmp);
            klrl.checkpoint.Checkpoints.deleteTree(w.dir());
            Files.createDirectories(tmp);
            writer.write(tmp);
            Files.move(tmp, w.dir(), java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        } catch (java.io.IOException | java.io.UncheckedIOException e) {
            throw new klrl.util.UserError("rollout.weights_dir " + weightsDir + ": cannot write version " + version + ": "
                    + klrl.util.Json.firstLine(String.valueOf(e.getMessage())));
        }
        pool.onEveryServer(dialect.load(w, current), a -> {
            String served = dialect.servedVersion(a.body());
            return w.tag().equals(served) ? null : "serves weight version " + served + " after loading " + w.tag();
        }, dialect.versionQueries());
        current = w;
        prune(version);
        syncSeconds += (System.nanoTime() - t0) / 1e9;
    }

    private void prune(long version) {
        try (var s = Files.list(weightsDir)) {
            for (Path p : s.toList()) {
                String f = p.getFileName().toString();
                if (f.matches("klrl-v\\d+") && Long.parseLong(f.substring(6)) <= version - KEEP_VERSIONS) {
                    klrl.checkpoint.Checkpoints.deleteTree(p);
                }
            }
        } catch (java.io.IOException e) {
            // old versions left behind cost disk, nothing else
        }
    }

    /**
     * {@code p.n()} samples per prompt from the servers, in the local engine's order (prompt i's at
     * [i·n, (i+1)·n)), each with the server's log-probs. Throws {@link ServersUnavailable} when a
     * sample could not be had; then nothing of the batch is returned.
     */
    public List<Sample> generate(List<long[]> prompts, SamplingParams p, LongConsumer onFinished) {
        if (current == null) {
            throw new IllegalStateException("no weights published to the rollout servers yet");
        }
        Dialect.Weights w = current;
        SamplingParams one = new SamplingParams(p.maxNewTokens(), p.temperature(), p.topP(), p.topK(), 1, p.stopStrings(), p.seed());
        List<Future<Sample>> fs = new ArrayList<>();
        for (int i = 0; i < prompts.size(); i++) {
            for (int j = 0; j < p.n(); j++) {
                int prompt = i;
                long seed = RolloutEngine.streamSeed(p.seed(), (long) i * p.n() + j);
                fs.add(threads.submit(() -> {
                    Dialect.ServerSample s = pool.request(dialect.generate(prompts.get(prompt), one, seed, stopIds, w),
                            a -> dialect.parse(a.body(), w, stopIds, p.maxNewTokens()));
                    onFinished.accept(1);
                    return new Sample(prompt, prompts.get(prompt), s.tokens(), s.logprobs(), s.finishReason());
                }));
            }
        }
        List<Sample> out = new ArrayList<>(fs.size());
        RuntimeException first = null;
        for (Future<Sample> f : fs) {
            try {
                out.add(f.get());
            } catch (ExecutionException e) {
                if (first == null) {
                    first = e.getCause() instanceof RuntimeException re ? re : new IllegalStateException(e.getCause());
                    fs.forEach(x -> x.cancel(true)); // the batch is lost: stop asking for the rest
                }
            } catch (java.util.concurrent.CancellationException e) {
                // cancelled after the first failure
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new ServersUnavailable("rollout interrupted");
            }
        }
        if (first != null) {
            throw first;
        }
        return out;
    }

    /** Seconds spent publishing weights since the last call; then resets. */
    public double takeSyncSeconds() {
        double s = syncSeconds;
        syncSeconds = 0;
        return s;
    }

    @Override
    public void close() {
        threads.shutdownNow();
    }
}
