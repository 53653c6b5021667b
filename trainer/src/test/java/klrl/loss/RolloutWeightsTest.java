package klrl.loss;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import klrl.util.UserError;
import org.junit.jupiter.api.Test;

/**
 * The rollout correction's weights from π_old and μ log-probs: token and sequence ratios in log space,
 * truncation from above, rejection of tokens and sequences, what each metric reports, and the config
 * keys that set it (with their defaults by rollout engine).
 */
class RolloutWeightsTest {
    // two rows of width 3: row 0 has three response tokens, row 1 two (its last slot is padding)
    static final float[] MASK = {1, 1, 1, 1, 1, 0};
    static final double[] LOG_RHO = {Math.log(3), Math.log(0.25), Math.log(1.5), Math.log(0.9), Math.log(1.1), 0};

    static float[][] logps() {
        float[] mu = {-1.0f, -2.0f, -0.5f, -3.0f, -0.25f, 0f}, old = new float[6];
        for (int i = 0; i < 6; i++) {
            old[i] = (float) (mu[i] + LOG_RHO[i]);
        }
        return new float[][] {old, mu};
    }

    static RolloutWeights of(RolloutWeights.Mode is, double threshold, RolloutWeights.Reject rs, double lo, double hi) {
        return new RolloutWeights(is, threshold, rs, lo, hi);
    }

    @Test
    void tokenWeightsAreEachTokensRatioTruncatedFromAbove() {
        float[][] lp = logps();
        RolloutWeights.Out o = of(RolloutWeights.Mode.TOKEN, 2.0, RolloutWeights.Reject.NONE, 0.5, 2).apply(lp[0], lp[1], MASK, 2, 3);
        double[] want = {2.0, 0.25, 1.5, 0.9, 1.1, 0};
        for (int i = 0; i < 6; i++) {
            assertEquals(want[i], o.weights()[i], 1e-6, "token " + i);
        }
        Map<String, Double> m = o.metrics();
        assertEquals((2.0 + 0.25 + 1.5 + 0.9 + 1.1) / 5, m.get("rollout_is_mean"), 1e-6);
        assertEquals(0.25, m.get("rollout_is_min"), 1e-6);
        assertEquals(2.0, m.get("rollout_is_max"), 1e-9);
        assertEquals(1 / 5.0, m.get("rollout_is_clipped_fraction"), 1e-12);
        assertFalse(m.containsKey("rollout_rs_masked_fraction"));
    }

    @Test
    void sequenceWeightsAreTheProductOverTheResponseOnEveryToken() {
        float[][] lp = logps();
        RolloutWeights.Out o = of(RolloutWeights.Mode.SEQUENCE, 2.0, RolloutWeights.Reject.NONE, 0.5, 2).apply(lp[0], lp[1], MASK, 2, 3);
        double w0 = Math.min(3 * 0.25 * 1.5, 2.0), w1 = 0.9 * 1.1;
        double[] want = {w0, w0, w0, w1, w1, 0};
        for (int i = 0; i < 6; i++) {
            assertEquals(want[i], o.weights()[i], 1e-6, "token " + i);
        }
        assertEquals((w0 + w1) / 2, o.metrics().get("rollout_is_mean"), 1e-6, "one value per sequence");
        assertEquals(0.0, o.metrics().get("rollout_is_clipped_fraction"));
        // a long sequence's product is formed in log space: 400 tokens of ratio 1.01 (product e^3.98) truncate to 2, none overflow
        float[] old = new float[400], mu = new float[400], mask = new float[400];
        java.util.Arrays.fill(mask, 1);
        java.util.Arrays.fill(old, (float) Math.log(1.01));
        RolloutWeights.Out big = of(RolloutWeights.Mode.SEQUENCE, 2.0, RolloutWeights.Reject.NONE, 0.5, 2).apply(old, mu, mask, 1, 400);
        assertEquals(2.0f, big.weights()[0]);
        assertEquals(1.0, big.metrics().get("rollout_is_clipped_fraction"));
    }

    @Test
    void rejectionZeroesTokensOrWholeSequencesOutsideTheBand() {
        float[][] lp = logps();
        // token: 3 and 0.25 fall outside [0.5, 2]
        float[] w = of(RolloutWeights.Mode.NONE, 2, RolloutWeights.Reject.TOKEN, 0.5, 2).apply(lp[0], lp[1], MASK, 2, 3).weights();
        assertEquals(List.of(0f, 0f, 1f, 1f, 1f, 0f), box(w));
        // sequence: row 0's product 1.125 and row 1's 0.99: a band [1.0, 1.2] rejects row 1 only
        w = of(RolloutWeights.Mode.TOKEN, 2, RolloutWeights.Reject.SEQUENCE, 1.0, 1.2).apply(lp[0], lp[1], MASK, 2, 3).weights();
        assertEquals(0f, w[3]);
        assertEquals(0f, w[4]);
        assertEquals(2.0f, w[0]);
        // geometric: row 0's per-token mean (1.125^(1/3) = 1.040) and row 1's (0.99^(1/2) = 0.995): a band [1.0, 1.05] keeps row 0
        RolloutWeights.Out g = of(RolloutWeights.Mode.NONE, 2, RolloutWeights.Reject.GEOMETRIC, 1.0, 1.05).apply(lp[0], lp[1], MASK, 2, 3);
        assertEquals(List.of(1f, 1f, 1f, 0f, 0f, 0f), box(g.weights()));
        assertEquals(2 / 5.0, g.metrics().get("rollout_rs_masked_fraction"), 1e-12);
        assertFalse(g.metrics().containsKey("rollout_is_mean"), "rejection alone reports no weights");
    }

    @Test
    void theMismatchIsKlOfTheSamplerFromTheTrainer() {
        float[][] lp = logps();
        Map<String, Double> m = RolloutWeights.mismatch(lp[0], lp[1], MASK);
        double k1 = 0, k3 = 0;
        for (int i = 0; i < 5; i++) {
            k1 -= LOG_RHO[i];
            k3 += Math.exp(LOG_RHO[i]) - 1 - LOG_RHO[i];
        }
        assertEquals(k1 / 5, m.get("rollout_mismatch_kl_k1"), 1e-6);
        assertEquals(k3 / 5, m.get("rollout_mismatch_kl_k3"), 1e-6);
    }

    @Test
    void configDefaultsFollowTheEngineAndBadKeysAreNamed() {
        TrainConfig local = ConfigLoader.load(null, Map.of());
        assertFalse(local.rolloutCorrection().active());
        assertFalse(local.recomputesLogprobs());
        TrainConfig server = ConfigLoader.load(null, Map.of(), List.of("rollout.engine=sglang", "rollout.urls=[http://h:30000]",
                "rollout.weights_dir=/w"));
        assertEquals(RolloutWeights.Mode.TOKEN, server.rolloutCorrection().is());
        assertEquals(2.0, server.rolloutCorrection().isThreshold());
        TrainConfig off = ConfigLoader.load(null, Map.of(), List.of("rollout.engine=vllm", "rollout.urls=[http://h:8000]",
                "rollout.weights_dir=/w", "algorithm.rollout_correction.is=none"));
        assertFalse(off.rolloutCorrection().active());
        TrainConfig asked = ConfigLoader.load(null, Map.of(), List.of("algorithm.rollout_correction.is=sequence",
                "algorithm.rollout_correction.rs=geometric", "algorithm.rollout_correction.rs_threshold=1.5"));
        assertTrue(asked.recomputesLogprobs(), "a correction needs π_old beside μ");
        assertEquals(1 / 1.5, asked.rolloutCorrection().rsLower(), 1e-12);
        assertTrue(ConfigLoader.load(null, Map.of(), List.of("rollout.sampler_temperature=1.2")).recomputesLogprobs());
        for (String[] bad : new String[][] {
                {"algorithm.rollout_correction.is_threshold=1.0", "algorithm.rollout_correction.is_threshold must be > 1"},
                {"algorithm.rollout_correction.is=tokens", "algorithm.rollout_correction.is must be none, token or sequence; got 'tokens'"},
                {"algorithm.rollout_correction.rs=seq", "algorithm.rollout_correction.rs must be none, token, sequence or geometric"},
                {"algorithm.rollout_correction.rs_threshold_lower=3", "rs_threshold_lower must be ≥ 0 and below rs_threshold (2.0)"},
                {"rollout.sampler_temperature=0", "rollout.sampler_temperature must be > 0"}}) {
            UserError e = assertThrows(UserError.class, () -> ConfigLoader.load(null, Map.of(), List.of(bad[0])), bad[0]);
            assertTrue(e.getMessage().contains(bad[1]) && !e.getMessage().contains("\n"), e.getMessage());
        }
    }

    private static List<Float> box(float[] a) {
        List<Float> l = new java.util.ArrayList<>();
        for (float f : a) {
            l.add(f);
        }
        return l;
    }
}
