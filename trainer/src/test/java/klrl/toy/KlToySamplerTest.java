package klrl.toy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import klrl.cli.InProcess;
import klrl.model.TinyModel;
import klrl.util.Json;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The toy with a sampler μ ≠ π: its rows are the trainer's loss with the trainer's rollout weights, checked
 * against E_μ[…] of the corrections' formulas enumerated in plain Java, and the corrections' known behaviour
 * (a sequence weight restores every on-policy-unbiased row; token weights do part of it).
 */
class KlToySamplerTest {
    static NDManager m;

    @BeforeAll
    static void open() {
        m = NDManager.newBaseManager("PyTorch");
    }

    @AfterAll
    static void close() {
        m.close();
    }

    /** A sampler like another engine's: the policy at temperature 1.3 plus Gaussian noise of std 0.3 on the logits. */
    static KlToy.Spec mismatched(int vocab, int length, long seed) {
        KlToy.Spec s = KlToy.Spec.random(vocab, length, seed);
        SplittableRandom r = new SplittableRandom(seed + 1000);
        double[][] mu = new double[s.policy().length][vocab];
        for (int i = 0; i < mu.length; i++) {
            for (int j = 0; j < vocab; j++) {
                mu[i][j] = s.policy()[i][j] / 1.3 + 0.3 * TinyModel.gaussian(r);
            }
        }
        return s.withSampler(mu);
    }

    /** Per-sequence gradients g(y) of one estimator × placement × correction and the sampler's μ(y), in plain doubles. */
    record Enumerated(double[][] g, double[] mu) {
        double[] mean() {
            double[] out = new double[g[0].length];
            for (int s = 0; s < g.length; s++) {
                for (int i = 0; i < out.length; i++) {
                    out[i] += mu[s] * g[s][i];
                }
            }
            return out;
        }

        double variance() {
            double[] mean = mean();
            double v = 0;
            for (int s = 0; s < g.length; s++) {
                v += mu[s] * KlToy.sqDist(g[s], mean);
            }
            return v;
        }
    }

    /**
     * The formulas, written out for a tabular softmax policy, where ∇_{z_h} log π(y_t|h) = e_{y_t} − softmax(z_h)
     * on the prefix's row h and every estimator's gradient is k'(d_t)·∇log π(y_t|h) (d = log π − log π_ref):
     * k1' = 1, k2' = d, k3' = 1 − e^{−d}. With a_t = 1 (none), w_t (token) or W = Π w_t (sequence), w_t = π/μ:
     * reward g = s(y)·Σ_t a_t ∇log π_t; loss g = Σ_t a_t k'_t ∇log π_t; loss-unbiased their sum.
     */
    static Enumerated enumerate(KlToy.Spec sp, String est, String placement, String corr) {
        int v = sp.vocab(), t = sp.length(), n = (int) Math.pow(v, t);
        double[][] sampler = sp.sampler() != null ? sp.sampler() : sp.policy();
        int dim = sp.policy().length * v;
        double[][] g = new double[n][dim];
        double[] mu = new double[n];
        for (int s = 0; s < n; s++) {
            int[] y = new int[t], row = new int[t];
            int rem = s;
            for (int k = t - 1; k >= 0; k--) {
                y[k] = rem % v;
                rem /= v;
            }
            int offset = 0, pow = 1, lex = 0;
            for (int k = 0; k < t; k++) {
                row[k] = offset + lex;
                lex = lex * v + y[k];
                offset += pow;
                pow *= v;
            }
            double[] lp = new double[t], d = new double[t];
            double sum = 0, logW = 0, logMu = 0;
            for (int k = 0; k < t; k++) {
                lp[k] = Math.log(KlToyTest.softmax(sp.policy()[row[k]])[y[k]]);
                double lm = Math.log(KlToyTest.softmax(sampler[row[k]])[y[k]]);
                d[k] = lp[k] - Math.log(KlToyTest.softmax(sp.reference()[row[k]])[y[k]]);
                sum += switch (est) {
                    case "k1" -> d[k];
                    case "k2" -> 0.5 * d[k] * d[k];
                    default -> Math.exp(-d[k]) - 1 + d[k];
                };
                logW += lp[k] - lm;
                logMu += lm;
            }
            mu[s] = Math.exp(logMu);
            for (int k = 0; k < t; k++) {
                double a = switch (corr) {
                    case "none" -> 1;
                    case "token" -> Math.exp(lp[k] - Math.log(KlToyTest.softmax(sampler[row[k]])[y[k]]));
                    default -> Math.exp(logW);
                };
                double kPrime = switch (est) {
                    case "k1" -> 1;
                    case "k2" -> d[k];
                    default -> 1 - Math.exp(-d[k]);
                };
                double coef = switch (placement) {
                    case "reward" -> sum * a;
                    case "loss" -> a * kPrime;
                    default -> sum * a + a * kPrime;
                };
                double[] p = KlToyTest.softmax(sp.policy()[row[k]]);
                for (int j = 0; j < v; j++) {
                    g[s][row[k] * v + j] += coef * ((j == y[k] ? 1 : 0) - p[j]);
                }
            }
        }
        return new Enumerated(g, mu);
    }

    /** ∇KL(π‖π_ref) = E_π[(log π(y) − log π_ref(y))·∇log π(y)]: the reward row of k1 drawn from π itself. */
    static double[] gradKl(KlToy.Spec sp) {
        return enumerate(sp.withSampler(sp.policy()), "k1", "reward", "none").mean();
    }

    static final List<String> ESTIMATORS = List.of("k1", "k2", "k3"), PLACEMENTS = List.of("reward", "loss", "loss-unbiased"),
            CORRECTIONS = List.of("none", "token", "sequence");

    @Test
    void mismatchRowsMatchAnExactEnumeration() {
        KlToy.Spec sp = mismatched(2, 3, 11);
        KlToy toy = new KlToy(sp);
        double[] kl = gradKl(sp);
        double klNorm = KlToyTest.norm(kl);
        Map<String, KlToy.Row> rows = new HashMap<>();
        KlToy.Result r = toy.run(0, 0, m);
        for (KlToy.Row row : r.rows()) {
            rows.put(row.policyLoss() + row.estimator() + row.placement() + row.correction(), row);
        }
        assertEquals(9 * 3 + 9 * 2, r.rows().size()); // vanilla × 3 corrections, GSPO × none and sequence
        assertEquals(klNorm, r.gradNorm(), 1e-9 * klNorm);
        for (String est : ESTIMATORS) {
            for (String pl : PLACEMENTS) {
                for (String c : CORRECTIONS) {
                    String what = est + "-" + pl + " " + c;
                    Enumerated e = enumerate(sp, est, pl, c);
                    double[] want = e.mean();
                    double[] got = toy.expectedGradient(est, pl, c, m)[0];
                    // relative to ∇KL's size where the expectation itself is 0 (k1 in the loss with token weights)
                    double scale = Math.max(KlToyTest.norm(want), klNorm);
                    assertTrue(Math.sqrt(KlToy.sqDist(got, want)) <= 1e-6 * scale, what + ": " + Math.sqrt(KlToy.sqDist(got, want)) / scale);
                    KlToy.Row row = rows.get("vanilla" + est + pl + c);
                    double bias = Math.sqrt(KlToy.sqDist(want, kl)) / klNorm;
                    assertEquals(bias, row.relativeBias(), 1e-6 * Math.max(bias, 1e-3), what);
                    assertEquals(e.variance(), row.variance(), 1e-6 * e.variance(), what + " variance under μ");
                    if (!c.equals("token")) {
                        // GSPO: every token weighs 1/T and carries the sequence weight, against ∇KL/T: the vanilla bias
                        assertEquals(row.relativeBias(), rows.get("gspo" + est + pl + c).relativeBias(), 1e-9, "gspo " + what);
                    } else {
                        assertFalse(rows.containsKey("gspo" + est + pl + c), "GSPO has no token correction");
                    }
                }
            }
        }
    }

    @Test
    void sequenceWeightsKeepTheOnPolicyUnbiasedRowsUnbiased() {
        KlToy.Spec sp = mismatched(2, 3, 5);
        Map<String, KlToy.Row> onPolicy = new HashMap<>();
        for (KlToy.Row row : new KlToy(new KlToy.Spec(2, 3, sp.policy(), sp.reference())).run(0, 0, m).rows()) {
            onPolicy.put(row.policyLoss() + " " + row.estimator() + "-" + row.placement(), row);
        }
        int unbiased = 0;
        for (KlToy.Row row : new KlToy(sp).run(0, 0, m).rows()) {
            String key = row.policyLoss() + " " + row.estimator() + "-" + row.placement();
            if (onPolicy.get(key).relativeBias() >= 1e-9) {
                continue;
            }
            // E_μ[W·g] = E_π[g]: exactly what the on-policy row estimates; without weights μ's draws bias it
            switch (row.correction()) {
                case "sequence" -> assertTrue(row.relativeBias() <= 1e-9, key + " sequence: " + row.relativeBias());
                case "none" -> assertTrue(row.relativeBias() > 0.01, key + " none: " + row.relativeBias());
                default -> { }
            }
            unbiased += row.correction().equals("sequence") ? 1 : 0;
        }
        assertEquals(6, unbiased, "k1-reward, k1 and k3 loss-unbiased, under vanilla and GSPO");
    }

    /** A sampler like another engine's (V = 3, T = 4): token weights undo part of the bias of k1 in the reward, sequence weights all. */
    @Test
    void tokenWeightsLieBetweenNoneAndSequenceForK1InTheReward() {
        KlToy.Spec sp = mismatched(3, 4, 2);
        KlToy toy = new KlToy(sp);
        Map<String, Double> bias = new HashMap<>();
        for (String c : CORRECTIONS) {
            double[][] g = toy.expectedGradient("k1", "reward", c, m);
            bias.put(c, KlToyTest.relDiff(g[0], g[1]));
        }
        assertTrue(bias.get("sequence") <= 1e-9, bias.toString());
        assertTrue(bias.get("sequence") < bias.get("token") && bias.get("token") < bias.get("none"), bias.toString());
        assertTrue(bias.get("none") > 0.01, bias.toString());
    }

    @Test
    void aSamplerEqualToThePolicyGivesTheOnPolicyRowsForEveryCorrection() {
        KlToy.Spec plain = KlToy.Spec.random(2, 3, 9);
        KlToy.Result before = new KlToy(plain).run(300, 4, m);
        for (KlToy.Row row : before.rows()) {
            assertNull(row.correction(), "no sampler, no correction: " + row);
        }
        assertEquals(18, before.rows().size());
        KlToy.Result same = new KlToy(plain.withSampler(KlToyTest.deepCopy(plain.policy()))).run(300, 4, m);
        Map<String, KlToy.Row> ref = new HashMap<>();
        for (KlToy.Row row : before.rows()) {
            ref.put(row.policyLoss() + row.estimator() + row.placement(), row);
        }
        assertEquals(45, same.rows().size());
        for (KlToy.Row row : same.rows()) {
            KlToy.Row b = ref.get(row.policyLoss() + row.estimator() + row.placement());
            String what = row.toString();
            assertEquals(b.relativeBias(), row.relativeBias(), 1e-12, what);
            assertEquals(b.cosine(), row.cosine(), 1e-12, what);
            assertEquals(b.variance(), row.variance(), 1e-12 * Math.max(1, b.variance()), what);
            assertEquals(b.mcRelativeBias(), row.mcRelativeBias(), 1e-12, what);
            assertEquals(b.mcVariance(), row.mcVariance(), 1e-12 * Math.max(1, b.mcVariance()), what);
        }
    }

    static InProcess.Result cli(String... args) {
        return InProcess.run(args);
    }

    static Path writeSpec(Path f, KlToy.Spec s, double[][] sampler) throws Exception {
        var o = Json.MAPPER.createObjectNode();
        o.put("vocab", s.vocab());
        o.put("length", s.length());
        o.set("policy", Json.MAPPER.valueToTree(s.policy()));
        o.set("reference", Json.MAPPER.valueToTree(s.reference()));
        if (sampler != null) {
            o.set("sampler", Json.MAPPER.valueToTree(sampler));
        }
        Files.writeString(f, o.toString());
        return f;
    }

    @Test
    void samplerTemperatureIsThePolicyOverT(@TempDir Path tmp) throws Exception {
        InProcess.Result hot = cli("kl-toy", "--vocab", "2", "--length", "2", "--seed", "3", "--sampler-temperature", "2", "--json");
        assertEquals(0, hot.code(), hot.err());
        JsonNode h = Json.MAPPER.readTree(hot.out());
        assertEquals("temperature 2", h.get("sampler").asText());
        // the same toy with the sampler written out by hand: logits / 2
        KlToy.Spec drawn = KlToy.Spec.random(2, 2, 3);
        double[][] half = KlToyTest.deepCopy(drawn.policy());
        for (double[] row : half) {
            for (int j = 0; j < row.length; j++) {
                row[j] /= 2;
            }
        }
        InProcess.Result file = cli("kl-toy", "--spec", writeSpec(tmp.resolve("s.json"), drawn, half).toString(), "--json");
        assertEquals(0, file.code(), file.err());
        JsonNode f = Json.MAPPER.readTree(file.out());
        assertEquals("spec", f.get("sampler").asText());
        assertEquals(45, h.get("rows").size());
        for (int i = 0; i < 45; i++) {
            JsonNode a = h.get("rows").get(i), b = f.get("rows").get(i);
            assertEquals(b.get("correction").asText(), a.get("correction").asText());
            assertEquals(b.get("relative_bias").asDouble(), a.get("relative_bias").asDouble(), 1e-12, a.toString());
        }
        // without a sampler: no such fields
        InProcess.Result plain = cli("kl-toy", "--vocab", "2", "--length", "2", "--seed", "3", "--json");
        JsonNode p = Json.MAPPER.readTree(plain.out());
        assertFalse(p.has("sampler"));
        assertFalse(p.get("rows").get(0).has("correction"));
        // the table: a correction column and the rows that stay unbiased
        InProcess.Result table = cli("kl-toy", "--vocab", "2", "--length", "2", "--seed", "3", "--sampler-temperature", "2");
        assertEquals(0, table.code(), table.err());
        assertTrue(table.out().lines().anyMatch(l -> l.startsWith("loss") && l.contains("correction")), table.out());
        String footer = table.out().lines().filter(l -> l.startsWith("unbiased under the sampler")).findFirst().orElse("");
        assertTrue(footer.contains("vanilla k1-reward sequence") && !footer.contains("k1-reward none"), table.out());
    }

    @Test
    void aSpecWithASamplerRefusesSamplerTemperatureAndAWrongShape(@TempDir Path tmp) throws Exception {
        KlToy.Spec drawn = KlToy.Spec.random(2, 2, 3);
        Path withSampler = writeSpec(tmp.resolve("s.json"), drawn, drawn.policy());
        InProcess.Result r = cli("kl-toy", "--spec", withSampler.toString(), "--sampler-temperature", "1.5");
        assertEquals(2, r.code());
        assertEquals("", r.out());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().contains("'sampler'") && r.err().contains("--sampler-temperature"), r.err());

        Path shortSampler = writeSpec(tmp.resolve("short.json"), drawn, new double[][] {{0, 0}, {0, 0}});
        r = cli("kl-toy", "--spec", shortSampler.toString());
        assertEquals(2, r.code());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().contains("'sampler'") && r.err().contains("3 rows"), r.err());

        Path narrow = writeSpec(tmp.resolve("narrow.json"), drawn, new double[][] {{0, 0}, {0}, {0, 0}});
        r = cli("kl-toy", "--spec", narrow.toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("'sampler'") && r.err().contains("2 logits"), r.err());

        Path notATable = tmp.resolve("word.json");
        var word = (com.fasterxml.jackson.databind.node.ObjectNode) Json.MAPPER.readTree(Files.readString(withSampler));
        word.put("sampler", "hot");
        Files.writeString(notATable, word.toString());
        r = cli("kl-toy", "--spec", notATable.toString());
        assertEquals(2, r.code());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().contains("'sampler'") && r.err().contains("list of rows"), r.err());

        r = cli("kl-toy", "--vocab", "2", "--length", "2", "--sampler-temperature", "0");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--sampler-temperature"), r.err());
    }
}
