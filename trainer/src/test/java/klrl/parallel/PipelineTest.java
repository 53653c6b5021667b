package klrl.parallel;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import klrl.model.Decoder;
import klrl.train.PolicyForward;
import klrl.train.SequenceBatch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Layer placement's pipeline on CPU "devices" (a thread per device group): the 1F1B update leaves
 * the gradients the stage-after-stage backward leaves after the same micro-batches in order, and a
 * forward-only pass gives the hidden states of the plain forward.
 */
class PipelineTest {
    /** Micro-batches of unequal shapes (prompt and response lengths differ between and within them). */
    static final List<SequenceBatch> BATCHES = List.of(
            SequenceBatch.of(List.of(new long[] {5, 17, 33}, new long[] {7}), List.of(new long[] {64, 100}, new long[] {2, 250, 9}), 0),
            SequenceBatch.of(List.of(new long[] {11}), List.of(new long[] {3, 4, 5, 6}), 0),
            SequenceBatch.of(List.of(new long[] {1, 2}, new long[] {8, 9, 10, 12}, new long[] {40}), List.of(new long[] {13},
                    new long[] {14, 15}, new long[] {16, 17, 18}), 0),
            SequenceBatch.of(List.of(new long[] {21, 22, 23, 24, 25}), List.of(new long[] {26, 27}), 0),
            SequenceBatch.of(List.of(new long[] {30}, new long[] {31}), List.of(new long[] {32, 33, 34}, new long[] {35}), 0));

    /** What one update left: each parameter's gradient and each micro-batch's loss. */
    record Result(Map<String, float[]> grads, List<Float> losses) {}

    /** The micro-batches' head in chunks of 2 response tokens: most of them span several, one partial. */
    static final int CHUNK = 2;

    /** @param headChunk the output head's chunk (0: whole) */
    static Result update(String fixture, int devices, int stageLayers, boolean pipelined, int headChunk) {
        try (NDManager root = NDManager.newBaseManager("PyTorch");
             Decoder model = StagedBackwardTest.placed(root, fixture, devices).headChunk(headChunk)) {
            klrl.util.Runtime.noGradOutsideCollectors();
            model.parameters().values().forEach(p -> p.setRequiresGradient(true));
            List<Float> losses = new ArrayList<>();
            if (pipelined) {
                Pipeline p = new Pipeline(devices, 1);
                try {
                    long vocab = model.config.vocabSize();
                    losses.addAll(p.update(model, BATCHES, root, stageLayers, (k, h, mm) -> {
                        // the earlier micro-batches' head tensors ([T,V] logits, log-softmax, gradients) are gone
                        assertEquals(0, headTensors(root, vocab), "head tensors alive at micro-batch " + k);
                        PolicyForward.Out out = PolicyForward.head(model, BATCHES.get(k), mm, h, 0.8f, null, true);
                        // the head's own: kept for the backward when whole; in chunks none outlives its chunk
                        long kept = headTensors(root, vocab), tokens = 0;
                        for (float x : BATCHES.get(k).responseMask()) {
                            tokens += x > 0 ? 1 : 0;
                        }
                        if (headChunk == 0 || tokens <= headChunk) {
                            assertTrue(kept > 0, "no head tensor kept at micro-batch " + k);
                        } else {
                            assertEquals(0, kept, "head tensors kept at micro-batch " + k);
                        }
                        NDArray loss = StagedBackwardTest.loss(out, BATCHES.get(k).mask(mm));
                        return new Pipeline.Loss<>(loss, loss::getFloat);
                    }));
                    for (int s = 0; s < devices; s++) { // 1F1B: stage s holds at most S − s micro-batches
                        assertEquals(Math.min(devices - s, BATCHES.size()), p.lastInFlight[s], "stage " + s + " in flight");
                    }
                    Map<String, Double> busy = p.takeBusy();
                    double b = busy.get("pipeline_busy");
                    assertTrue(b > 0 && b <= 1.0001, busy.toString());
                } finally {
                    p.stop();
                }
            } else {
                int threads = ai.djl.pytorch.jni.JniUtils.getNumThreads();
                ai.djl.pytorch.jni.JniUtils.setNumThreads(1); // as each stage thread: the same kernels' reduction order
                for (SequenceBatch b : BATCHES) {
                    try (NDManager m = root.newSubManager()) {
                        NDArray mask = b.mask(m);
                        losses.add(StagedBackward.run(model, b, m, stageLayers,
                                h -> StagedBackwardTest.loss(PolicyForward.head(model, b, m, h, 0.8f, null, true), mask), x -> x).getFloat());
                    }
                }
                ai.djl.pytorch.jni.JniUtils.setNumThreads(threads);
            }
            Map<String, float[]> g = new LinkedHashMap<>();
            model.parameters().forEach((k, v) -> g.put(k, v.getGradient().toFloatArray()));
            return new Result(g, losses);
        }
    }

    /** Micro-batch k's final hidden states through the plain forward, on one libtorch thread as each stage thread. */
    private static float[] plainHidden(Decoder placed, int k, NDManager root, boolean adaptersOff) {
        int threads = ai.djl.pytorch.jni.JniUtils.getNumThreads();
        ai.djl.pytorch.jni.JniUtils.setNumThreads(1);
        try (NDManager m = root.newSubManager(); var off = adaptersOff ? placed.adaptersOff() : null) {
            SequenceBatch b = BATCHES.get(k);
            NDArray tokens = b.tokens(m);
            return placed.hidden(tokens, b.pass(placed, tokens, m)).toFloatArray();
        } finally {
            ai.djl.pytorch.jni.JniUtils.setNumThreads(threads);
        }
    }

    /** Live per-token [T,V] tensors (logits, log-softmax, their gradients) under {@code root}. */
    private static long headTensors(NDManager root, long vocab) {
        return root.getManagedArrays().stream().filter(a -> isHeadTensor(a, vocab)).count();
    }

    /** A per-token [T,V] tensor (logits, log-softmax, their gradients); false for one other stages free meanwhile. */
    private static boolean isHeadTensor(NDArray a, long vocab) {
        try {
            long[] shape = a.getShape().getShape();
            return shape.length > 1 && shape[shape.length - 1] == vocab && shape[0] != vocab;
        } catch (IllegalStateException released) {
            return false;
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-bf16-sharded", "llama3-bf16-sharded"})
    void untiedEmbeddingsGetTheSequentialGradientsExactly(String fixture) {
        for (int devices : new int[] {2, 3}) {
            for (int stageLayers : new int[] {0, 1}) {
                for (int chunk : new int[] {0, CHUNK}) {
                    Result seq = update(fixture, devices, stageLayers, false, chunk), pipe = update(fixture, devices, stageLayers, true, chunk);
                    String what = fixture + " " + devices + " devices, stages of " + stageLayers + ", head chunk " + chunk;
                    assertEquals(seq.losses(), pipe.losses(), what);
                    for (var e : seq.grads().entrySet()) {
                        assertArrayEquals(e.getValue(), pipe.grads().get(e.getKey()), what + ": " + e.getKey());
                    }
                }
            }
        }
    }

    /** ‖a − b‖ / ‖b‖. */
    private static double relative(float[] a, float[] b) {
        double d = 0, n = 0;
        for (int i = 0; i < a.length; i++) {
            d += (double) (a[i] - b[i]) * (a[i] - b[i]);
            n += (double) b[i] * b[i];
        }
        return Math.sqrt(d / n);
    }

    @Test
    void tiedEmbeddingsGetTheSameSumInAnotherFixedOrder() {
        // lm_head's gradients (last stage) and the lookup's (first stage) add into one tensor: their sum
        // is formed as (Σ head) + (Σ lookup), deterministic and within rounding of the interleaved sum
        for (int devices : new int[] {2, 3}) {
            Result whole = null;
            for (int chunk : new int[] {0, CHUNK}) { // in chunks, lm_head's part itself is a sum over the chunks
                Result seq = update("qwen2-f16-tied", devices, 0, false, chunk), pipe = update("qwen2-f16-tied", devices, 0, true, chunk),
                        again = update("qwen2-f16-tied", devices, 0, true, chunk);
                assertEquals(seq.losses(), pipe.losses());
                if (whole == null) {
                    whole = seq;
                } else { // the chunked head's gradient into the tied matrix equals the whole head's (both uses summed; measured 5.4e-7)
                    for (var e : whole.grads().entrySet()) {
                        double rel = relative(seq.grads().get(e.getKey()), e.getValue());
                        assertTrue(rel <= 1e-5, "tied, head chunk " + chunk + " against whole: " + e.getKey() + " differs by " + rel);
                    }
                }
                for (var e : seq.grads().entrySet()) {
                    float[] a = e.getValue(), b = pipe.grads().get(e.getKey());
                    double worst = 0, scale = 0;
                    for (int i = 0; i < a.length; i++) {
                        worst = Math.max(worst, Math.abs(a[i] - b[i]));
                        scale = Math.max(scale, Math.abs(a[i]));
                    }
                    assertTrue(scale > 0 && worst <= 1e-6 * scale, e.getKey() + ": " + worst + " of " + scale);
                    assertArrayEquals(b, again.grads().get(e.getKey()), "thread timing changed " + e.getKey());
                }
            }
        }
    }

    @Test
    void forwardOnlyPassesGiveThePlainForwardsHiddenStates() {
        try (NDManager root = NDManager.newBaseManager("PyTorch");
             Decoder placed = StagedBackwardTest.placed(root, "qwen2-bf16-sharded", 3)) {
            klrl.util.Runtime.noGradOutsideCollectors();
            Pipeline p = new Pipeline(3, 1);
            try {
                p.forward("warm-up", BATCHES, List.of(new Pipeline.Net(placed, false)), root, (k, hidden, mm) -> {});
                int before = root.getManagedArrays().size(); // after the first pass made the per-device constants
                List<float[]> got = new ArrayList<>(Collections.nCopies(BATCHES.size(), null));
                p.forward("pipeline_busy_reference", BATCHES, List.of(new Pipeline.Net(placed, false), new Pipeline.Net(placed, true)),
                        root, (k, hidden, mm) -> {
                            assertEquals(2, hidden.size());
                            assertArrayEquals(hidden.get(0).toFloatArray(), hidden.get(1).toFloatArray()); // no adapters: the same net
                            got.set(k, hidden.get(0).toFloatArray());
                        });
                assertEquals(before, root.getManagedArrays().size(), "each micro-batch's manager is closed after its head");
                for (int k = 0; k < BATCHES.size(); k++) {
                    assertArrayEquals(plainHidden(placed, k, root, false), got.get(k), "micro-batch " + k);
                }
                assertEquals(java.util.Set.of("warm-up", "pipeline_busy_reference"), p.takeBusy().keySet());
                assertTrue(p.takeBusy().isEmpty(), "taken once");
            } finally {
                p.stop();
            }
        }
    }

    @Test
    void theReferenceRunsWithoutAdaptersInItsThreadsWhileThePolicyUsesThem() {
        try (NDManager root = NDManager.newBaseManager("PyTorch"); Decoder placed = StagedBackwardTest.placed(root, "qwen2-bf16-sharded", 3)) {
            klrl.util.Runtime.noGradOutsideCollectors();
            // adapters whose B is not zero, so that they change the output
            placed.addAdapters(List.of("q_proj", "v_proj", "down_proj"), 4, 8, 0, 3).values().forEach(l -> l.b.addi(l.b.onesLike().mul(0.05f)));
            Pipeline p = new Pipeline(3, 1);
            try {
                List<float[]> policy = new ArrayList<>(Collections.nCopies(BATCHES.size(), null)), base = new ArrayList<>(policy);
                p.forward("pipeline_busy_reference", BATCHES, List.of(new Pipeline.Net(placed, false), new Pipeline.Net(placed, true)),
                        root, (k, hidden, mm) -> {
                            policy.set(k, hidden.get(0).toFloatArray());
                            base.set(k, hidden.get(1).toFloatArray());
                        });
                for (int k = 0; k < BATCHES.size(); k++) {
                    float[] on = plainHidden(placed, k, root, false), off = plainHidden(placed, k, root, true);
                    assertTrue(!java.util.Arrays.equals(on, off), "the adapters change the output");
                    assertArrayEquals(on, policy.get(k), "micro-batch " + k + " with adapters");
                    assertArrayEquals(off, base.get(k), "micro-batch " + k + " without");
                }
            } finally {
                p.stop();
            }
        }
    }

    @Test
    void aFailureInTheLastOrTheFirstStageStopsThePassAndThePipelineRunsAgain() {
        // an id beyond the vocabulary: the first stage's embedding lookup fails at micro-batch 2
        List<SequenceBatch> bad = new ArrayList<>(BATCHES);
        bad.set(2, SequenceBatch.of(List.of(new long[] {1, 2}), List.of(new long[] {1_000_000}), 0));
        try (NDManager root = NDManager.newBaseManager("PyTorch"); Decoder model = StagedBackwardTest.placed(root, "qwen2-bf16-sharded", 3)) {
            klrl.util.Runtime.noGradOutsideCollectors();
            model.parameters().values().forEach(x -> x.setRequiresGradient(true));
            Pipeline p = new Pipeline(3, 1);
            try {
                p.update(model, BATCHES, root, 0, (k, h, mm) -> new Pipeline.Loss<>(h.sum(), () -> k));
                p.forward("warm-up", BATCHES, List.of(new Pipeline.Net(model, false)), root, (k, hidden, mm) -> {});
                int before = root.getManagedArrays().size(); // after the first passes made the per-device constants
                // the last stage fails (its head), then the first (the lookup), in the update and in a forward pass
                IllegalStateException e = assertThrows(IllegalStateException.class, () -> p.update(model, BATCHES, root, 0, (k, h, mm) -> {
                    if (k == 2) {
                        throw new IllegalStateException("head failed at micro-batch 2");
                    }
                    return new Pipeline.Loss<>(h.sum(), () -> 0);
                }));
                assertEquals("head failed at micro-batch 2", e.getMessage());
                List<Integer> heads = new ArrayList<>();
                RuntimeException u = assertThrows(RuntimeException.class, () -> p.update(model, bad, root, 1, (k, h, mm) -> {
                    heads.add(k);
                    return new Pipeline.Loss<>(h.sum(), () -> k);
                }));
                assertTrue(u instanceof ai.djl.engine.EngineException, u.toString());
                assertTrue(!heads.contains(2) && !heads.contains(3), "no micro-batch after the failed one reached the head: " + heads);
                RuntimeException f = assertThrows(RuntimeException.class, () -> p.forward("x", bad, List.of(new Pipeline.Net(model, false)),
                        root, (k, hidden, mm) -> {}));
                assertTrue(f instanceof ai.djl.engine.EngineException, f.toString());
                // every micro-batch's managers are closed: nothing of the failed passes stays attached to the root
                assertEquals(before, root.getManagedArrays().size());
                assertEquals(List.of(0, 1), p.update(model, BATCHES.subList(0, 2), root, 1, (k, h, mm) -> new Pipeline.Loss<>(h.sum(), () -> k)));
            } finally {
                assertTrue(p.stop());
            }
        }
    }
}
