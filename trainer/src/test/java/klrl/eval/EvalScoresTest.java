package klrl.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import klrl.data.Example;
import org.junit.jupiter.api.Test;

class EvalScoresTest {
    /** n prompts, each with a chance of being right drawn per prompt, k samples each; level by index. */
    static List<EvalScores.Prompt> drawn(int n, int k, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        List<EvalScores.Prompt> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            double p = r.nextDouble();
            boolean[] correct = new boolean[k];
            int[] classes = new int[k];
            for (int j = 0; j < k; j++) {
                correct[j] = r.nextDouble() < p;
                classes[j] = correct[j] ? 0 : 1 + r.nextInt(3);
            }
            var labels = new Example.Labels(i % 2 == 0 ? "even" : "odd", "Level " + (1 + i % 3), null);
            out.add(new EvalScores.Prompt(new Example("q" + i, null, "1", "f.jsonl:" + (i + 1), labels), r.nextDouble() < p, correct, classes));
        }
        return out;
    }

    @Test
    void numbersAreMeansOverPromptsOfThePerPromptValues() {
        int k = 6;
        var prompts = drawn(50, k, 3);
        Map<String, Object> s = EvalScores.summarize(prompts, k, 0);
        double greedy = 0, mean = 0, passK = 0, any = 0, maj = 0;
        for (var p : prompts) {
            greedy += p.greedy() ? 1 : 0;
            mean += p.c() / (double) k;
            passK += PassAtK.of(k, p.c(), 3);
            any += p.c() > 0 ? 1 : 0;
            maj += Majority.score(p.classes(), p.correct());
        }
        assertEquals(maj / 50, (double) s.get("eval_maj_at_k"), 1e-12);
        assertTrue(maj > 0 && maj < 50, "drawn prompts hold both outcomes of the vote");
        assertEquals(greedy / 50, (double) s.get("eval_accuracy"), 1e-12);
        assertEquals(mean / 50, (double) s.get("eval_mean_at_k"), 1e-12);
        var pass = (Map<?, ?>) s.get("eval_pass_at");
        assertEquals(k, pass.size());
        assertEquals(passK / 50, (double) pass.get("3"), 1e-12);
        assertEquals(any / 50, (double) pass.get("6"), 1e-12); // pass@N: some sample right
        assertEquals(mean / 50, (double) pass.get("1"), 1e-12);
        for (int j = 2; j <= k; j++) {
            assertTrue((double) pass.get(Integer.toString(j)) >= (double) pass.get(Integer.toString(j - 1)));
        }
        assertEquals(50, s.get("eval_examples"));
    }

    @Test
    void standardErrorsAreSeededAndNearTheBinomialOne() {
        var prompts = drawn(400, 4, 11);
        Map<?, ?> a = (Map<?, ?>) EvalScores.summarize(prompts, 4, 5).get("eval_se");
        Map<?, ?> b = (Map<?, ?>) EvalScores.summarize(prompts, 4, 5).get("eval_se");
        Map<?, ?> c = (Map<?, ?>) EvalScores.summarize(prompts, 4, 6).get("eval_se");
        assertEquals(a, b);
        assertNotEquals(a.get("eval_accuracy"), c.get("eval_accuracy"));
        double p = (double) EvalScores.summarize(prompts, 4, 5).get("eval_accuracy");
        double binomial = Math.sqrt(p * (1 - p) / 400);
        assertEquals(binomial, (double) a.get("eval_accuracy"), 0.1 * binomial);
        assertTrue((double) ((Map<?, ?>) a.get("eval_pass_at")).get("4") > 0);
        assertTrue((double) a.get("eval_maj_at_k") > 0);
        // greedy only: one standard error
        Map<?, ?> g = (Map<?, ?>) EvalScores.summarize(prompts.stream().map(x -> new EvalScores.Prompt(x.example(), x.greedy(),
                new boolean[0], new int[0])).toList(), 0, 5).get("eval_se");
        assertEquals(Map.of("eval_accuracy", g.get("eval_accuracy")), g);
    }

    @Test
    void brokenDownByDataSourceLevelAndFileWhenThereAreSeveral() {
        var prompts = drawn(30, 2, 1);
        Map<?, ?> by = (Map<?, ?>) EvalScores.summarize(prompts, 2, 0).get("eval_by_source");
        assertEquals(List.of("data_source=even", "data_source=odd", "level=Level 1", "level=Level 2", "level=Level 3"),
                new ArrayList<>(by.keySet())); // one file: no file breakdown
        assertEquals(15, ((Map<?, ?>) by.get("data_source=odd")).get("eval_examples"));
        double odd = 0;
        for (int i = 1; i < 30; i += 2) {
            odd += prompts.get(i).greedy() ? 1 : 0;
        }
        assertEquals(odd / 15, (double) ((Map<?, ?>) by.get("data_source=odd")).get("eval_accuracy"), 1e-12);
        List<EvalScores.Prompt> twoFiles = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            var p = prompts.get(i);
            twoFiles.add(new EvalScores.Prompt(new Example("q", null, "1", (i < 1 ? "a.jsonl:" : "b.parquet:") + i, Example.Labels.NONE),
                    p.greedy(), p.correct(), p.classes()));
        }
        Map<?, ?> files = (Map<?, ?>) EvalScores.summarize(twoFiles, 2, 0).get("eval_by_source");
        assertEquals(List.of("file=a.jsonl", "file=b.parquet"), new ArrayList<>(files.keySet()));
        assertFalse(EvalScores.summarize(twoFiles.subList(1, 4), 2, 0).containsKey("eval_by_source"));
    }
}
