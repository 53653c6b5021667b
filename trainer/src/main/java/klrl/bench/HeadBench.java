package klrl.bench;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import klrl.model.Decoder;
import klrl.model.TinyModel;
import klrl.train.PolicyForward;
import klrl.train.SequenceBatch;
import klrl.util.Grad;
import klrl.util.Json;
import klrl.util.Nd;
import klrl.util.Runtime;

/**
 * head-long: the output head over one long response with a Qwen-sized vocabulary, whole against
 * {@code model.head_chunk_tokens} chunks. The decoder is as small as a Qwen2-shaped model gets (2
 * layers, hidden 64) so that the [tokens, vocabulary] work of the head is what is measured: per
 * response length and chunk, a reference pass and an update's forward and backward, their seconds and
 * the peak resident memory of a process that ran only that configuration.
 */
final class HeadBench {
    static final int VOCAB = 151_936;
    static final int PROMPT = 8;
    static final int[] TOKENS = {1024, 2048, 4096, 8192, 16384};
    /** The chunk every length runs with, besides whole. */
    static final int CHUNK = Decoder.DEFAULT_HEAD_CHUNK;
    /** At this length the chunk sizes are compared. */
    static final int COMPARE_AT = 4096;
    static final int[] COMPARED = {256, 512, 1024, 2048, 4096};
    /**
     * Bytes per response token and vocabulary entry a whole head is taken to need at its peak: fp32, and
     * about eight [T,V] tensors alive at once (logits, log-softmax, its exp, the entropy's product, and
     * what the backward makes of them).
     */
    static final long WHOLE_BYTES_PER_LOGIT = 4 * 8;
    /** A whole head runs only when its estimate stays below this share of MemAvailable (the rest: the decoder, the JVM, other processes). */
    static final double WHOLE_MEMORY_SHARE = 0.7;
    static final double ENTROPY_COEF = 0.01;

    private HeadBench() {}

    static TinyModel.Spec spec() {
        return TinyModel.Spec.defaults("qwen2", 1).withVocab(VOCAB);
    }

    static String setting(int repeats) {
        return "qwen2-shaped, 2 layers, hidden 64, 4 heads / 2 kv heads, intermediate 176, vocab " + VOCAB + " untied (random weights),"
                + " fp32, attention sdpa, every parameter trained; one row of " + PROMPT + " prompt tokens and a response of `tokens`"
                + " random ids: a no-grad reference pass (log-probs), then forward + loss Σ mask·(logp·adv + " + ENTROPY_COEF
                + "·entropy) + backward (klrl.util.Grad); head_chunk_tokens 0 = the whole response at once (at or below one chunk the"
                + " head is one piece either way); seconds = median of " + repeats + " runs after one warm-up run; each configuration in"
                + " a fresh process of its own, peak_rss_mb = its VmHWM at the end, peak_rss_above_start_mb = above its VmHWM once the model"
                + " was loaded (both with the process's malloc: under the launch scripts' settings blocks under 32 MiB freed"
                + " stay counted, the head's [chunk, vocabulary] blocks are mapped and returned); a whole head is skipped where about"
                + " tokens × vocab × 4 bytes × 8 tensors exceeds " + Math.round(100 * WHOLE_MEMORY_SHARE) + " % of MemAvailable, and a"
                + " process is stopped (failed) past " + Math.round(100 * MEMORY_GUARD_SHARE) + " % of the memory available at its start";
    }

    /** The (tokens, head chunk) configurations of the given response lengths, in the order they run. */
    static List<int[]> configurations(int[] tokens) {
        List<int[]> out = new ArrayList<>();
        for (int t : tokens) {
            out.add(new int[] {t, 0});
            for (int c : t == COMPARE_AT ? COMPARED : new int[] {CHUNK}) {
                out.add(new int[] {t, c});
            }
        }
        return out;
    }

    /**
     * Writes the model into a folder of its own, then measures each configuration in a process of its own
     * ({@code jvm}: the command that starts one, to which "--head-model DIR --head-row T:C" is added):
     * memory a process has touched stays resident, so configurations sharing a process would measure
     * their order. A whole head whose estimate does not fit the memory available is not started.
     */
    static void run(ObjectNode o, List<String> jvm, int[] tokens, int repeats) throws Exception {
        o.put("setting", setting(repeats));
        ArrayNode rows = o.putArray("rows");
        Path dir = Files.createTempDirectory("klrl-bench-head");
        try {
            Path model = dir.resolve("model");
            TinyModel.write(model, spec());
            for (int[] tc : configurations(tokens)) {
                int t = tc[0], c = tc[1];
                if (c == 0) {
                    long need = (long) t * VOCAB * WHOLE_BYTES_PER_LOGIT, avail = memAvailableBytes();
                    String why = avail <= 0 ? "MemAvailable unknown (no /proc/meminfo)"
                            : need > WHOLE_MEMORY_SHARE * avail ? String.format(java.util.Locale.ROOT, "the whole head would need about %.1f GB (%d tokens × %d × 4 bytes"
                            + " × ~8 tensors), more than %.0f %% of MemAvailable %.1f GB", need / 1e9, t, VOCAB,
                            100 * WHOLE_MEMORY_SHARE, avail / 1e9) : null;
                    if (why != null) {
                        ObjectNode r = rows.addObject();
                        r.put("tokens", t);
                        r.put("head_chunk_tokens", c);
                        r.put("skipped", true);
                        r.put("why", why);
                        continue;
                    }
                }
                rows.add(measureInChild(jvm, model, dir.resolve("stderr-" + t + "-" + c + ".txt"), t, c));
            }
        } finally {
            klrl.checkpoint.Checkpoints.deleteTree(dir);
        }
    }

    private static ObjectNode measureInChild(List<String> jvm, Path model, Path stderr, int t, int c) throws Exception {
        List<String> cmd = new ArrayList<>(jvm);
        cmd.addAll(List.of("--head-model", model.toString(), "--head-row", t + ":" + c));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(stderr.toFile());
        klrl.util.Processes.endWithThisProcess(pb); // a bench killed outright takes its measuring process along
        Process p = pb.start();
        String json = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        int rc = p.waitFor();
        if (rc == 0) {
            return (ObjectNode) Json.MAPPER.readTree(json).path("head_long");
        }
        // a configuration that dies (the kernel's out-of-memory killer: 137) is a result too, and the others still run
        ObjectNode r = Json.MAPPER.createObjectNode();
        r.put("tokens", t);
        r.put("head_chunk_tokens", c);
        r.put("failed", true);
        String last = Files.readAllLines(stderr).stream().filter(l -> !l.isBlank()).reduce((a, b) -> b).orElse("");
        r.put("why", "exited " + rc + (rc == 137 ? " (killed: out of memory?)" : "") + (last.isEmpty() ? "" : ": " + last.strip()));
        return r;
    }

    /**
     * One configuration, in this process: the model at {@code dir} with head chunks of {@code chunk}
     * tokens over a response of {@code tokens} tokens.
     */
    static ObjectNode row(Path dir, int tokens, int chunk, String device, int repeats) throws Exception {
        ObjectNode r = Json.MAPPER.createObjectNode();
        r.put("tokens", tokens);
        r.put("head_chunk_tokens", chunk);
        try (NDManager root = NDManager.newBaseManager(Runtime.device(device), "PyTorch");
             Decoder model = Decoder.load(dir, root, DataType.FLOAT32).attention("sdpa").headChunk(chunk)) {
            Runtime.noGradOutsideCollectors();
            for (NDArray p : model.parameters().values()) {
                p.setRequiresGradient(true);
            }
            SplittableRandom rnd = new SplittableRandom(tokens);
            int vocab = model.config.vocabSize();
            // packed as the trainer's micro-batches are (SequenceBatch.rows): a packed pass is the one that runs fused attention
            SequenceBatch b = SequenceBatch.of(List.of(rnd.longs(PROMPT, 3, vocab).toArray()),
                    List.of(rnd.longs(tokens, 3, vocab).toArray()), 0).rows(new int[] {0});
            float[] adv = new float[tokens];
            for (int i = 0; i < tokens; i++) {
                adv[i] = (float) rnd.nextDouble(-1, 1);
            }
            long start = BenchCommand.peakRssBytes();
            guard(MEMORY_GUARD_SHARE * (memAvailableBytes() + residentBytes()));
            step(model, b, adv, root); // warm-up: first-touch page faults and the JIT
            double[] secs = new double[Math.max(1, repeats)];
            for (int i = 0; i < secs.length; i++) {
                long t0 = System.nanoTime();
                step(model, b, adv, root);
                secs[i] = (System.nanoTime() - t0) / 1e9;
            }
            Arrays.sort(secs);
            double median = secs.length % 2 == 1 ? secs[secs.length / 2] : (secs[secs.length / 2 - 1] + secs[secs.length / 2]) / 2;
            long peak = BenchCommand.peakRssBytes();
            r.put("seconds", median);
            r.put("seconds_best", secs[0]);
            r.put("ms_per_token", median * 1000 / tokens);
            r.put("peak_rss_mb", peak / 1e6);
            r.put("peak_rss_above_start_mb", (peak - start) / 1e6);
            r.put("runs", secs.length);
            r.put("attention", Decoder.fusedAttentionCalls() > 0 ? "sdpa" : "eager"); // what the passes ran, not what was asked
            r.put("model_parameters", model.config.parameterCount());
        }
        return r;
    }

    /** What a training step runs over the batch: the reference's log-probs without a graph, then the update's forward, loss and backward. */
    static void step(Decoder model, SequenceBatch b, float[] adv, NDManager root) {
        // each in a manager of its own, closed when done, as the trainer's reference pass and micro-batches are
        try (NDManager m = root.newSubManager()) {
            // grad mode is off outside a recording: no graph, whatever the parameters require
            PolicyForward.run(model, b, m, 1f, null, false).logp().toFloatArray();
        }
        try (NDManager m = root.newSubManager()) {
            try (Grad g = Grad.record()) {
                PolicyForward.Out out = PolicyForward.run(model, b, m, 1f);
                NDArray mask = b.mask(m);
                NDArray objective = out.logp().mul(b.tensor(m, adv)).add(Nd.mul(out.entropy(), ENTROPY_COEF)).mul(mask).sum();
                g.backward(Nd.div(objective, -mask.sum().getFloat()));
            }
        }
    }

    /** Share of the memory available at a row's start past which its process stops (see {@link #guard}). */
    static final double MEMORY_GUARD_SHARE = 0.9;

    /**
     * Ends this process (exit 3, one line on stderr) once its resident memory passes {@code limit} bytes:
     * the machine is shared, and a row that outgrows it would otherwise have the kernel's out-of-memory
     * killer pick among everyone's processes (a whole head past the estimate, or an allocator that
     * keeps freed [chunk, vocabulary] blocks in a fragmenting heap, as glibc with no mmap does).
     */
    private static void guard(double limit) {
        if (limit <= 0) {
            return;
        }
        Thread t = new Thread(() -> {
            while (true) {
                long rss = residentBytes();
                if (rss > limit) {
                    System.err.printf(java.util.Locale.ROOT, "head-long: stopped at %.1f GB resident, past %.0f %% of the memory available at the start (%.1f GB)%n",
                            rss / 1e9, 100 * MEMORY_GUARD_SHARE, limit / MEMORY_GUARD_SHARE / 1e9);
                    System.err.flush();
                    java.lang.Runtime.getRuntime().halt(3);
                }
                try {
                    Thread.sleep(100);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }, "head-long-memory-guard");
        t.setDaemon(true);
        t.start();
    }

    /** VmRSS of this process in bytes, 0 where /proc has none. */
    static long residentBytes() {
        return procBytes(Path.of("/proc/self/status"), "VmRSS:");
    }

    /** MemAvailable from /proc/meminfo in bytes, 0 where there is none. */
    static long memAvailableBytes() {
        return procBytes(Path.of("/proc/meminfo"), "MemAvailable:");
    }

    /** The kB value of the line starting with {@code key} in a /proc file, in bytes; 0 where there is none. */
    private static long procBytes(Path file, String key) {
        try {
            for (String l : Files.readAllLines(file)) {
                if (l.startsWith(key)) {
                    return Long.parseLong(l.replaceAll("[^0-9]", "")) * 1024;
                }
            }
        } catch (java.io.IOException | NumberFormatException e) {
            return 0;
        }
        return 0;
    }
}
