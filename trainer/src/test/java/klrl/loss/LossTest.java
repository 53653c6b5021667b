package klrl.loss;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import klrl.kl.KlEstimator;
import klrl.kl.KlPlacement;
import org.junit.jupiter.api.Test;

/** Aggregations and policy/value losses against hand-computed values. */
class LossTest extends klrl.WithManager {

    NDArray a(double... v) {
        return m.create(v, new Shape(2, v.length / 2));
    }

    // two sequences, width 3: lengths 3 and 1
    final double[] loss = {1, 2, 3, 10, 20, 30};
    final double[] mask = {1, 1, 1, 1, 0, 0};

    @Test
    void aggregationsMatchHandValues() {
        assertEquals((1 + 2 + 3 + 10) / 4.0, Aggregation.TOKEN_MEAN.apply(a(loss), a(mask)).getDouble(), 1e-12);
        assertEquals((6 + 10) / 2.0, Aggregation.SEQ_MEAN_TOKEN_SUM.apply(a(loss), a(mask)).getDouble(), 1e-12);
        assertEquals((2 + 10) / 2.0, Aggregation.SEQ_MEAN_TOKEN_MEAN.apply(a(loss), a(mask)).getDouble(), 1e-12);
        assertEquals((6 + 10) / (2.0 * 3), Aggregation.SEQ_MEAN_TOKEN_SUM_NORM.apply(a(loss), a(mask)).getDouble(), 1e-12);
    }

    LossConfig cfg(double lo, double hi, Double dual) {
        return new LossConfig(Aggregation.TOKEN_MEAN, lo, hi, dual, new KlEstimator.K1(), new KlPlacement.None(), 0, true, 0, null, 0);
    }

    /** One token per case: ratio r = e^(logp − old), advantage A; returns [loss value, d loss / d logp]. */
    double[] ppo(double logRatio, double adv, LossConfig c) {
        NDArray logp = m.create(new double[] {logRatio}, new Shape(1, 1));
        logp.setRequiresGradient(true);
        double v;
        try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
            TokenBatch b = new TokenBatch(logp, m.zeros(new Shape(1, 1), logp.getDataType()), null,
                    m.create(new double[] {adv}, new Shape(1, 1)), m.ones(new Shape(1, 1), logp.getDataType()),
                    null, null, null, null, null);
            LossTerm.Out o = PolicyLoss.ppoClip(b, c);
            v = o.loss().getDouble();
            gc.backward(o.loss());
        }
        return new double[] {v, logp.getGradient().getDouble()};
    }

    @Test
    void ppoClipCases() {
        LossConfig c = cfg(0.2, 0.28, null);
        double r = Math.exp(0.1); // 1.105: inside [0.8, 1.28]
        assertArrayEquals(new double[] {-2 * r, -2 * r}, ppo(0.1, 2, c), 1e-12);
        r = Math.exp(0.4);        // 1.49 > 1.28 with A > 0: clipped, no gradient
        assertArrayEquals(new double[] {-2 * 1.28, 0}, ppo(0.4, 2, c), 1e-12);
        // A < 0 and r above the ceiling: the unclipped term is larger, gradient flows
        assertArrayEquals(new double[] {2 * r, 2 * r}, ppo(0.4, -2, c), 1e-12);
        r = Math.exp(-0.5);       // 0.61 < 0.8 with A < 0: clipped at 0.8
        assertArrayEquals(new double[] {2 * 0.8, 0}, ppo(-0.5, -2, c), 1e-12);
        // clip-higher: ε_high 0.28 lets r = 1.25 through where symmetric 0.2 would clip
        assertEquals(0, ppo(Math.log(1.25), 1, cfg(0.2, 0.2, null))[1], 1e-12);
        assertEquals(-1.25, ppo(Math.log(1.25), 1, c)[1], 1e-12);
    }

    @Test
    void dualClipBoundsNegativeAdvantageLosses() {
        LossConfig c = cfg(0.2, 0.2, 3.0);
        // A = -1, r = e^2 = 7.39: plain PPO loss 7.39, dual clip caps it at −A·c = 3 with no gradient
        assertArrayEquals(new double[] {3.0, 0}, ppo(2.0, -1, c), 1e-12);
        // r = 2 < c: unchanged
        assertArrayEquals(new double[] {2.0, 2.0}, ppo(Math.log(2), -1, c), 1e-12);
        // positive advantages are never dual-clipped
        assertEquals(-1.2, ppo(2.0, 1, c)[0], 1e-12);
    }

    @Test
    void clipFractionCountsClippedTokens() {
        NDArray logp = m.create(new double[] {0.0, 0.5, -0.5, 0.1}, new Shape(1, 4));
        TokenBatch b = new TokenBatch(logp, m.zeros(new Shape(1, 4), logp.getDataType()), null,
                m.create(new double[] {1, 1, -1, -1}, new Shape(1, 4)), m.ones(new Shape(1, 4), logp.getDataType()),
                null, null, null, null, null);
        LossTerm.Out o = PolicyLoss.ppoClip(b, cfg(0.2, 0.2, null));
        // token 2 (r=1.65, A>0) and token 3 (r=0.61, A<0) are clipped
        assertEquals(0.5, o.metrics().get("clip_fraction"), 1e-12);
        assertEquals(-(0.0 + 0.5 - 0.5 + 0.1) / 4, o.metrics().get("ppo_kl"), 1e-12);
    }

    @Test
    void valueLossClipsLikeVerl() {
        NDArray v = m.create(new double[] {1.0, 0.0}, new Shape(1, 2));
        NDArray old = m.create(new double[] {0.5, 0.0}, new Shape(1, 2));
        NDArray ret = m.create(new double[] {2.0, 1.0}, new Shape(1, 2));
        TokenBatch b = new TokenBatch(null, null, null, null, m.ones(new Shape(1, 2), v.getDataType()), null, null, v, old, ret);
        LossConfig c = new LossConfig(Aggregation.TOKEN_MEAN, 0.2, 0.2, null, new KlEstimator.K1(), new KlPlacement.None(),
                0, true, 0, 0.2, 1.0);
        LossTerm.Out o = ValueLoss.apply(b, c);
        // token 0: (1−2)² = 1 vs clipped v=0.7: (0.7−2)² = 1.69 → 1.69; token 1: (0−1)² = 1 both
        assertEquals(0.5 * (1.69 + 1) / 2, o.loss().getDouble(), 1e-8); // ε is a float32 constant
        assertEquals(0.5, o.metrics().get("value_clip_fraction"), 1e-12);
    }

    @Test
    void klMetricsAreK1K3AndForward() {
        NDArray lp = m.create(new double[] {-0.5, -2.0}, new Shape(1, 2));
        NDArray ref = m.create(new double[] {-1.0, -1.0}, new Shape(1, 2));
        var met = KlLoss.metrics(lp, ref, m.ones(new Shape(1, 2), lp.getDataType()));
        assertEquals((0.5 - 1.0) / 2, met.get("kl_k1"), 1e-12);
        assertEquals(((Math.exp(-0.5) - 1 + 0.5) + (Math.exp(1) - 1 - 1)) / 2, met.get("kl_k3"), 1e-12);
        // ρ log ρ with ρ = π_ref/π: e^{-0.5}·(−0.5) and e^{1}·1
        assertEquals((Math.exp(-0.5) * -0.5 + Math.exp(1)) / 2, met.get("kl_forward"), 1e-12);
    }
}
