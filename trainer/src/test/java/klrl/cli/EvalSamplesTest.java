package klrl.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.math.BigInteger;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import klrl.cli.InProcess.Result;
import klrl.rewards.Verifier;
import klrl.util.Json;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** eval --k with --samples-out on the built-in model: every number recomputed from the file it wrote. */
@Tag("e2e")
class EvalSamplesTest {
    @TempDir Path tmp;

    /** pass@k as 1 − C(n−c, k)/C(n, k) in exact integers. */
    static double passAt(int n, int c, int k) {
        BigInteger all = binomial(n, k), none = binomial(n - c, k);
        return 1 - new java.math.BigDecimal(none).divide(new java.math.BigDecimal(all), java.math.MathContext.DECIMAL128).doubleValue();
    }

    static BigInteger binomial(int n, int k) {
        if (k > n) {
            return BigInteger.ZERO;
        }
        BigInteger b = BigInteger.ONE;
        for (int i = 0; i < k; i++) {
            b = b.multiply(BigInteger.valueOf(n - i)).divide(BigInteger.valueOf(i + 1));
        }
        return b;
    }

    /** maj@N as the samples file's reader computes it: most votes among answers, a class right as its first sample, ties split. */
    static double majority(JsonNode line) {
        Map<Integer, Integer> votes = new HashMap<>();
        Map<Integer, Boolean> right = new HashMap<>();
        for (int j = 0; j < line.get("answer_classes").size(); j++) {
            JsonNode c = line.get("answer_classes").get(j);
            if (!c.isNull()) {
                votes.merge(c.asInt(), 1, Integer::sum);
                right.putIfAbsent(c.asInt(), line.get("correct").get(j).asBoolean());
            }
        }
        int top = votes.values().stream().max(Integer::compare).orElse(0);
        List<Integer> tied = votes.keySet().stream().filter(c -> votes.get(c) == top).toList();
        return tied.isEmpty() ? 0 : tied.stream().filter(right::get).count() / (double) tied.size();
    }

    /** greedy, mean@k, pass@1…k, maj@k of some lines of the samples file. */
    static double[] recompute(List<JsonNode> lines, int k) {
        double[] r = new double[3 + k];
        for (JsonNode l : lines) {
            int c = 0;
            for (JsonNode b : l.get("correct")) {
                c += b.asBoolean() ? 1 : 0;
            }
            r[0] += l.get("greedy_correct").asBoolean() ? 1 : 0;
            r[1] += c;
            for (int j = 1; j <= k; j++) {
                r[1 + j] += passAt(k, c, j);
            }
            r[2 + k] += majority(l);
        }
        r[1] /= k;
        for (int i = 0; i < r.length; i++) {
            r[i] /= lines.size();
        }
        return r;
    }

    static void assertNumbers(double[] expected, JsonNode got, int k) {
        assertEquals(expected[0], got.get("eval_accuracy").asDouble(), 1e-12);
        assertEquals(expected[1], got.get("eval_mean_at_k").asDouble(), 1e-12);
        for (int j = 1; j <= k; j++) {
            assertEquals(expected[1 + j], got.get("eval_pass_at").get(Integer.toString(j)).asDouble(), 1e-12, "pass@" + j);
        }
        assertEquals(expected[2 + k], got.get("eval_maj_at_k").asDouble(), 1e-12);
    }

    @Test
    void passAtKMajAtKAndMeanAtKAreRecomputedExactlyFromTheSamplesFile() throws Exception {
        Path model = klrl.run.TinyDefault.ensure(s -> { });
        List<String> rows = Files.readAllLines(Path.of(getClass().getResource("/data/arith-test.jsonl").toURI())).subList(0, 24);
        StringBuilder data = new StringBuilder();
        for (int i = 0; i < rows.size(); i++) { // two sources, three levels, as verl and MATH rows carry them
            JsonNode r = Json.MAPPER.readTree(rows.get(i));
            data.append(Json.write(Map.of("question", r.get("question").asText(), "answer", r.get("answer").asText(),
                    "data_source", i % 2 == 0 ? "sums-a" : "sums-b", "level", "Level " + (1 + i % 3)))).append('\n');
        }
        Path file = tmp.resolve("sums.jsonl");
        Files.writeString(file, data);
        Path out = tmp.resolve("samples.jsonl");
        int k = 8;
        Result e = InProcess.run("eval", "--model", model.toString(), "--data", file.toString(), "--k", Integer.toString(k),
                "--samples-out", out.toString());
        assertEquals(0, e.code(), e.err());
        JsonNode j = Json.MAPPER.readTree(e.out());
        List<JsonNode> lines = new ArrayList<>();
        for (String l : Files.readAllLines(out)) {
            lines.add(Json.MAPPER.readTree(l));
        }
        assertEquals(24, lines.size());
        assertEquals(24, j.get("eval_examples").asInt());
        assertEquals(k, j.get("eval_k").asInt());
        double[] all = recompute(lines, k);
        assertNumbers(all, j, k);
        assertTrue(all[1 + k] > all[2], "pass@8 above pass@1 on a model that is right a third of the time: " + j);
        // per source: the lines of each data_source and level
        for (String label : List.of("data_source=sums-a", "data_source=sums-b", "level=Level 1", "level=Level 3")) {
            String[] kv = label.split("=");
            List<JsonNode> mine = lines.stream().filter(l -> l.get(kv[0]).asText().equals(kv[1])).toList();
            JsonNode got = j.get("eval_by_source").get(label);
            assertEquals(mine.size(), got.get("eval_examples").asInt(), label);
            assertNumbers(recompute(mine, k), got, k);
        }
        assertTrue(j.get("eval_se").get("eval_pass_at").get("8").asDouble() > 0, j.toString());
        // each sample's verdict, answer and class as the verifier gives them
        Verifier v = new Verifier();
        int shared = 0;
        for (JsonNode l : lines) {
            assertEquals(k, l.get("completions").size());
            List<String> heads = new ArrayList<>();
            for (int s = 0; s < k; s++) {
                var res = v.verify(l.get("gold_raw").asText(), l.get("completions").get(s).asText());
                assertEquals(res.correct(), l.get("correct").get(s).asBoolean(), l.toString());
                assertEquals(res.extracted(), l.get("answers").get(s).isNull() ? null : l.get("answers").get(s).asText());
                JsonNode c = l.get("answer_classes").get(s);
                assertEquals(res.extracted() == null, c.isNull());
                if (!c.isNull()) {
                    if (c.asInt() == heads.size()) {
                        heads.add(res.extracted());
                    } else {
                        assertTrue(v.sameAnswer(heads.get(c.asInt()), res.extracted()));
                        shared++;
                    }
                }
            }
            for (int a = 0; a < heads.size(); a++) {
                for (int b = 0; b < a; b++) {
                    assertFalse(v.sameAnswer(heads.get(b), heads.get(a)), heads.toString());
                }
            }
        }
        assertTrue(shared > 0, "eight samples at temperature 1 repeat some answers");
        assertEquals(List.of("samples.jsonl", "sums.jsonl"), listing());
        // greedy only: the file holds the greedy completions and empty sample lists
        Path greedyOut = tmp.resolve("greedy.jsonl");
        Result g = InProcess.run("eval", "--model", model.toString(), "--data", file.toString(), "--max-examples", "3",
                "--samples-out", greedyOut.toString());
        assertEquals(0, g.code(), g.err());
        List<String> gl = Files.readAllLines(greedyOut);
        assertEquals(3, gl.size());
        for (String l : gl) {
            JsonNode n = Json.MAPPER.readTree(l);
            assertEquals(0, n.get("completions").size());
            assertTrue(n.get("greedy").isTextual() && n.get("greedy_correct").isBoolean(), l);
        }
        assertFalse(Json.MAPPER.readTree(g.out()).has("eval_pass_at"));
    }

    /** The files in the test's folder, sorted: no partial samples file is ever left. */
    List<String> listing() throws java.io.IOException {
        try (var s = Files.list(tmp)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void badKOrSamplesFileIsOneLine() throws Exception {
        Path model = klrl.run.TinyDefault.ensure(s -> { });
        Files.writeString(tmp.resolve("taken.jsonl"), "mine\n");
        for (String[] args : new String[][] {{"--k", "-1"}, {"--k", "1025"},
            {"--samples-out", tmp.resolve("no/such/folder/s.jsonl").toString()}, {"--samples-out", tmp.resolve("taken.jsonl").toString()}}) {
            List<String> a = new ArrayList<>(List.of("eval", "--model", model.toString()));
            a.addAll(List.of(args));
            Result r = InProcess.run(a.toArray(String[]::new));
            assertEquals(2, r.code(), r.err());
            assertEquals(1, r.err().strip().lines().count(), r.err());
            assertTrue(r.err().contains(args[0]), r.err());
        }
        assertEquals("mine\n", Files.readString(tmp.resolve("taken.jsonl")));
        // a run that fails after the samples file was opened leaves nothing behind
        Path noWeights = Files.createDirectory(tmp.resolve("no-model"));
        Result bad = InProcess.run("eval", "--model", noWeights.toString(), "--samples-out", tmp.resolve("s.jsonl").toString());
        assertEquals(2, bad.code(), bad.err());
        assertTrue(bad.err().contains("config.json"), bad.err());
        Files.delete(noWeights);
        Result none = InProcess.run("eval", "--model", model.toString(), "--max-examples", "0");
        assertEquals(2, none.code(), none.err());
        assertTrue(none.err().contains("--max-examples"), none.err());
        assertEquals(List.of("taken.jsonl"), listing());
        Result cfg = InProcess.run("train", "--set", "eval.k=2000", "--max-steps", "1");
        assertEquals(2, cfg.code(), cfg.err());
        assertTrue(cfg.err().contains("eval.k must be at most 1024"), cfg.err());
    }
}
