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

/**
 * GSPO's sequence-level loss and TRL's two-sided clip, against hand-worked values and against the
 * formulas as verl (core_algos.compute_policy_loss_gspo) and TRL (GRPOTrainer._compute_loss with
 * importance_sampling_level="sequence", and its delta) write them, re-computed here in plain doubles.
 */
class RecipeLossTest extends klrl.WithManager {

    static LossConfig gspo(double lo, double hi) {
        return new LossConfig(Aggregation.SEQ_MEAN_TOKEN_MEAN, lo, hi, null, new KlEstimator.K1(), new KlPlacement.None(), 0, true,
                0, null, 0, PolicyLoss.Kind.GSPO);
    }

    /** GSPO over rows of log-ratios (logp − old, old = 0) and advantages; returns {loss, ∂loss/∂logp per token}. */
    double[][] gspoRun(double[][] logRatio, double[] adv, double[][] mask, LossConfig c) {
        int b = logRatio.length, t = logRatio[0].length;
        double[] lr = new double[b * t], am = new double[b * t], mk = new double[b * t];
        for (int i = 0; i < b; i++) {
            for (int k = 0; k < t; k++) {
                lr[i * t + k] = logRatio[i][k];
                am[i * t + k] = adv[i];
                mk[i * t + k] = mask[i][k];
            }
        }
        NDArray logp = m.create(lr, new Shape(b, t));
        logp.setRequiresGradient(true);
        double v;
        try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
            TokenBatch tb = new TokenBatch(logp, m.zeros(new Shape(b, t), logp.getDataType()), null, m.create(am, new Shape(b, t)),
                    m.create(mk, new Shape(b, t)), null, null, null, null, null);
            LossTerm.Out o = c.policyLoss().term.apply(tb, c);
            v = o.loss().getDouble();
            gc.backward(o.loss());
        }
        return new double[][] {{v}, logp.getGradient().toDoubleArray()};
    }

    @Test
    void gspoHandWorked() {
        // one sequence of 2 tokens, log-ratios 0.1 and 0.3: s = e^0.2 = 1.2214 (inside [0.8, 1.28]), A = 2;
        // every token's loss −A·s, averaged over the sequence: −2·1.2214; ∂/∂logp_t = −A·s/|y| = −1.2214
        double s = Math.exp(0.2);
        double[][] r = gspoRun(new double[][] {{0.1, 0.3}}, new double[] {2}, new double[][] {{1, 1}}, gspo(0.2, 0.28));
        assertEquals(-2 * s, r[0][0], 1e-12);
        assertArrayEquals(new double[] {-s, -s}, r[1], 1e-12);
        // log-ratios 0.4, 0.4: s = e^0.4 = 1.49 > 1.28 with A > 0: clipped at 1.28, no gradient
        r = gspoRun(new double[][] {{0.4, 0.4}}, new double[] {1}, new double[][] {{1, 1}}, gspo(0.2, 0.28));
        assertEquals(-1.28, r[0][0], 1e-12);
        assertArrayEquals(new double[] {0, 0}, r[1], 1e-12);
        // a padded token neither enters the sequence ratio nor gets a gradient: s = e^0.1
        r = gspoRun(new double[][] {{0.1, 5.0}}, new double[] {-1}, new double[][] {{1, 0}}, gspo(0.2, 0.28));
        assertEquals(Math.exp(0.1), r[0][0], 1e-12);
        assertArrayEquals(new double[] {Math.exp(0.1), 0}, r[1], 1e-12);
    }

    /** verl's compute_policy_loss_gspo and TRL's sequence-level GRPO loss, in doubles: {loss, gradient}. */
    static double[][] reference(double[][] lr, double[] adv, double[][] mask, double lo, double hi, boolean trl) {
        int b = lr.length, t = lr[0].length;
        double loss = 0;
        double[] grad = new double[b * t];
        for (int i = 0; i < b; i++) {
            double len = 0, sum = 0;
            for (int k = 0; k < t; k++) {
                len += mask[i][k];
                sum += lr[i][k] * mask[i][k];
            }
            len = Math.max(len, 1);
            double s = Math.exp(Math.min(sum / len, 10)); // verl caps log s at 10
            if (trl) {
                s = Math.exp(sum / len); // TRL: coef_1 = exp(mean log-ratio) as one value per sequence
            }
            double clipped = Math.min(Math.max(s, 1 - lo), 1 + hi);
            boolean unclippedWins = -adv[i] * s >= -adv[i] * clipped; // max(pg1, pg2) (verl) = −min(A·s, A·clip(s)) (TRL)
            double perToken = unclippedWins ? -adv[i] * s : -adv[i] * clipped;
            // seq-mean-token-mean (verl, forced for GSPO); TRL's grpo loss_type: (Σ_t ℓ·m)/Σm, then mean over sequences
            loss += perToken / b;
            for (int k = 0; k < t; k++) {
                // d s / d logp_t = s · (m_t / |y|) in both: verl's straight-through form, TRL's mean inside exp
                grad[i * t + k] = unclippedWins ? -adv[i] * s * mask[i][k] / len / b : 0;
            }
        }
        return new double[][] {{loss}, grad};
    }

    @Test
    void gspoMatchesVerlAndTrl() {
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(7);
        for (int trial = 0; trial < 20; trial++) {
            int b = 3, t = 5;
            double[][] lr = new double[b][t], mask = new double[b][t];
            double[] adv = new double[b];
            for (int i = 0; i < b; i++) {
                int len = 1 + rnd.nextInt(t);
                adv[i] = rnd.nextDouble() * 4 - 2;
                for (int k = 0; k < t; k++) {
                    lr[i][k] = rnd.nextDouble() * 0.8 - 0.4;
                    mask[i][k] = k < len ? 1 : 0;
                }
            }
            double[][] mine = gspoRun(lr, adv, mask, gspo(0.2, 0.28));
            for (boolean trl : new boolean[] {false, true}) {
                double[][] ref = reference(lr, adv, mask, 0.2, 0.28, trl);
                assertEquals(ref[0][0], mine[0][0], 1e-12, (trl ? "TRL" : "verl") + " loss, trial " + trial);
                assertArrayEquals(ref[1], mine[1], 1e-12, (trl ? "TRL" : "verl") + " gradient, trial " + trial);
            }
        }
    }

    /**
     * TRL's two-sided clipping (GRPOConfig.delta): coef_1 = min(r, δ) inside −min(coef_1·A, clip(r)·A).
     * For δ ≥ 1 + ε_high it is verl's dual clip with c = δ (clip_ratio_c): the same loss and gradient
     * for every ratio and sign of the advantage, so the trainer has one key for both.
     */
    @Test
    void trlDeltaIsDualClip() {
        double lo = 0.2, hi = 0.28, delta = 3.0;
        LossConfig dual = new LossConfig(Aggregation.TOKEN_MEAN, lo, hi, delta, new KlEstimator.K1(), new KlPlacement.None(), 0, true,
                0, null, 0);
        for (double logR = -2; logR <= 2.0001; logR += 0.05) {
            for (double adv : new double[] {-1.5, -0.3, 0.7, 2}) {
                NDArray logp = m.create(new double[] {logR}, new Shape(1, 1));
                logp.setRequiresGradient(true);
                double v;
                try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                    TokenBatch tb = new TokenBatch(logp, m.zeros(new Shape(1, 1), logp.getDataType()), null,
                            m.create(new double[] {adv}, new Shape(1, 1)), m.ones(new Shape(1, 1), logp.getDataType()),
                            null, null, null, null, null);
                    LossTerm.Out o = PolicyLoss.ppoClip(tb, dual);
                    v = o.loss().getDouble();
                    gc.backward(o.loss());
                }
                double r = Math.exp(logR), coef1 = Math.min(r, delta), coef2 = Math.min(Math.max(r, 1 - lo), 1 + hi);
                double trl = -Math.min(coef1 * adv, coef2 * adv);
                // TRL's gradient in logp: only through whichever of coef_1 (when r < δ) or coef_2 (inside the clip range) is taken
                double g = coef1 * adv <= coef2 * adv ? (r < delta ? -adv * r : 0) : (r > 1 - lo && r < 1 + hi ? -adv * r : 0);
                assertEquals(trl, v, 1e-12, "loss at r=" + r + ", A=" + adv);
                assertEquals(g, logp.getGradient().getDouble(), 1e-12, "gradient at r=" + r + ", A=" + adv);
            }
        }
    }
}
