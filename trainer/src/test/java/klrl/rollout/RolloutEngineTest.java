package klrl.rollout;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import klrl.TestPaths;
import klrl.model.Decoder;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

class RolloutEngineTest {
    static NDManager root;
    static Decoder model;
    static final long[] PROMPT = {5, 17, 33, 64};

    @BeforeAll
    static void start() {
        root = NDManager.newBaseManager("PyTorch");
        model = Decoder.load(TestPaths.fixture("qwen2-bf16-sharded"), root, DataType.FLOAT32);
    }

    @AfterAll
    static void stop() {
        model.close();
        root.close();
    }

    static RolloutEngine engine(List<Long> eos) {
        return new RolloutEngine(model, eos, ids -> Arrays.toString(ids));
    }

    /** log softmax(logits/T) of the next token after each prefix, from a full cache-free forward. */
    static double[][] nextLogprobs(long[] ids, double temperature) {
        try (NDManager m = root.newSubManager()) {
            int t = ids.length, v = model.config.vocabSize();
            NDArray logits = klrl.util.Nd.div(model.logits(m, ids), temperature);
            float[] lp = JniUtils.logSoftmax((PtNDArray) logits, 1, DataType.FLOAT32).toFloatArray();
            double[][] out = new double[t][v];
            for (int i = 0; i < t; i++) {
                for (int j = 0; j < v; j++) {
                    out[i][j] = lp[i * v + j];
                }
            }
            return out;
        }
    }

    static long[] concat(long[] a, long[] b) {
        long[] c = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }

    @Test
    void sampledFrequenciesMatchTheModelsSoftmax() {
        double temp = 0.7;
        int n = 6000;
        List<Sample> s = engine(List.of()).generate(List.of(PROMPT),
                new SamplingParams(1, temp, 1, 0, n, List.of(), 42), root);
        double[] lp = nextLogprobs(PROMPT, temp)[PROMPT.length - 1];
        int v = lp.length;
        long[] counts = new long[v];
        for (Sample x : s) {
            counts[(int) x.responseIds()[0]]++;
        }
        // Pearson chi-square with bins of expected count < 5 merged into one.
        double chi = chiSquare(counts, lp, n, 1.0);
        double wrong = chiSquare(counts, nextLogprobs(PROMPT, 1.0)[PROMPT.length - 1], n, 1.0);
        int bins = bins(lp, n);
        // 99.99th percentile of chi-square(df) ≈ df + 3.72·sqrt(2·df) + 7 (Wilson–Hilferty is tighter; this is generous)
        double crit = (bins - 1) + 3.72 * Math.sqrt(2.0 * (bins - 1)) + 7;
        assertTrue(chi < crit, "chi-square " + chi + " ≥ " + crit + " over " + bins + " bins");
        assertTrue(wrong > 3 * crit, "the test has no power: T=1 probabilities pass too (" + wrong + ")");
    }

    static int bins(double[] lp, int n) {
        int b = 1;
        for (double l : lp) {
            if (Math.exp(l) * n >= 5) {
                b++;
            }
        }
        return b;
    }

    static double chiSquare(long[] counts, double[] lp, int n, double unused) {
        double chi = 0, restExp = 0, restObs = 0;
        for (int i = 0; i < lp.length; i++) {
            double e = Math.exp(lp[i]) * n;
            if (e >= 5) {
                chi += (counts[i] - e) * (counts[i] - e) / e;
            } else {
                restExp += e;
                restObs += counts[i];
            }
        }
        if (restExp > 0) {
            chi += (restObs - restExp) * (restObs - restExp) / restExp;
        }
        return chi;
    }

    @Test
    void topKAndTopPNeverLeaveTheNucleus() {
        double[] lp = nextLogprobs(PROMPT, 1.0)[PROMPT.length - 1];
        Integer[] order = new Integer[lp.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (a, b) -> Double.compare(lp[b], lp[a]));
        // top-k = 5: exactly the five most likely tokens
        java.util.Set<Long> topk = new java.util.HashSet<>();
        for (int i = 0; i < 5; i++) {
            topk.add((long) order[i]);
        }
        // top-p = 0.3: smallest prefix of the sorted distribution with mass ≥ 0.3
        java.util.Set<Long> nucleus = new java.util.HashSet<>();
        double mass = 0;
        for (int i = 0; mass < 0.3; i++) {
            nucleus.add((long) order[i]);
            mass += Math.exp(lp[order[i]]);
        }
        assertTrue(nucleus.size() >= 2 && nucleus.size() < 50, "nucleus size " + nucleus.size());
        java.util.Set<Long> seenK = new java.util.HashSet<>(), seenP = new java.util.HashSet<>();
        for (Sample x : engine(List.of()).generate(List.of(PROMPT), new SamplingParams(1, 1.0, 1, 5, 2000, List.of(), 1), root)) {
            seenK.add(x.responseIds()[0]);
        }
        for (Sample x : engine(List.of()).generate(List.of(PROMPT), new SamplingParams(1, 1.0, 0.3, 0, 2000, List.of(), 2), root)) {
            seenP.add(x.responseIds()[0]);
        }
        assertEquals(topk, seenK, "top-k samples exactly the k most likely tokens");
        assertEquals(nucleus, seenP, "top-p samples exactly the nucleus");
    }

    @Test
    void theSamplerLogprobIsOfTheTruncatedDistributionTheTokenWasDrawnFrom() {
        double[] lp = nextLogprobs(PROMPT, 1.0)[PROMPT.length - 1];
        Integer[] order = new Integer[lp.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (a, b) -> Double.compare(lp[b], lp[a]));
        double topKMass = 0, nucleusMass = 0;
        for (int i = 0; i < 5; i++) {
            topKMass += Math.exp(lp[order[i]]);
        }
        for (int i = 0; nucleusMass < 0.3; i++) {
            nucleusMass += Math.exp(lp[order[i]]);
        }
        double[][] cases = {{5, 1.0, topKMass}, {0, 0.3, nucleusMass}, {0, 1.0, 1.0}};
        for (double[] c : cases) {
            SamplingParams p = new SamplingParams(1, 1.0, c[1], (int) c[0], 50, List.of(), 9);
            for (Sample x : engine(List.of()).generate(List.of(PROMPT), p, root)) {
                int tok = (int) x.responseIds()[0];
                String what = "top_k " + c[0] + ", top_p " + c[1] + ", token " + tok;
                assertEquals(lp[tok], x.logprobs()[0], 1e-4, what + ": the behaviour log-prob is softmax(logits/T)'s");
                // μ(y) = π(y) ÷ the kept mass
                assertEquals(lp[tok] - Math.log(c[2]), x.samplerLogprobs()[0], 1e-4, what + ": the sampler's is the truncated one's");
            }
            if (!p.truncates()) {
                Sample x = engine(List.of()).generate(List.of(PROMPT), p, root).get(0);
                assertSame(x.logprobs(), x.samplerLogprobs(), "untruncated: one distribution");
            }
        }
    }

    @Test
    void batchedGreedyEqualsOneByOne() {
        List<long[]> prompts = List.of(new long[] {5, 17, 33, 64, 100, 2, 250}, new long[] {7, 9}, new long[] {11, 300, 42, 43});
        SamplingParams p = SamplingParams.greedy(12);
        List<Sample> batched = engine(List.of()).generate(prompts, p, root);
        for (int i = 0; i < prompts.size(); i++) {
            Sample alone = engine(List.of()).generate(List.of(prompts.get(i)), p, root).get(0);
            assertArrayEquals(alone.responseIds(), batched.get(i).responseIds(), "prompt " + i);
            assertEquals("length", alone.finishReason());
            // greedy with the cache = argmax of full recomputation at each step
            long[] seq = concat(prompts.get(i), alone.responseIds());
            double[][] lp = nextLogprobs(seq, 1.0);
            for (int k = 0; k < alone.responseIds().length; k++) {
                double[] row = lp[prompts.get(i).length - 1 + k];
                int arg = 0;
                for (int j = 1; j < row.length; j++) {
                    if (row[j] > row[arg]) {
                        arg = j;
                    }
                }
                assertEquals(arg, alone.responseIds()[k], "greedy token " + k + " of prompt " + i);
            }
        }
    }

    @Test
    void returnedLogprobsEqualRecomputedOnes() {
        double temp = 0.8;
        List<long[]> prompts = List.of(PROMPT, new long[] {9, 8});
        List<Sample> samples = engine(List.of()).generate(prompts, new SamplingParams(10, temp, 0.9, 0, 3, List.of(), 5), root);
        assertEquals(6, samples.size());
        double worst = 0;
        for (Sample s : samples) {
            double[][] lp = nextLogprobs(concat(s.promptIds(), s.responseIds()), temp);
            for (int k = 0; k < s.responseIds().length; k++) {
                double ref = lp[s.promptIds().length - 1 + k][(int) s.responseIds()[k]];
                worst = Math.max(worst, Math.abs(ref - s.logprobs()[k]));
            }
        }
        assertTrue(worst < 1e-4, "max |Δ logprob| = " + worst);
    }

    @Test
    void logprobsStayExactWhenFinishedRowsLeaveTheBatch() {
        // EOS = a token sampled often, so rows end at different steps and the batch is compacted
        List<Sample> probe = engine(List.of()).generate(List.of(PROMPT), new SamplingParams(8, 1.0, 1, 0, 16, List.of(), 3), root);
        java.util.Map<Long, Integer> freq = new java.util.HashMap<>();
        probe.forEach(x -> { for (long t : x.responseIds()) { freq.merge(t, 1, Integer::sum); } });
        List<Long> eos = freq.entrySet().stream().sorted(java.util.Map.Entry.<Long, Integer>comparingByValue().reversed())
                .limit(6).map(java.util.Map.Entry::getKey).toList();
        List<Sample> samples = engine(eos).generate(List.of(PROMPT, new long[] {9, 8}, new long[] {1, 2, 3, 4, 5, 6}),
                new SamplingParams(10, 1.0, 1, 0, 6, List.of(), 4), root);
        java.util.Set<Integer> lengths = new java.util.HashSet<>();
        double worst = 0;
        for (Sample s : samples) {
            lengths.add(s.responseIds().length);
            double[][] lp = nextLogprobs(concat(s.promptIds(), s.responseIds()), 1.0);
            for (int k = 0; k < s.responseIds().length; k++) {
                worst = Math.max(worst, Math.abs(lp[s.promptIds().length - 1 + k][(int) s.responseIds()[k]] - s.logprobs()[k]));
            }
        }
        assertTrue(lengths.size() >= 3, "rows should end at different steps: " + lengths);
        assertTrue(worst < 1e-4, "max |Δ logprob| with compaction = " + worst);
    }

    @Test
    void aKvCacheBudgetChunksWithoutChangingSamples() {
        List<long[]> prompts = List.of(PROMPT, new long[] {9, 8}, new long[] {11, 300, 42});
        SamplingParams p = new SamplingParams(6, 1.0, 1, 0, 3, List.of(), 21);
        List<Sample> whole = engine(List.of()).generate(prompts, p, root);
        List<Sample> chunked = engine(List.of()).withMaxRows(4).generate(prompts, p, root); // one prompt (3 rows) a chunk
        assertEquals(whole.size(), chunked.size());
        for (int i = 0; i < whole.size(); i++) {
            assertEquals(whole.get(i).promptIndex(), chunked.get(i).promptIndex());
            assertArrayEquals(whole.get(i).responseIds(), chunked.get(i).responseIds(), "sample " + i);
            assertArrayEquals(whole.get(i).logprobs(), chunked.get(i).logprobs(), 1e-5f);
        }
        // a budget below one prompt's samples (an evaluation's pass@1024 on a small cache): its rows in pieces, the same samples
        for (int rows : new int[] {2, 1}) {
            RolloutEngine capped = engine(List.of()).withMaxRows(rows);
            List<Sample> pieces = capped.generate(prompts, p, root);
            assertEquals(rows, capped.peakRows(), "never more sequences at once than the cache holds");
            assertEquals(whole.size(), pieces.size());
            for (int i = 0; i < whole.size(); i++) {
                assertEquals(whole.get(i).promptIndex(), pieces.get(i).promptIndex());
                assertArrayEquals(whole.get(i).responseIds(), pieces.get(i).responseIds(), rows + " rows: sample " + i);
                assertArrayEquals(whole.get(i).logprobs(), pieces.get(i).logprobs(), 1e-5f);
            }
        }
        // 2 layers × 2 kv heads × 16 dims × 2 (K and V) × 4 bytes per token
        assertEquals(2L * model.config.numLayers() * model.config.numKvHeads() * model.config.headDim() * 10 * 4,
                RolloutEngine.kvBytesPerSequence(model, 10));
    }

    @Test
    void samplesShareTheirPromptsPrefillAndPrefillGroupsChangeNothing() {
        List<long[]> prompts = List.of(PROMPT, new long[] {9, 8}, new long[] {11, 300, 42, 7, 1});
        SamplingParams p = new SamplingParams(8, 1.0, 1, 0, 3, List.of(), 13);
        List<Sample> shared = engine(List.of()).generate(prompts, p, root);
        // the same 9 rows with every prompt repeated, i.e. prefilled once per sample: sample r keeps its
        // random stream (seed and row index), so tokens and log-probs must agree row by row
        List<long[]> repeated = new ArrayList<>();
        prompts.forEach(x -> { for (int i = 0; i < 3; i++) { repeated.add(x); } });
        List<Sample> separate = engine(List.of()).generate(repeated, new SamplingParams(8, 1.0, 1, 0, 1, List.of(), 13), root);
        // one prompt per prefill pass (a 1-byte activation budget)
        RolloutEngine tiny = engine(List.of()).withPrefillBytes(1);
        assertEquals(1, tiny.prefillGroup(3, 5));
        assertEquals(3, engine(List.of()).prefillGroup(3, 5));
        List<Sample> grouped = tiny.generate(prompts, p, root);
        assertEquals(9, shared.size());
        java.util.Set<String> distinct = new java.util.HashSet<>();
        for (int i = 0; i < 9; i++) {
            assertEquals(i / 3, shared.get(i).promptIndex());
            assertArrayEquals(separate.get(i).responseIds(), shared.get(i).responseIds(), "sample " + i);
            assertArrayEquals(separate.get(i).logprobs(), shared.get(i).logprobs(), 1e-5f);
            assertArrayEquals(shared.get(i).responseIds(), grouped.get(i).responseIds(), "sample " + i);
            assertArrayEquals(shared.get(i).logprobs(), grouped.get(i).logprobs(), 1e-5f);
            distinct.add(Arrays.toString(shared.get(i).responseIds()));
        }
        assertTrue(distinct.size() >= 6, "samples of a prompt should be independent draws: " + distinct);
    }

    @Test
    void layersPlacedOverDevicesSampleTheSameTokens() {
        List<long[]> prompts = List.of(PROMPT, new long[] {9, 8}, new long[] {11, 300, 42});
        SamplingParams p = new SamplingParams(8, 1.0, 1, 0, 2, List.of(), 5);
        List<Sample> one = engine(List.of(64L)).generate(prompts, p, root);
        var dir = TestPaths.fixture("qwen2-bf16-sharded");
        var placed = klrl.model.Placement.balanced(List.of(ai.djl.Device.cpu(), ai.djl.Device.cpu(), ai.djl.Device.cpu()),
                klrl.model.ModelConfig.load(dir));
        assertEquals(3, placed.stages());
        try (Decoder split = Decoder.load(dir, root, DataType.FLOAT32, placed)) {
            List<Sample> three = new RolloutEngine(split, List.of(64L), ids -> Arrays.toString(ids)).generate(prompts, p, root);
            for (int i = 0; i < one.size(); i++) {
                assertArrayEquals(one.get(i).responseIds(), three.get(i).responseIds(), "sample " + i);
                assertArrayEquals(one.get(i).logprobs(), three.get(i).logprobs(), 1e-5f);
            }
            // the KV budget is per device: the device with the most layers (1 of 3) sets it
            assertEquals(RolloutEngine.kvBytesPerSequence(model, 10) / 3, RolloutEngine.kvBytesPerSequence(split, 10));
        }
    }

    @Test
    void kvBudgetsGiveTheRowsThatFitEveryDevice() {
        assertEquals(3, RolloutEngine.rowsThatFit(100, new long[] {1000, 399}));
        assertEquals(Integer.MAX_VALUE, RolloutEngine.rowsThatFit(100, new long[] {Long.MAX_VALUE}));
        // a GPU already fuller than the utilisation target leaves a negative budget: a clear error, not 0 rows
        var e = org.junit.jupiter.api.Assertions.assertThrows(klrl.util.UserError.class,
                () -> RolloutEngine.rowsThatFit(100, new long[] {1000, -5}));
        assertTrue(e.getMessage().contains("rollout.gpu_memory_utilization"), e.getMessage());
    }

    @Test
    void seededSamplingIsReproducibleAndSeedsDiffer() {
        SamplingParams a = new SamplingParams(8, 1.0, 1, 0, 4, List.of(), 7);
        List<Sample> x = engine(List.of()).generate(List.of(PROMPT), a, root);
        List<Sample> y = engine(List.of()).generate(List.of(PROMPT), a, root);
        List<Sample> z = engine(List.of()).generate(List.of(PROMPT), new SamplingParams(8, 1.0, 1, 0, 4, List.of(), 8), root);
        boolean anyDiff = false;
        for (int i = 0; i < 4; i++) {
            assertArrayEquals(x.get(i).responseIds(), y.get(i).responseIds());
            anyDiff |= !Arrays.equals(x.get(i).responseIds(), z.get(i).responseIds());
        }
        assertTrue(anyDiff, "a different seed gave the same samples");
        // the n samples of one prompt are independent draws, not copies
        assertFalse(Arrays.equals(x.get(0).responseIds(), x.get(1).responseIds()) && Arrays.equals(x.get(1).responseIds(), x.get(2).responseIds()));
    }

    @Test
    void stopsAtEosAndFinishedRowsLeaveTheBatch() {
        Sample g = engine(List.of()).generate(List.of(PROMPT), SamplingParams.greedy(6), root).get(0);
        long eos = g.responseIds()[2];
        List<Sample> withEos = engine(List.of(eos)).generate(List.of(PROMPT, new long[] {9, 8, 7}), SamplingParams.greedy(6), root);
        Sample s = withEos.get(0);
        int firstEos = 0;
        while (g.responseIds()[firstEos] != eos) {
            firstEos++;
        }
        assertEquals("eos", s.finishReason());
        assertArrayEquals(Arrays.copyOf(g.responseIds(), firstEos + 1), s.responseIds());
        // the other row goes on to its own end, unaffected by the first row leaving the batch
        Sample other = engine(List.of(eos)).generate(List.of(new long[] {9, 8, 7}), SamplingParams.greedy(6), root).get(0);
        assertArrayEquals(other.responseIds(), withEos.get(1).responseIds());
    }

    @Test
    void stopStringsEndASample() {
        Sample g = engine(List.of()).generate(List.of(PROMPT), SamplingParams.greedy(6), root).get(0);
        // the detokenizer in these tests prints the id list; stop when the second token appears
        String stop = Long.toString(g.responseIds()[1]);
        RolloutEngine e = new RolloutEngine(model, List.of(), ids -> {
            List<String> parts = new ArrayList<>();
            for (long id : ids) {
                parts.add("<" + id + ">");
            }
            return String.join("", parts);
        });
        Sample s = e.generate(List.of(PROMPT), new SamplingParams(6, 0, 1, 0, 1, List.of("<" + stop + ">"), 0), root).get(0);
        assertEquals("stop", s.finishReason());
        assertTrue(s.responseIds().length <= 2);
    }

    /**
     * The stop check decodes a tail window, not the whole response: with the real Qwen2.5 and
     * Llama-3.1 tokenizers it must fire at exactly the token where the full decode first contains a
     * stop string, including stops that are multi-byte, split across byte tokens, or start with a space.
     */
    @Test
    void stopCheckOnATailWindowFiresWhereTheFullDecodeDoes() {
        String text = "Let x = 3. Then 2x + 1 = 7, so π·r² ≤ 10 — done 🙂. Next, 数学 problem: "
                + "compute \\frac{1}{2} + \\frac{1}{3}. The answer is \\boxed{5/6}. ".repeat(6)
                + "</answer> trailing words\n\nQuestion: more";
        List<List<String>> stopSets = List.of(List.of("</answer>"), List.of("\n\nQuestion:"), List.of("🙂"),
                List.of("数学"), List.of(" problem"), List.of("≤ 1"), List.of("never appears", "boxed{5/6}"),
                List.of("not in the text"));
        for (String name : List.of("qwen2.5", "llama3.1")) {
            try (klrl.model.Tokenizer tok = klrl.model.Tokenizer.load(TestPaths.model(name))) {
                long[] ids = tok.encode(text);
                for (List<String> stops : stopSets) {
                    int full = -1, window = -1;
                    for (int len = 1; len <= ids.length && (full < 0 || window < 0); len++) {
                        long[] prefix = Arrays.copyOf(ids, len);
                        if (full < 0 && stops.stream().anyMatch(tok.decode(prefix)::contains)) {
                            full = len;
                        }
                        if (window < 0 && RolloutEngine.endsInStop(ids, len, stops, tok::decode)) {
                            window = len;
                        }
                    }
                    assertEquals(full, window, name + " " + stops);
                    assertEquals(stops.get(0).equals("not in the text"), full < 0, name + " " + stops);
                }
            }
        }
    }
}
