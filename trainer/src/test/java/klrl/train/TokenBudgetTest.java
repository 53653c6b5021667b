package klrl.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import klrl.config.TrainConfig;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Regrouping rows into micro-batches does not change the update: on a batch of strongly mixed
 * lengths, micro-batches padded to the whole batch (as before), fixed rows padded to their own
 * longest, and token-budget micro-batches of rows ordered by length give the same losses, gradient
 * norm and updated weights, up to fp32 summation order.
 */
@Tag("e2e")
class TokenBudgetTest {
    @TempDir Path tmp;

    @BeforeAll
    static void model() throws Exception {
        TrainerTest.model();
    }

    /** 24 rows (6 prompts × 4 samples): prompts of 3–40 tokens, responses of 1–60. */
    static SequenceBatch mixedLengths(long vocab) {
        SplittableRandom rnd = new SplittableRandom(5);
        List<long[]> prompts = new ArrayList<>(), responses = new ArrayList<>();
        for (int i = 0; i < 24; i++) {
            long[] p = new long[i % 4 == 0 ? 3 + rnd.nextInt(38) : prompts.get(i - 1).length];
            long[] r = new long[rnd.nextInt(10) < 2 ? 40 + rnd.nextInt(21) : 1 + rnd.nextInt(12)];
            for (int j = 0; j < p.length; j++) {
                p[j] = i % 4 == 0 ? 5 + rnd.nextInt((int) vocab - 10) : prompts.get(i - 1)[j];
            }
            for (int j = 0; j < r.length; j++) {
                r[j] = 5 + rnd.nextInt((int) vocab - 10);
            }
            prompts.add(p);
            responses.add(r);
        }
        return SequenceBatch.of(prompts, responses, 0);
    }

    /** One step's reference pass and update on the given micro-batch sizes, with the weights after it. */
    static VarlenUpdate.Result update(TrainConfig c, ReferencePass.Sizes sizes, int miniRows) throws Exception {
        return VarlenUpdate.run(c, TrainerTest.base, mixedLengths(klrl.model.ModelConfig.load(TrainerTest.base).vocabSize()), sizes,
                miniRows, true);
    }

    /** ‖(b − before) − (a − before)‖ ≤ rel · ‖a − before‖ over every trainable tensor at once. */
    static void assertSameUpdate(VarlenUpdate.Result a, VarlenUpdate.Result b, double rel, String what) {
        double diff = 0, moved = 0;
        for (String k : a.weights().keySet()) {
            float[] x = a.weights().get(k), y = b.weights().get(k), x0 = a.before().get(k);
            for (int i = 0; i < x.length; i++) {
                diff += (double) (x[i] - y[i]) * (x[i] - y[i]);
                moved += (double) (x[i] - x0[i]) * (x[i] - x0[i]);
            }
        }
        assertTrue(moved > 0 && Math.sqrt(diff) <= rel * Math.sqrt(moved), what + ": the updates differ by " + Math.sqrt(diff / moved)
                + " of the update");
    }

    static void assertClose(double a, double b, double rel, String what) {
        boolean same = Double.isNaN(a) ? Double.isNaN(b) : Math.abs(a - b) <= rel * Math.max(1, Math.max(Math.abs(a), Math.abs(b)));
        assertTrue(same, what + ": " + a + " vs " + b);
    }

    @ParameterizedTest
    @ValueSource(strings = {"grpo", "ppo", "ppo-separate-critic", "lora", "fp16", "data-parallel", "layers-checkpointed"})
    void batchWidePaddingFixedRowsAndTokenBudgetGiveTheSameUpdate(String setting) throws Exception {
        // Adam's eps above gradient noise: a coordinate whose gradient is zero in exact arithmetic (k_proj's bias,
        // by softmax's shift invariance) holds only rounding noise, which a tiny eps would turn into a full step
        Map<String, Object> o = new HashMap<>(Map.of("kl.placement", "loss", "kl.estimator", "k3", "kl.coef", 0.1,
                "optim.eps", 1e-4));
        switch (setting) {
            case "ppo" -> o.put("algorithm.name", "ppo");
            case "ppo-separate-critic" -> o.putAll(Map.of("algorithm.name", "ppo", "model.critic", "separate"));
            case "lora" -> o.put("model.lora.rank", 4);
            case "fp16" -> o.put("model.dtype", "float16");
            case "data-parallel" -> o.putAll(Map.of("model.device", "cpu,cpu", "train.parallel", "data"));
            case "layers-checkpointed" -> o.putAll(Map.of("model.device", "cpu,cpu", "train.parallel", "layers",
                    "train.checkpoint_layers", 1));
            default -> { }
        }
        TrainConfig c = TrainerTest.small(tmp.resolve(setting), o);
        // fp16: 6 mini-batches, so that updates apply once the dynamic loss scale has come down from its first overflows
        int mini = setting.equals("fp16") ? 4 : 12;
        VarlenUpdate.Result wide = update(c, new ReferencePass.Sizes(5, 0, true), mini);
        VarlenUpdate.Result rows = update(c, new ReferencePass.Sizes(5, 0, false), mini);
        VarlenUpdate.Result budget = update(c, new ReferencePass.Sizes(5, 150, false), mini);
        // the same token budget with fused attention (model.attention: sdpa) on every packed micro-batch
        Map<String, Object> fused = new HashMap<>(o);
        fused.put("model.attention", "sdpa");
        VarlenUpdate.Result sdpa = update(TrainerTest.small(tmp.resolve(setting + "-sdpa"), fused), new ReferencePass.Sizes(5, 150, false),
                mini);
        double tol0 = setting.equals("fp16") ? 5e-3 : 1e-5; // fp16 (10-bit mantissa) kernels round each shape differently
        for (VarlenUpdate.Result r : new VarlenUpdate.Result[] {rows, budget, sdpa}) {
            // fp16 with fused attention: the kernel rounds its softmax in fp16 where eager takes it in fp32 (one pass:
            // log-probs within 1e-3, gradients within 3e-3, AttentionTest); six loss-scaled Adam updates carry that to a
            // few percent of the gradient norm
            double tol = setting.equals("fp16") && r == sdpa ? 5e-2 : tol0;
            for (String k : wide.loss().keySet()) {
                // clip_fraction counts tokens past the clip range: in fp16 a token's ratio rounded across the boundary
                // moves it by one token in a few hundred (fused attention rounds its softmax in fp16 too)
                assertClose(wide.loss().get(k), r.loss().get(k), k.equals("clip_fraction") && setting.equals("fp16") ? Math.max(2e-2, tol) : tol,
                        setting + " " + k);
            }
            assertClose(wide.gradNorm(), r.gradNorm(), tol, setting + " grad_norm");
            assertEquals(wide.skipped(), r.skipped(), setting);
            assertTrue(wide.skipped() < (setting.equals("fp16") ? 6 : 1), setting + ": " + wide.skipped() + " updates skipped");
            if (setting.equals("fp16") && r == sdpa) {
                // fp16 with fused attention computes another thing (its softmax rounded in fp16, eager's in fp32), not the
                // same sums in another order: six loss-scaled Adam updates carry that into every coordinate, and a
                // coordinate's difference depends on the CPU's fp16 kernels (a rare token's embedding row, a norm weight
                // that moves by one fp16 unit). What must hold is the update as a whole: its difference a small part of it
                // (measured 0.079 on an AVX2 CPU, where the per-coordinate bound failed)
                assertSameUpdate(wide, r, 0.25, setting + " with sdpa");
                continue;
            }
            for (String k : wide.weights().keySet()) {
                float[] a = wide.weights().get(k), b = r.weights().get(k), a0 = wide.before().get(k);
                double scale = 0, diff = 0, moved = 0;
                for (int i = 0; i < a.length; i++) {
                    scale = Math.max(scale, Math.abs(a[i]));
                    diff = Math.max(diff, Math.abs(a[i] - b[i]));
                    moved = Math.max(moved, Math.abs(a[i] - a0[i]));
                }
                assertTrue(diff <= tol * Math.max(scale, 1), setting + " " + k + ": max diff " + diff + " of " + scale);
                // against what the update moved: the groupings' difference must stay a small part of the step itself
                // (a tolerance on the weights alone would pass whatever the update did), plus, in fp16, one unit in
                // the last place of the stored weight (10-bit mantissa: float's ulp × 2^13)
                double ulp = setting.equals("fp16") ? Math.ulp((float) scale) * 8192.0 : 0;
                assertTrue(diff <= 0.1 * moved + ulp + 1e-7, setting + " " + k + ": max diff " + diff + " against a change of "
                        + moved + " (ulp " + ulp + ")");
            }
        }
        assertTrue(sdpa.fusedCalls() > 0 && budget.fusedCalls() == 0, setting + ": fused attention ran " + sdpa.fusedCalls()
                + " times with sdpa, " + budget.fusedCalls() + " with eager");
        // what each computes: the budget packs rows by length, so it pads least
        assertTrue(wide.padding() > rows.padding() && rows.padding() > budget.padding(),
                wide.padding() + " " + rows.padding() + " " + budget.padding());
        if (mini == 12) {
            assertEquals(6, wide.micro()); // 2 mini-batches of 12 rows, 5 + 5 + 2 each
        }
    }

    @Test
    void aTenStepRunWithATokenBudgetFollowsTheFixedRowRun() throws Exception {
        // optim.eps large (near-SGD steps): with 1e-8 Adam's first step turns the rounding noise of zero-gradient
        // coordinates into full steps, the next rollout samples differently, and the runs part for a reason that is
        // not the grouping
        Map<String, Object> o = Map.of("train.max_steps", 10, "checkpoint.every", 0, "rollout.max_new_tokens", 24,
                "optim.eps", 1e-2);
        Path a = tmp.resolve("rows"), b = tmp.resolve("budget");
        TrainerTest.train(TrainerTest.small(a, o), null);
        TrainerTest.train(TrainerTest.small(b, TrainerTest.merge(o, Map.of("train.max_tokens_per_micro_batch", 64))), null);
        List<JsonNode> ma = TrainerTest.stepLines(a), mb = TrainerTest.stepLines(b);
        assertEquals(10, mb.size());
        for (int i = 0; i < 10; i++) {
            // the same samples every step; the update's numbers part only by rounding, which the dynamics then carry on
            for (String k : new String[] {"reward_mean", "response_length"}) {
                assertEquals(ma.get(i).get(k).asDouble(), mb.get(i).get(k).asDouble(), "step " + (i + 1) + " " + k);
            }
            for (String k : new String[] {"loss_total", "grad_norm", "entropy", "kl_k1"}) {
                assertClose(ma.get(i).get(k).asDouble(), mb.get(i).get(k).asDouble(), i == 0 ? 1e-4 : 2e-3, "step " + (i + 1) + " " + k);
            }
            assertTrue(mb.get(i).get("micro_batches").asInt() > ma.get(i).get("micro_batches").asInt(), mb.get(i).toString());
        }
    }
}
