package klrl.kl;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import klrl.util.UserError;
import org.junit.jupiter.api.Test;

/** Estimators and placements against values computed by hand in plain doubles. */
class KlMathTest extends klrl.WithManager {

    NDArray arr(double[] v) {
        return m.create(v, new Shape(1, v.length));
    }

    static final double[] LOGP = {-0.5, -2.0, -1.0, -30.0};
    static final double[] REF = {-1.0, -1.0, -1.0, -1.0};

    @Test
    void estimatorsMatchTheirFormulas() {
        double[] k1 = new double[4], k2 = new double[4], k3 = new double[4], abs = new double[4];
        for (int i = 0; i < 4; i++) {
            double d = LOGP[i] - REF[i];
            k1[i] = d;
            k2[i] = d * d / 2;
            k3[i] = Math.exp(-d) - 1 + d;
            abs[i] = Math.abs(d);
        }
        assertArrayEquals(new double[] {0.5, -1.0, 0.0, -29.0}, k1, 0);
        assertArrayEquals(k1, KlEstimator.parse("k1").perToken(arr(LOGP), arr(REF), null, false).toDoubleArray(), 1e-12);
        assertArrayEquals(k2, KlEstimator.parse("k2").perToken(arr(LOGP), arr(REF), null, false).toDoubleArray(), 1e-12);
        assertArrayEquals(k3, KlEstimator.parse("k3").perToken(arr(LOGP), arr(REF), null, false).toDoubleArray(), 1e-9);
        assertArrayEquals(abs, KlEstimator.parse("abs").perToken(arr(LOGP), arr(REF), null, false).toDoubleArray(), 1e-12);
        // k3 at d = 0.5: e^-0.5 - 1 + 0.5 = 0.10653...
        assertEquals(0.1065306597126334, k3[0], 1e-15);
    }

    @Test
    void k3SafeguardsClampLikeVerl() {
        double[] got = KlEstimator.parse("low_var_kl").perToken(arr(LOGP), arr(REF), null, true).toDoubleArray();
        // d = -29: -d clamps to 20 → e^20 - 20 - 1 ≈ 4.85e8, then the result clamps to 10
        assertEquals(10.0, got[3], 0);
        assertEquals(Math.exp(-0.5) - 1 + 0.5, got[0], 1e-12);
    }

    @Test
    void fullUsesTheExactPerTokenKl() {
        NDArray full = arr(new double[] {0.1, 0.2, 0.3, 0.4});
        assertArrayEquals(full.toDoubleArray(), KlEstimator.parse("full").perToken(arr(LOGP), arr(REF), full, true).toDoubleArray());
        assertThrows(IllegalStateException.class, () -> KlEstimator.parse("full").perToken(arr(LOGP), arr(REF), null, true));
    }

    @Test
    void unknownNamesListTheValidOnes() {
        UserError e = assertThrows(UserError.class, () -> KlEstimator.parse("k3+"));
        assertTrue(e.getMessage().contains("'k3+'") && e.getMessage().contains("k1, k2, k3, abs, full"), e.getMessage());
        UserError p = assertThrows(UserError.class, () -> KlPlacement.parse("in-loss"));
        assertTrue(p.getMessage().contains("reward, loss, loss-unbiased, none"), p.getMessage());
    }

    @Test
    void rewardPlacementSubtractsBetaTimesDetachedKOnResponseTokens() {
        NDArray scores = arr(new double[] {0, 0, 0, 1});
        NDArray k = arr(new double[] {0.5, -1, 2, 4});
        NDArray mask = arr(new double[] {1, 1, 1, 0});
        double[] got = new KlPlacement.Reward().shapeRewards(scores, k, mask, 0.1).toDoubleArray();
        assertArrayEquals(new double[] {-0.05, 0.1, -0.2, 1.0}, got, 1e-7);
        assertNull(new KlPlacement.Reward().loss(k, k, mask, mask, 0.1));
        assertArrayEquals(scores.toDoubleArray(), new KlPlacement.Loss().shapeRewards(scores, k, mask, 0.1).toDoubleArray());
    }

    @Test
    void lossPlacementsValuesAndGradients() {
        // two sequences of 2 tokens, weights 1 (sequence-summed): k = d (k1)
        double[] lp = {-0.5, -1.5, -2.0, -0.25};
        double[] ref = {-1.0, -1.0, -1.0, -1.0};
        double[] mask = {1, 1, 1, 0};
        double beta = 0.5;
        for (String pl : new String[] {"loss", "loss-unbiased"}) {
            NDArray logp = m.create(lp, new Shape(2, 2));
            logp.setRequiresGradient(true);
            NDArray refA = m.create(ref, new Shape(2, 2)), maskA = m.create(mask, new Shape(2, 2));
            double value;
            try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                NDArray k = new KlEstimator.K1().perToken(logp, refA, null, false);
                NDArray loss = KlPlacement.parse(pl).loss(k, logp, maskA, maskA, beta);
                value = loss.getDouble();
                gc.backward(loss);
            }
            double[] g = logp.getGradient().toDoubleArray();
            // hand computation: K_b = Σ_t m·d; in-loss = β Σ_b K_b, ∂/∂lp = β·m
            double k0 = 0.5 + -0.5, k1 = -1.0;
            if (pl.equals("loss")) {
                assertEquals(beta * (k0 + k1), value, 1e-12);
                assertArrayEquals(new double[] {0.5, 0.5, 0.5, 0}, g, 1e-12);
            } else {
                // + β Σ_b sg(K_b)·Σ_t m·lp: value adds β(K_0·(-2) + K_1·(-2)); gradient adds β·K_b·m
                double lp0 = -0.5 - 1.5, lp1 = -2.0;
                assertEquals(beta * (k0 + k1) + beta * (k0 * lp0 + k1 * lp1), value, 1e-12);
                assertArrayEquals(new double[] {0.5 + 0.5 * k0, 0.5 + 0.5 * k0, 0.5 + 0.5 * k1, 0}, g, 1e-12);
            }
        }
    }

    @Test
    void adaptiveControllerFollowsZiegler() {
        KlController fixed = new KlController(0.1, null, 0);
        fixed.update(5.0, 64);
        assertEquals(0.1, fixed.value(), 0);
        KlController c = new KlController(0.1, 0.02, 1000);
        c.update(0.03, 100); // error 0.5 → clipped 0.2: β·(1 + 0.2·100/1000)
        assertEquals(0.1 * 1.02, c.value(), 1e-15);
        c.update(0.019, 50); // error -0.05: ×(1 − 0.05·0.05)
        assertEquals(0.1 * 1.02 * (1 - 0.05 * 50 / 1000.0), c.value(), 1e-12);
        assertThrows(UserError.class, () -> new KlController(-1, null, 0));
    }
}
