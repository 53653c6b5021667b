package klrl.toy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import klrl.cli.Main;
import klrl.util.Json;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The toy certifies the trainer's KL code: exact expectations by enumeration, checked against
 * closed forms derived by hand and against finite differences in plain Java.
 */
class KlToyTest {
    static NDManager m;
    static KlToy.Spec spec = KlToy.Spec.random(3, 3, 7);
    static KlToy toy = new KlToy(spec);

    @BeforeAll
    static void open() {
        m = NDManager.newBaseManager("PyTorch");
    }

    @AfterAll
    static void close() {
        m.close();
    }

    static double norm(double[] a) {
        return Math.sqrt(KlToy.dot(a, a));
    }

    static double relDiff(double[] a, double[] b) {
        return Math.sqrt(KlToy.sqDist(a, b)) / norm(b);
    }

    @Test
    void unbiasedCombinationsHaveZeroBias() {
        for (String[] c : new String[][] {{"k1", "reward"}, {"k1", "loss-unbiased"}, {"k3", "loss-unbiased"}}) {
            double[][] g = toy.expectedGradient(c[0], c[1], m);
            assertTrue(relDiff(g[0], g[1]) < 1e-9, c[0] + "-in-" + c[1] + " bias " + relDiff(g[0], g[1]));
        }
    }

    @Test
    void k1InLossHasZeroExpectedGradient() {
        double[][] g = toy.expectedGradient("k1", "loss", m);
        assertTrue(norm(g[0]) < 1e-12 * norm(g[1]), "‖E[g]‖ = " + norm(g[0]));
    }

    /**
     * k3 in the loss: ∇k3_t = (1 − π_ref/π)(y_t|h)·∇log π(y_t|h), whose mean over y_t ~ π(·|h) is
     * Σ_v (π(v) − π_ref(v))∇log π(v) = ∇_θ KL(π_ref(·|h) ‖ π(·|h)). So E[g] = Σ_h P_π(h)·∇KL_fwd(h), and
     * for the logits z_h of row h that gradient is softmax(z_h) − softmax(z_ref,h).
     */
    @Test
    void k3InLossIsThePrefixWeightedForwardKlGradient() {
        double[][] g = toy.expectedGradient("k3", "loss", m);
        double[] prefix = toy.prefixProbabilities(g[2]);
        int v = spec.vocab();
        double[] want = new double[toy.rows() * v];
        for (int r = 0; r < toy.rows(); r++) {
            double[] p = softmax(spec.policy()[r]), q = softmax(spec.reference()[r]);
            for (int j = 0; j < v; j++) {
                want[r * v + j] = prefix[r] * (p[j] - q[j]);
            }
        }
        assertTrue(relDiff(g[0], want) < 1e-9, "k3-in-loss ≠ prefix-weighted forward-KL gradient: " + relDiff(g[0], want));
        assertTrue(relDiff(g[0], g[1]) > 0.05, "and it differs from the reverse-KL gradient");
        assertEquals(1.0, prefix[0], 1e-12);
    }

    static double[] softmax(double[] z) {
        double mx = Double.NEGATIVE_INFINITY, s = 0;
        for (double x : z) {
            mx = Math.max(mx, x);
        }
        double[] p = new double[z.length];
        for (int i = 0; i < z.length; i++) {
            p[i] = Math.exp(z[i] - mx);
            s += p[i];
        }
        for (int i = 0; i < z.length; i++) {
            p[i] /= s;
        }
        return p;
    }

    /** E_π[f(y)] by enumeration in plain Java, with f = Σ_t of a per-token function of (log π, log π_ref). */
    static double expectation(double[][] pol, double[][] ref, int v, int t, java.util.function.DoubleBinaryOperator perToken) {
        double total = 0;
        int n = (int) Math.pow(v, t);
        for (int s = 0; s < n; s++) {
            int[] y = new int[t];
            int rem = s;
            for (int k = t - 1; k >= 0; k--) {
                y[k] = rem % v;
                rem /= v;
            }
            double logp = 0, f = 0;
            int offset = 0, pow = 1, lex = 0;
            for (int k = 0; k < t; k++) {
                int row = offset + lex;
                double lp = Math.log(softmax(pol[row])[y[k]]), lr = Math.log(softmax(ref[row])[y[k]]);
                logp += lp;
                f += perToken.applyAsDouble(lp, lr);
                lex = lex * v + y[k];
                offset += pow;
                pow *= v;
            }
            total += Math.exp(logp) * f;
        }
        return total;
    }

    @Test
    void exactGradientsAgreeWithFiniteDifferences() {
        double[][] k1 = toy.expectedGradient("k1", "reward", m);
        double[][] k2u = toy.expectedGradient("k2", "loss-unbiased", m);
        int v = spec.vocab(), t = spec.length();
        for (int idx : new int[] {0, 4, 11, 20, 38}) {
            int r = idx / v, j = idx % v;
            double h = 1e-5;
            double[][] plus = deepCopy(spec.policy()), minus = deepCopy(spec.policy());
            plus[r][j] += h;
            minus[r][j] -= h;
            // ∇KL(π‖π_ref)
            java.util.function.DoubleBinaryOperator k1f = (lp, lr) -> lp - lr;
            double fd = (expectation(plus, spec.reference(), v, t, k1f) - expectation(minus, spec.reference(), v, t, k1f)) / (2 * h);
            assertEquals(fd, k1[1][idx], 1e-7, "∇KL at " + idx);
            // k2 in loss-unbiased is unbiased for ∇E[Σ k2], which is not ∇KL
            java.util.function.DoubleBinaryOperator k2f = (lp, lr) -> 0.5 * (lp - lr) * (lp - lr);
            double fd2 = (expectation(plus, spec.reference(), v, t, k2f) - expectation(minus, spec.reference(), v, t, k2f)) / (2 * h);
            assertEquals(fd2, k2u[0][idx], 1e-7, "∇E[Σk2] at " + idx);
        }
        assertTrue(relDiff(k2u[0], k2u[1]) > 0.05, "k2 loss-unbiased should be biased for the KL");
    }

    static double[][] deepCopy(double[][] a) {
        double[][] c = new double[a.length][];
        for (int i = 0; i < a.length; i++) {
            c[i] = a[i].clone();
        }
        return c;
    }

    @Test
    void monteCarloConvergesToTheExactValues() {
        KlToy small = new KlToy(KlToy.Spec.random(2, 3, 3));
        KlToy.Result few = small.run(200, 1, m), many = small.run(40_000, 1, m);
        for (int i = 0; i < many.rows().size(); i++) {
            KlToy.Row f = few.rows().get(i), r = many.rows().get(i);
            // MC error ~ sqrt(variance / N) / ‖∇KL‖
            // (GSPO rows are measured against ∇KL/T: their error is relative to that norm)
            double se = Math.sqrt(r.variance() / 40_000) / (many.gradNorm() * (r.policyLoss().equals("gspo") ? 1.0 / 3 : 1.0));
            assertEquals(r.relativeBias(), r.mcRelativeBias(), 5 * se + 1e-9, r.estimator() + "-" + r.placement());
            assertEquals(r.variance(), r.mcVariance(), 0.1 * r.variance() + 1e-12, "variance " + r.estimator() + "-" + r.placement());
            if (r.relativeBias() < 1e-9) {
                assertTrue(r.mcRelativeBias() < f.mcRelativeBias(), "more samples should shrink the MC error");
            }
        }
    }

    /**
     * GSPO × every KL placement: on-policy its sequence ratio is 1, so each row has the vanilla loss's
     * bias and cosine (against GSPO's own length-normalised objective, ∇KL/T).
     */
    @Test
    void gspoRowsCarryTheVanillaBiasOfEachPlacement() {
        KlToy.Result r = toy.run(0, 0, m);
        assertEquals(18, r.rows().size());
        for (int i = 0; i < 9; i++) {
            KlToy.Row v = r.rows().get(i), g = r.rows().get(i + 9);
            assertEquals("vanilla", v.policyLoss());
            assertEquals("gspo", g.policyLoss());
            assertEquals(v.estimator() + v.placement(), g.estimator() + g.placement());
            assertEquals(v.relativeBias(), g.relativeBias(), 1e-9, g.toString());
            assertEquals(v.cosine(), g.cosine(), 1e-9, g.toString());
        }
        // k1 in the reward stays unbiased under GSPO; k1 in the loss keeps its zero expected gradient (bias 1)
        KlToy.Row reward = r.rows().get(9), loss = r.rows().get(10);
        assertEquals("k1reward", reward.estimator() + reward.placement());
        assertTrue(reward.relativeBias() < 1e-9, reward.toString());
        assertEquals("k1loss", loss.estimator() + loss.placement());
        assertEquals(1.0, loss.relativeBias(), 1e-9, loss.toString());
    }

    @Test
    void commandReadsASpecFileAndPrintsNineRows(@TempDir Path tmp) throws Exception {
        Path f = tmp.resolve("spec.json");
        var o = Json.MAPPER.createObjectNode();
        o.put("vocab", 2);
        o.put("length", 2);
        o.set("policy", Json.MAPPER.valueToTree(new double[][] {{0.5, -0.5}, {1, 0}, {0, 2}}));
        o.set("reference", Json.MAPPER.valueToTree(new double[][] {{0, 0}, {0, 0}, {0, 0}}));
        Files.writeString(f, o.toString());
        var out = new java.io.ByteArrayOutputStream();
        var old = System.out;
        System.setOut(new java.io.PrintStream(out, true));
        int code;
        try {
            code = Main.run("kl-toy", "--spec", f.toString(), "--json");
        } finally {
            System.setOut(old);
        }
        assertEquals(0, code);
        JsonNode j = Json.MAPPER.readTree(out.toString());
        assertEquals(18, j.get("rows").size()); // vanilla and GSPO × 3 estimators × 3 placements
        // hand value: reference uniform everywhere, so KL = Σ π log π + T·log 2
        double[] p0 = softmax(new double[] {0.5, -0.5}), p1 = softmax(new double[] {1, 0}), p2 = softmax(new double[] {0, 2});
        double kl = 0;
        for (int a = 0; a < 2; a++) {
            double[] next = a == 0 ? p1 : p2;
            for (int b = 0; b < 2; b++) {
                double p = p0[a] * next[b];
                kl += p * (Math.log(p) - 2 * Math.log(0.5));
            }
        }
        assertEquals(kl, j.get("kl").asDouble(), 1e-12);
        for (JsonNode row : j.get("rows")) {
            if (row.get("estimator").asText().equals("k1") && row.get("placement").asText().equals("reward")) {
                assertTrue(row.get("relative_bias").asDouble() < 1e-9);
                assertEquals(1.0, row.get("cosine").asDouble(), 1e-9);
            }
        }
    }
}
