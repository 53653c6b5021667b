package klrl.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import klrl.data.Example;
import klrl.reward.RewardPool;
import klrl.rollout.Sample;
import org.junit.jupiter.api.Test;

/** DAPO's overlong shaping and dynamic sampling, and TRL's truncated-completion mask, on hand-made batches. */
class RecipesTest {
    static Sample sample(int prompt, int length, String finish) {
        return new Sample(prompt, new long[] {1, 2}, new long[length], new float[length], finish);
    }

    static RewardPool.Scored scored(boolean correct) {
        return new RewardPool.Scored(correct ? 1 : 0, correct, false, correct ? "1" : "0");
    }

    @Test
    void overlongShapingFollowsVerlsDapoReward() {
        // max_new_tokens 12, buffer 4: expected length 8; penalty 0.5 per buffer length past it
        TrainConfig c = ConfigLoader.load(null, Map.of("rollout.max_new_tokens", 12, "algorithm.overlong_buffer.len", 4,
                "algorithm.overlong_buffer.penalty", 0.5));
        List<Sample> s = List.of(sample(0, 7, "eos"), sample(0, 8, "eos"), sample(0, 10, "eos"), sample(0, 12, "length"));
        List<RewardPool.Scored> sc = List.of(scored(true), scored(false), scored(true), scored(false));
        List<RewardPool.Scored> out = Shaping.overlong(sc, s, c);
        // min(−(L − 8)/4 · 0.5, 0): 0, 0, −0.25, −0.5
        double[] want = {1, 0, 1 - 0.25, -0.5};
        for (int i = 0; i < 4; i++) {
            assertEquals(want[i], out.get(i).reward(), 1e-12);
            assertEquals(sc.get(i).correct(), out.get(i).correct()); // accuracy stays the verifier's
        }
        assertEquals(-0.75 / 4, s.stream().mapToDouble(x -> Shaping.overlongPenalty(x.responseIds().length, c)).average().orElseThrow(), 1e-12);
        // off by default: the same list back
        assertTrue(Shaping.overlong(sc, s, ConfigLoader.load(null, Map.of())) == sc);
    }

    /** A generation batch of {@code prompts} prompts × 2 samples; {@code correct[p]} gives prompt p's two verdicts. */
    static Rollouts.Batch batch(String tag, boolean[][] correct) {
        List<Example> ex = new ArrayList<>();
        List<Sample> s = new ArrayList<>();
        List<RewardPool.Scored> sc = new ArrayList<>();
        for (int p = 0; p < correct.length; p++) {
            ex.add(new Example(tag + p, "1", "test"));
            for (boolean c : correct[p]) {
                s.add(sample(p, 3 + p, "eos"));
                sc.add(scored(c));
            }
        }
        return new Rollouts.Batch(ex, s, sc);
    }

    @Test
    void dynamicSamplingKeepsInformativeGroupsInOrder() {
        boolean t = true, f = false;
        Rollouts.Batch first = batch("a", new boolean[][] {{t, t}, {t, f}, {f, f}});
        Rollouts.Batch second = batch("b", new boolean[][] {{f, t}, {f, f}, {t, f}});
        Map<String, Object> m = new HashMap<>();
        List<String> said = new ArrayList<>();
        var fg = new TrainConfig.FilterGroups(true, "accuracy", 10);
        Rollouts.Batch out = DynamicSampling.fill(first, 3, fg, k -> second, m, 0, said::add);
        assertEquals(List.of("a1", "b0", "b2"), out.prompts().stream().map(Example::question).toList());
        assertEquals(List.of(0, 0, 1, 1, 2, 2), out.samples().stream().map(Sample::promptIndex).toList());
        assertEquals(2, m.get("gen_batches"));
        assertEquals(3, m.get("filtered_groups")); // a0, a2, b1
        assertTrue(said.isEmpty());
        // every kept group informative
        for (int p = 0; p < 3; p++) {
            int q = p;
            assertEquals(2, out.scores().subList(2 * q, 2 * q + 2).stream().map(RewardPool.Scored::correct).distinct().count());
        }
        // at max_gen_batches: the informative groups, filled up with dropped ones, and one line
        Rollouts.Batch capped = DynamicSampling.fill(first, 3, new TrainConfig.FilterGroups(true, "accuracy", 1), k -> second, m, 4, said::add);
        assertEquals(List.of("a1", "a0", "a2"), capped.prompts().stream().map(Example::question).toList());
        assertEquals(1, said.size());
        assertTrue(said.get(0).startsWith("step 5: 1 of 3 prompt groups informative after 1 generation batches"), said.get(0));
    }

    @Test
    void maskTruncatedTakesCutResponsesOutOfTheLoss() {
        List<Sample> s = List.of(sample(0, 2, "eos"), sample(0, 3, "length"));
        SequenceBatch all = SequenceBatch.of(s, 0);
        SequenceBatch masked = Shaping.maskTruncated(all, s);
        assertEquals(List.of(1f, 1f, 0f, 0f, 0f, 0f), floats(masked.responseMask()));
        assertEquals(List.of(1f, 1f, 0f, 1f, 1f, 1f), floats(all.responseMask()));
    }

    static List<Float> floats(float[] a) {
        List<Float> l = new ArrayList<>();
        for (float x : a) {
            l.add(x);
        }
        return l;
    }
}
