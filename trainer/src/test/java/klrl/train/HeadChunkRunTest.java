package klrl.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Training with the output head in chunks equals training with it whole: one step of four updates
 * (two epochs over two mini-batches) on the same rollout — it comes from the same initial weights, and
 * sampling does not run the training head, so no sampled token hangs on rounding — with a chunk of 3
 * response tokens (every micro-batch then spans many chunks, one of them partial). Compared: every
 * metric of the step, the saved weights (‖chunked − whole‖ / ‖whole‖) and the updates they carry
 * (‖Δchunked − Δwhole‖ / ‖Δwhole‖). The chunked backward applies the head's gradient analytically where
 * the whole head runs autograd's operations, so single gradients agree to rounding (~1e-6, see
 * OutputHeadTest) and AdamW, which scales each coordinate by its own magnitude, carries that rounding
 * through four updates. On an AVX2 CPU, fp32: metrics within 2.6e-5 (ppo_kl, a difference of close
 * log-probs; the losses within 4e-6), weights within 4.7e-6 and updates within 3.6e-4; fp16 within its
 * rounding: metrics 1.2e-3, weights 3.2e-5, updates 3.7e-3. The bounds leave room for other CPUs' rounding.
 */
@Tag("e2e")
class HeadChunkRunTest {
    @TempDir Path tmp;

    @BeforeAll
    static void model() throws Exception {
        TrainerTest.model();
    }

    /** Exact KL in the loss, k3 in the reward and an entropy bonus: every value the head computes reaches the loss. */
    private static final Map<String, Object> ONE_STEP = Map.of("train.max_steps", 1, "algorithm.ppo_epochs", 2,
            "checkpoint.every", 1, "kl.estimator", "full", "kl.placement", "loss", "kl.coef", 0.1, "algorithm.entropy_coef", 0.01);

    private Map<String, Object> with(Map<String, Object> variant, int chunk) {
        Map<String, Object> o = new HashMap<>(ONE_STEP);
        o.putAll(variant);
        o.put("model.head_chunk_tokens", chunk);
        return o;
    }

    /**
     * Runs the variant whole and in chunks of 3: metrics within {@code metricBound}, the saved weights within
     * {@code weightBound} and their updates within {@code updateBound} relative.
     */
    private void assertChunkedTrainsLikeWhole(String name, Map<String, Object> variant, double metricBound, double weightBound,
                                              double updateBound)
            throws Exception {
        Path whole = tmp.resolve(name + "-whole"), chunked = tmp.resolve(name + "-chunked");
        TrainerTest.train(TrainerTest.small(whole, with(variant, 0)), null);
        TrainerTest.train(TrainerTest.small(chunked, with(variant, 3)), null);
        JsonNode a = TrainerTest.stepLines(whole).get(0), b = TrainerTest.stepLines(chunked).get(0);
        int compared = 0;
        for (var it = a.fields(); it.hasNext(); ) {
            var e = it.next();
            String k = e.getKey();
            if (!e.getValue().isNumber() || k.startsWith("time") || k.equals("tokens_per_s") || k.equals("rss_mb")
                    || k.startsWith("pipeline_busy")) {
                continue;
            }
            double x = e.getValue().asDouble(), y = b.get(k).asDouble();
            // an absolute floor for what is rounding noise at step 1 (the KL of a policy against itself, ~1e-7)
            assertEquals(x, y, Math.max(metricBound * Math.abs(x), 1e-7), name + ": " + k);
            compared++;
        }
        assertTrue(compared >= 10, name + ": only " + compared + " metrics compared");
        for (String k : new String[] {"loss_total", "grad_norm", "entropy", "kl_k1"}) {
            assertTrue(a.has(k), name + ": no " + k + " in " + a);
        }
        Map<String, float[]> wa = TrainerTest.savedWeights(whole.resolve("checkpoints/step-000001")),
                wb = TrainerTest.savedWeights(chunked.resolve("checkpoints/step-000001"));
        boolean lora = variant.containsKey("model.lora.rank");
        Map<String, float[]> start = lora ? null : TrainerTest.savedWeights(TrainerTest.base);
        assertEquals(wa.keySet(), wb.keySet(), name);
        double diff = 0, norm = 0, update = 0;
        for (var e : wa.entrySet()) {
            float[] x = e.getValue(), y = wb.get(e.getKey()), s = start == null ? new float[x.length] : start.get(e.getKey());
            if (e.getKey().endsWith("k_proj.bias")) {
                // a key bias adds q·b to every score of a query, which softmax cancels: its gradient is zero but
                // for rounding, which AdamW scales up to a full step — compared with the weights it moved least
                continue;
            }
            for (int i = 0; i < x.length; i++) {
                diff += (double) (x[i] - y[i]) * (x[i] - y[i]);
                norm += (double) x[i] * x[i];
                update += (double) (x[i] - s[i]) * (x[i] - s[i]);
            }
        }
        double rel = Math.sqrt(diff / norm), relUpdate = Math.sqrt(diff / update);
        assertTrue(rel <= weightBound, name + ": saved weights differ by " + rel + " relative");
        // the updates themselves (LoRA's adapters start at B = 0 with a random A: there the weights are the measure):
        // AdamW divides each coordinate's gradient by its own scale, so a coordinate whose gradient is mostly rounding
        // moves by another step in each; the step's updates still agree to a small fraction
        assertTrue(update > 0 && relUpdate <= updateBound, name + ": saved weights' updates differ by " + relUpdate + " relative");
    }

    @Test
    void fullFineTuningInFp32() throws Exception {
        assertChunkedTrainsLikeWhole("full", Map.of(), 5e-5, 1e-5, 1e-3);
    }

    @Test
    void loraWithPposValueHeadOnTheSameStates() throws Exception {
        assertChunkedTrainsLikeWhole("lora-ppo", Map.of("model.lora.rank", 4, "algorithm.name", "ppo"), 5e-5, 1e-5, 1e-3);
    }

    @Test
    void layersOverTwoDevicesWithCheckpointing() throws Exception {
        assertChunkedTrainsLikeWhole("layers", Map.of("model.device", "cpu,cpu", "train.parallel", "layers",
                "train.checkpoint_layers", 1), 5e-5, 1e-5, 1e-3);
    }

    @Test
    void dataParallelInFp16() throws Exception {
        assertChunkedTrainsLikeWhole("fp16-data", Map.of("model.device", "cpu,cpu", "train.parallel", "data",
                "model.dtype", "float16"), 3e-3, 1e-4, 1e-2);
    }
}
