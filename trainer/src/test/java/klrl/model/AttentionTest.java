package klrl.model;

import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.training.GradientCollector;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import klrl.train.SequenceBatchAccess;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * model.attention: sdpa (libtorch's fused scaled_dot_product_attention through a TorchScript module)
 * gives the log-probs and gradients of eager attention, on a grouped-query (Qwen2-shaped, random
 * weights) and a multi-head model, over packed rows of different lengths.
 */
class AttentionTest {
    @TempDir Path tmp;

    @ParameterizedTest(name = "{0} heads / {1} kv heads, {2}")
    @CsvSource({"4, 2, float32", "4, 4, float32", "4, 2, float16"})
    void sdpaGivesTheLogprobsAndGradientsOfEagerAttention(int heads, int kvHeads, String dtype) throws Exception {
        TinyModel.write(tmp, new TinyModel.Spec("qwen2", 64, 2, heads, kvHeads, 160, 3, "F32", Long.MAX_VALUE, false, 0.05, 0));
        klrl.util.Runtime.noGradOutsideCollectors();
        DataType dt = dtype.equals("float16") ? DataType.FLOAT16 : DataType.FLOAT32;
        try (NDManager root = NDManager.newBaseManager("PyTorch");
             Decoder model = Decoder.load(tmp, root, dt)) {
            // rows of 5–40 tokens: prompt and response lengths differ row to row, so the packed rows are right-padded
            SplittableRandom rnd = new SplittableRandom(5);
            List<long[]> prompts = new ArrayList<>(), responses = new ArrayList<>();
            for (int i = 0; i < 6; i++) {
                prompts.add(rnd.longs(2 + rnd.nextInt(15), 3, 200).toArray());
                responses.add(rnd.longs(1 + rnd.nextInt(25), 3, 200).toArray());
            }
            for (NDArray p : model.parameters().values()) {
                p.setRequiresGradient(true);
            }
            long before = Sdpa.CALLS.get();
            Result eager = run(model, prompts, responses, root);
            assertTrue(Sdpa.CALLS.get() == before, "eager attention called the fused kernel");
            model.attention("sdpa");
            Result fused = run(model, prompts, responses, root);
            assertTrue(Sdpa.CALLS.get() - before == 2, "one fused call per layer");
            model.attention("eager");
            // fp32: rounding of two summation orders; fp16: the kernels' own rounding (10-bit mantissa)
            double tol = dt == DataType.FLOAT16 ? 2e-2 : 1e-5;
            double worst = 0;
            for (int i = 0; i < eager.logp.length; i++) {
                worst = Math.max(worst, Math.abs(eager.logp[i] - fused.logp[i]));
            }
            assertTrue(worst <= tol, "log-probs differ by " + worst);
            for (var e : eager.grads.entrySet()) {
                float[] a = e.getValue(), b = fused.grads.get(e.getKey());
                double scale = 0, diff = 0;
                for (int i = 0; i < a.length; i++) {
                    scale = Math.max(scale, Math.abs(a[i]));
                    diff = Math.max(diff, Math.abs(a[i] - b[i]));
                }
                assertTrue(scale > 0, e.getKey() + " has no gradient");
                assertTrue(diff <= tol * 10 * scale, e.getKey() + ": gradients differ by " + diff + " of " + scale);
            }
        }
    }

    @org.junit.jupiter.api.Test
    void aLeftPaddedPrefillWithSdpaSamplesWhatEagerSamples() throws Exception {
        TinyModel.write(tmp, new TinyModel.Spec("qwen2", 64, 2, 4, 2, 160, 3, "F32", Long.MAX_VALUE, false, 0.3, 0));
        klrl.util.Runtime.noGradOutsideCollectors();
        try (NDManager root = NDManager.newBaseManager("PyTorch");
             Decoder model = Decoder.load(tmp, root, DataType.FLOAT32)) {
            SplittableRandom rnd = new SplittableRandom(8);
            List<long[]> prompts = new ArrayList<>();
            for (int i = 0; i < 5; i++) {
                prompts.add(rnd.longs(2 + rnd.nextInt(20), 3, 200).toArray()); // lengths differ: left padding in the prefill
            }
            var params = new klrl.rollout.SamplingParams(16, 1f, 1, 0, 3, List.of(), 4);
            var engine = new klrl.rollout.RolloutEngine(model, List.of(0L), ids -> "");
            long before = Sdpa.CALLS.get();
            List<klrl.rollout.Sample> eager = engine.generate(prompts, params, root);
            assertTrue(Sdpa.CALLS.get() == before);
            model.attention("sdpa");
            List<klrl.rollout.Sample> fused = engine.generate(prompts, params, root);
            assertTrue(Sdpa.CALLS.get() > before, "the prefill ran fused");
            for (int i = 0; i < eager.size(); i++) {
                org.junit.jupiter.api.Assertions.assertArrayEquals(eager.get(i).responseIds(), fused.get(i).responseIds(), "sample " + i);
                float[] a = eager.get(i).logprobs(), b = fused.get(i).logprobs();
                for (int k = 0; k < a.length; k++) {
                    assertTrue(Math.abs(a[k] - b[k]) <= 1e-5, "sample " + i + " token " + k + ": " + a[k] + " vs " + b[k]);
                }
            }
        }
    }

    @org.junit.jupiter.api.Test
    void autoRunsEachPassFusedFromItsPaddedLengthOn() throws Exception {
        TinyModel.write(tmp, new TinyModel.Spec("qwen2", 64, 2, 4, 2, 160, 3, "F32", Long.MAX_VALUE, false, 0.3, 0));
        klrl.util.Runtime.noGradOutsideCollectors();
        try (NDManager root = NDManager.newBaseManager("PyTorch");
             Decoder model = Decoder.load(tmp, root, DataType.FLOAT32)) {
            for (NDArray p : model.parameters().values()) {
                p.setRequiresGradient(true);
            }
            SplittableRandom rnd = new SplittableRandom(11);
            int at = Attention.AUTO_MIN_TOKENS;
            // rows padded to just under the threshold, and to just over it (the longest row sets the pass's length)
            for (int width : new int[] {at - 1, at + 1}) {
                List<long[]> prompts = new ArrayList<>(), responses = new ArrayList<>();
                for (int i = 0; i < 3; i++) {
                    int len = i == 0 ? width : 8 + rnd.nextInt(width / 2);
                    prompts.add(rnd.longs(len / 2, 3, 200).toArray());
                    responses.add(rnd.longs(len - len / 2, 3, 200).toArray());
                }
                Result eager = run(model.attention("eager"), prompts, responses, root);
                Result fused = run(model.attention("sdpa"), prompts, responses, root);
                long before = Sdpa.CALLS.get();
                Result auto = run(model.attention("auto"), prompts, responses, root);
                boolean long_ = width >= at;
                assertTrue(Sdpa.CALLS.get() - before == (long_ ? 2 : 0), width + " positions: " + (Sdpa.CALLS.get() - before)
                        + " fused calls");
                // either way the log-probs of both modes (fp32: their summation orders' rounding)
                for (Result other : List.of(eager, fused)) {
                    for (int i = 0; i < auto.logp.length; i++) {
                        assertTrue(Math.abs(other.logp[i] - auto.logp[i]) <= 1e-5, width + " positions, token " + i);
                    }
                }
            }
            for (NDArray p : model.parameters().values()) {
                p.setRequiresGradient(false);
            }
            // a prefill's length is its longest prompt's: fused (with the left padding's mask) from the threshold on
            var params = new klrl.rollout.SamplingParams(4, 1f, 1, 0, 3, List.of(), 4);
            var engine = new klrl.rollout.RolloutEngine(model, List.of(0L), ids -> "");
            for (int width : new int[] {at - 1, at}) {
                List<long[]> prompts = List.of(rnd.longs(width, 3, 200).toArray(), rnd.longs(20, 3, 200).toArray());
                model.attention("eager");
                List<klrl.rollout.Sample> eager = engine.generate(prompts, params, root);
                model.attention("auto");
                long before = Sdpa.CALLS.get();
                List<klrl.rollout.Sample> auto = engine.generate(prompts, params, root);
                assertTrue(Sdpa.CALLS.get() - before == (width >= at ? 2 : 0), "prefill of " + width + " positions: "
                        + (Sdpa.CALLS.get() - before) + " fused calls (decoding stays eager)");
                for (int i = 0; i < eager.size(); i++) {
                    org.junit.jupiter.api.Assertions.assertArrayEquals(eager.get(i).responseIds(), auto.get(i).responseIds());
                }
            }
        }
    }

    record Result(float[] logp, Map<String, float[]> grads) {}

    /** Log-probs of every response token of the packed rows, and the gradient of their sum. */
    static Result run(Decoder model, List<long[]> prompts, List<long[]> responses, NDManager root) {
        try (NDManager m = root.newSubManager()) {
            float[] logp;
            try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                NDArray lp = SequenceBatchAccess.packedLogp(model, prompts, responses, m);
                logp = lp.toType(DataType.FLOAT32, false).toFloatArray();
                gc.backward(lp.toType(DataType.FLOAT32, false).sum());
            }
            Map<String, float[]> grads = new LinkedHashMap<>();
            for (var e : model.parameters().entrySet()) {
                NDArray g = e.getValue().getGradient();
                grads.put(e.getKey(), g.toType(DataType.FLOAT32, false).toFloatArray());
                g.subi(g); // zeroed for the next run
            }
            return new Result(logp, grads);
        }
    }
}
