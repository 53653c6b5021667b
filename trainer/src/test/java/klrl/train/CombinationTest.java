package klrl.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BiPredicate;
import java.util.stream.Stream;
import klrl.rollout.remote.StandInServer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The options users combine, tested pairwise: a covering array in which every pair of values of any
 * two options appears in at least one case, each case a real 2-step run of the tiny model on CPU
 * devices, then resumed from its checkpoint for a third step. A pair the config refuses is listed in
 * {@link #REFUSED} and checked to be refused at start in one line naming both keys.
 */
@Tag("e2e")
class CombinationTest {
    @TempDir Path tmp;

    @BeforeAll
    static void model() throws Exception {
        TrainerTest.model();
    }

    /** One option: its name and its values, each value the config keys it sets. */
    record Factor(String name, Map<String, Map<String, Object>> values) {}

    static final List<Factor> FACTORS = List.of(
            new Factor("algorithm", values(
                    "grpo", Map.of("algorithm.name", "grpo"),
                    "ppo", Map.of("algorithm.name", "ppo"),
                    "ppo-separate-critic", Map.of("algorithm.name", "ppo", "model.critic", "separate"),
                    "rloo", Map.of("algorithm.name", "rloo"),
                    "reinforce++", Map.of("algorithm.name", "reinforce++"))),
            new Factor("estimator", values(
                    "k1", Map.of("kl.estimator", "k1"), "k2", Map.of("kl.estimator", "k2"), "k3", Map.of("kl.estimator", "k3"),
                    "abs", Map.of("kl.estimator", "abs"), "full", Map.of("kl.estimator", "full"))),
            new Factor("placement", values(
                    "reward", Map.of("kl.placement", "reward"), "loss", Map.of("kl.placement", "loss"),
                    "loss-unbiased", Map.of("kl.placement", "loss-unbiased"), "none", Map.of("kl.placement", "none"))),
            new Factor("parallel", values(
                    "one-device", Map.of(),
                    "data", Map.of("model.device", "cpu,cpu", "train.parallel", "data"),
                    "layers", Map.of("model.device", "cpu,cpu", "train.parallel", "layers"))),
            new Factor("rollout", values("local", Map.of(), "sglang", Map.of("rollout.engine", "sglang"),
                    "vllm", Map.of("rollout.engine", "vllm"))),
            new Factor("tuning", values("full", Map.of(), "lora", Map.of("model.lora.rank", 4))),
            new Factor("dtype", values("fp32", Map.of(), "fp16", Map.of("model.dtype", "float16"))),
            new Factor("checkpointing", values("off", Map.of(), "every-layer", Map.of("train.checkpoint_layers", 1))),
            new Factor("lag", values("0", Map.of(), "1", Map.of("algorithm.off_policy_lag", 1),
                    "1-overlapped", Map.of("algorithm.off_policy_lag", 1, "rollout.devices", "cpu", "rollout.overlap", true))),
            // the output head whole, or in chunks of 4 response tokens (every micro-batch spans several)
            new Factor("head", values("whole", Map.of("model.head_chunk_tokens", 0), "chunked", Map.of("model.head_chunk_tokens", 4))),
            // the rollout correction: the engine's default (none locally, token weights with servers), token weights and
            // rejection against a hotter sampler (weights far from 1), sequence weights with geometric rejection
            new Factor("correction", values("default", Map.of(),
                    "token-hot-sampler", Map.of("algorithm.rollout_correction.is", "token", "algorithm.rollout_correction.rs", "token",
                            "rollout.sampler_temperature", 1.3),
                    "sequence", Map.of("algorithm.rollout_correction.is", "sequence", "algorithm.rollout_correction.rs", "geometric",
                            "algorithm.rollout_correction.rs_threshold", 1.5))));

    /** Pairs the config refuses at start: (factor=value, factor=value). */
    static final List<String[]> REFUSED = List.<String[]>of(new String[] {"algorithm=ppo-separate-critic", "parallel=layers"});

    private static Map<String, Map<String, Object>> values(Object... kv) {
        Map<String, Map<String, Object>> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            @SuppressWarnings("unchecked") Map<String, Object> v = (Map<String, Object>) kv[i + 1];
            m.put((String) kv[i], v);
        }
        return m;
    }

    static boolean refused(int fa, String a, int fb, String b) {
        String x = FACTORS.get(fa).name() + "=" + a, y = FACTORS.get(fb).name() + "=" + b;
        return REFUSED.stream().anyMatch(p -> (p[0].equals(x) && p[1].equals(y)) || (p[0].equals(y) && p[1].equals(x)));
    }

    /**
     * A pairwise covering array, built greedily (AETG-style, deterministic): each new case starts from
     * an uncovered pair and fills the other factors with the value that covers most uncovered pairs,
     * never choosing a refused pair.
     */
    static List<String[]> coveringArray(List<Factor> fs, BiPredicate<int[], String[]> allowed) {
        int n = fs.size();
        List<List<String>> vals = fs.stream().map(f -> List.copyOf(f.values().keySet())).toList();
        java.util.Set<String> uncovered = new java.util.LinkedHashSet<>();
        for (int a = 0; a < n; a++) {
            for (int b = a + 1; b < n; b++) {
                for (String va : vals.get(a)) {
                    for (String vb : vals.get(b)) {
                        if (!refused(a, va, b, vb)) {
                            uncovered.add(a + "=" + va + "|" + b + "=" + vb);
                        }
                    }
                }
            }
        }
        List<String[]> cases = new ArrayList<>();
        while (!uncovered.isEmpty()) {
            String[] seed = uncovered.iterator().next().split("\\|");
            String[] c = new String[n];
            for (String s : seed) {
                String[] fv = s.split("=", 2);
                c[Integer.parseInt(fv[0])] = fv[1];
            }
            for (int f = 0; f < n; f++) {
                if (c[f] != null) {
                    continue;
                }
                String best = null;
                int bestGain = -1;
                for (String v : vals.get(f)) {
                    c[f] = v;
                    if (!allowed.test(new int[] {f}, c)) {
                        continue;
                    }
                    int gain = 0;
                    for (int g = 0; g < n; g++) {
                        if (g != f && c[g] != null) {
                            gain += uncovered.contains(key(Math.min(f, g), c[Math.min(f, g)], Math.max(f, g), c[Math.max(f, g)])) ? 1 : 0;
                        }
                    }
                    if (gain > bestGain) {
                        bestGain = gain;
                        best = v;
                    }
                }
                c[f] = best;
            }
            for (int a = 0; a < n; a++) {
                for (int b = a + 1; b < n; b++) {
                    uncovered.remove(key(a, c[a], b, c[b]));
                }
            }
            cases.add(c);
        }
        return cases;
    }

    private static String key(int a, String va, int b, String vb) {
        return a + "=" + va + "|" + b + "=" + vb;
    }

    /** No chosen value of factor f[0] forms a refused pair with any other chosen value. */
    static boolean allowed(int[] f, String[] c) {
        for (int g = 0; g < c.length; g++) {
            if (g != f[0] && c[g] != null && refused(f[0], c[f[0]], g, c[g])) {
                return false;
            }
        }
        return true;
    }

    static Stream<String> cases() {
        return coveringArray(FACTORS, CombinationTest::allowed).stream().map(c -> String.join(" ", c));
    }

    @Test
    void theCasesCoverEveryAllowedPair() {
        List<String[]> cs = coveringArray(FACTORS, CombinationTest::allowed);
        for (int a = 0; a < FACTORS.size(); a++) {
            for (int b = a + 1; b < FACTORS.size(); b++) {
                for (String va : FACTORS.get(a).values().keySet()) {
                    for (String vb : FACTORS.get(b).values().keySet()) {
                        int fa = a, fb = b;
                        boolean covered = cs.stream().anyMatch(c -> c[fa].equals(va) && c[fb].equals(vb));
                        assertEquals(!refused(a, va, b, vb), covered, FACTORS.get(a).name() + "=" + va + ", "
                                + FACTORS.get(b).name() + "=" + vb);
                    }
                }
            }
        }
        assertTrue(cs.size() < 40, cs.size() + " cases");
    }

    /** The case's config: a small run (2 prompts × 4 samples a step, 2 updates, micro-batches of 3 rows). */
    Map<String, Object> config(String[] c, Path out, List<StandInServer> servers) {
        Map<String, Object> o = new HashMap<>(Map.of("train.max_steps", 2, "train.batch_size", 2, "train.mini_batch_size", 1,
                "train.micro_batch_size", 3, "checkpoint.every", 1, "kl.coef", 0.05));
        for (int f = 0; f < c.length; f++) {
            o.putAll(FACTORS.get(f).values().get(c[f]));
        }
        if (!"local".equals(c[4])) {
            o.put("rollout.urls", servers.stream().map(StandInServer::url).toList());
            o.put("rollout.weights_dir", out.resolveSibling(out.getFileName() + "-weights").toString());
        }
        return o;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void trainsAndResumes(String name) throws Exception {
        String[] c = name.split(" ");
        Path run = tmp.resolve("run");
        List<StandInServer> servers = new ArrayList<>();
        try {
            if (!c[4].equals("local")) {
                servers.add(new StandInServer(c[4].equals("sglang") ? StandInServer.Kind.SGLANG : StandInServer.Kind.VLLM,
                        TrainerTest.base));
            }
            Map<String, Object> o = config(c, run, servers);
            TrainerTest.train(TrainerTest.small(run, o), null);
            o.put("train.max_steps", 3);
            TrainerTest.train(TrainerTest.small(run, o), run);
        } finally {
            for (StandInServer s : servers) {
                s.close();
            }
        }
        List<JsonNode> steps = TrainerTest.stepLines(run);
        assertEquals(3, steps.size(), name);
        int applied = 0;
        for (JsonNode s : steps) {
            for (String k : new String[] {"reward_mean", "kl_k1", "kl_k3"}) {
                assertTrue(Double.isFinite(s.get(k).asDouble()), name + ": " + s);
            }
            if (s.has("loss_total")) {
                int skipped = s.get("skipped_updates").asInt();
                assertTrue(Double.isFinite(s.get("loss_total").asDouble()) && (skipped > 0 || Double.isFinite(s.get("grad_norm").asDouble())),
                        name + ": " + s);
                // fp16's dynamic loss scale may skip updates while it halves down from 2^16 (an overflow each); fp32 never
                assertTrue(skipped <= (c[6].equals("fp16") ? 2 : 0), name + ": " + s);
                applied += 2 - skipped;
            }
        }
        assertTrue(applied > 0, name + ": no update applied");
        // the correction reached the trained steps: weights (or rejection) logged wherever one is in effect
        int corr = FACTORS.indexOf(FACTORS.stream().filter(f -> f.name().equals("correction")).findFirst().orElseThrow());
        boolean corrected = !c[corr].equals("default") || !c[4].equals("local");
        for (JsonNode s : steps) {
            if (s.has("loss_total")) {
                assertEquals(corrected, s.has("rollout_is_mean"), name + ": " + s);
                assertEquals(!c[corr].equals("default"), s.has("rollout_rs_masked_fraction"), name + ": " + s);
            }
        }
        if (c[corr].equals("token-hot-sampler")) { // a sampler at 1.3 against a trainer at 1.0: weights away from 1
            JsonNode s = steps.get(steps.size() - 1);
            // k3 (never negative, unlike k1's sample mean over a few dozen tokens) of KL(μ‖π_old)
            assertTrue(s.get("rollout_mismatch_kl_k3").asDouble() > 1e-4 && s.get("rollout_is_min").asDouble() < 0.99
                    && s.get("rollout_is_max").asDouble() > 1.01, name + ": " + s);
        }
        // a lag of 1 trains from its second step on
        assertTrue(steps.get(1).has("loss_total"), name + ": " + steps.get(1));
        assertTrue(Files.isDirectory(run.resolve("checkpoints/step-000003")), name);
    }

    @Test
    void refusedPairsAreOneLineErrorsAtStart() {
        for (String[] pair : REFUSED) {
            Map<String, Object> o = new HashMap<>();
            for (String fv : pair) {
                String[] p = fv.split("=", 2);
                o.putAll(FACTORS.stream().filter(f -> f.name().equals(p[0])).findFirst().orElseThrow().values().get(p[1]));
            }
            var e = org.junit.jupiter.api.Assertions.assertThrows(klrl.util.UserError.class,
                    () -> TrainerTest.small(tmp.resolve("refused"), o));
            assertTrue(!e.getMessage().contains("\n") && e.getMessage().contains("model.critic")
                    && e.getMessage().contains("train.parallel"), e.getMessage());
        }
    }
}
