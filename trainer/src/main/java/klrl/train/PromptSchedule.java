package klrl.train;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import klrl.data.Example;

/**
 * Which prompts step s trains on: epoch-wise seeded permutations of the training set, and the seeds
 * of every random choice, all functions of (seed, step) so that resuming at step s replays exactly
 * what step s would have done.
 */
final class PromptSchedule {
    /** What a derived seed is for. */
    static final int PERMUTATION = 1, ROLLOUT = 2, EVAL = 3, EXTRA = 4;

    private final List<Example> train;
    private final int batchSize;
    private final long seed;
    private final Map<Long, int[]> perms = new HashMap<>();

    PromptSchedule(List<Example> train, int batchSize, long seed) {
        this.train = train;
        this.batchSize = batchSize;
        this.seed = seed;
    }

    /** A seed derived from (base seed, step, purpose) by a splitmix-style hash. */
    static long seed(long base, long step, int purpose) {
        long h = base * 0x9E3779B97F4A7C15L + step * 0xBF58476D1CE4E5B9L + purpose * 0x94D049BB133111EBL;
        h ^= h >>> 31;
        h *= 0xD6E8FEB86659FD93L;
        return h ^ (h >>> 32);
    }

    long seed(long step, int purpose) {
        return seed(seed, step, purpose);
    }

    /** The prompts of step s. */
    List<Example> batchAt(long step) {
        List<Example> out = new ArrayList<>(batchSize);
        for (int i = 0; i < batchSize; i++) {
            long pos = step * batchSize + i;
            long epoch = pos / train.size();
            int[] perm = permutation(train.size(), seed(epoch, PERMUTATION));
            out.add(train.get(perm[(int) (pos % train.size())]));
        }
        return out;
    }

    /**
     * The prompts of step s's generation batch k ≥ 1 (dynamic sampling asks for more): a seeded draw
     * without replacement from the training set, a function of (seed, step, k).
     */
    List<Example> extraBatch(long step, int k) {
        int[] perm = permutation(train.size(), seed(seed(step, EXTRA), k, EXTRA));
        List<Example> out = new ArrayList<>(batchSize);
        for (int i = 0; i < batchSize; i++) {
            out.add(train.get(perm[i % train.size()]));
        }
        perms.remove(seed(seed(step, EXTRA), k, EXTRA)); // drawn once: not worth keeping
        return out;
    }

    /** The sampling seed of step s's generation batch k (k = 0: the step's own, {@code seed(step, ROLLOUT)}). */
    long rolloutSeed(long step, int k) {
        return k == 0 ? seed(step, ROLLOUT) : seed(seed(step, ROLLOUT), k, ROLLOUT);
    }

    private int[] permutation(int n, long s) {
        return perms.computeIfAbsent(s, k -> {
            int[] p = new int[n];
            for (int i = 0; i < n; i++) {
                p[i] = i;
            }
            SplittableRandom r = new SplittableRandom(k);
            for (int i = n - 1; i > 0; i--) { // Fisher–Yates
                int j = r.nextInt(i + 1);
                int t = p[i];
                p[i] = p[j];
                p[j] = t;
            }
            return p;
        });
    }
}
