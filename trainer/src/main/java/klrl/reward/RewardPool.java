package klrl.reward;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import klrl.rewards.Extractor;
import klrl.rewards.FormatReward;
import klrl.rewards.MathReward;
import klrl.rewards.Reward;
import klrl.rewards.Rewards;
import klrl.rewards.Verifier;
import klrl.util.UserError;

/**
 * Scores completions in parallel worker threads: the configured reward (math by default) plus an
 * optional weighted format reward. Daemon threads, so a stuck user reward cannot keep the JVM alive;
 * the verifier itself is time-bounded and never blocks.
 */
public final class RewardPool implements AutoCloseable {
    /**
     * Per-sample outcome: the total reward, whether the math answer was right, whether the verifier
     * timed out, and the answer it extracted from the completion (null when it found none).
     */
    public record Scored(double reward, boolean correct, boolean timedOut, String extracted) {}

    private final Reward reward;
    private final MathReward math;
    private final FormatReward format = new FormatReward();
    private final double formatWeight;
    private final ExecutorService pool;

    public RewardPool(String name, double formatWeight, int workers, long verifierTimeoutMs) {
        this(name, null, formatWeight, workers, verifierTimeoutMs);
    }

    /** @param rewardJar a user's jar holding the reward class {@code name}, or null */
    public RewardPool(String name, String rewardJar, double formatWeight, int workers, long verifierTimeoutMs) {
        this.math = new MathReward(new Verifier(verifierTimeoutMs, Extractor.DEFAULT));
        try {
            this.reward = name.equals("math") ? math : Rewards.byName(name, loader(rewardJar));
        } catch (IllegalArgumentException e) {
            throw new UserError("train.reward: " + e.getMessage());
        }
        this.formatWeight = formatWeight;
        this.pool = Executors.newFixedThreadPool(workers, r -> {
            Thread t = new Thread(r, "reward");
            t.setDaemon(true);
            return t;
        });
    }

    private static ClassLoader loader(String jar) {
        if (jar == null) {
            return Rewards.class.getClassLoader();
        }
        java.nio.file.Path p = java.nio.file.Path.of(jar);
        if (!java.nio.file.Files.isRegularFile(p)) {
            throw new UserError("train.reward_jar: " + jar + " is not a file (expected a jar with the reward class)");
        }
        try {
            return new java.net.URLClassLoader(new java.net.URL[] {p.toUri().toURL()}, Rewards.class.getClassLoader());
        } catch (java.net.MalformedURLException e) {
            throw new UserError("train.reward_jar: " + jar + ": " + e.getMessage());
        }
    }

    public List<Scored> score(List<String> prompts, List<String> completions, List<String> golds) {
        List<Future<Scored>> fs = new ArrayList<>();
        for (int i = 0; i < completions.size(); i++) {
            final int k = i;
            fs.add(pool.submit(() -> {
                Reward.Score m = math.score(prompts.get(k), completions.get(k), golds.get(k));
                boolean correct = m.value() > 0;
                double r = m.value();
                if (reward != math) { // a named grader (hendrycks, dapo) or a user's: its verdict is the accuracy
                    Reward.Score s = reward.score(prompts.get(k), completions.get(k), golds.get(k));
                    r = s.value();
                    if (s.details().get("correct") instanceof Boolean b) {
                        correct = b;
                    }
                }
                if (formatWeight != 0) {
                    r += formatWeight * format.score(prompts.get(k), completions.get(k), golds.get(k)).value();
                }
                Object extracted = m.details().get("extracted");
                return new Scored(r, correct, Boolean.TRUE.equals(m.details().get("timed_out")),
                        extracted == null ? null : extracted.toString());
            }));
        }
        return results(fs, "reward function failed: ");
    }

    /** The tasks' results in order; a task's failure is one line, {@code what} and its cause. */
    private static <T> List<T> results(List<Future<T>> fs, String what) {
        List<T> out = new ArrayList<>();
        for (Future<T> f : fs) {
            try {
                out.add(f.get());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            } catch (ExecutionException e) {
                throw new UserError(what + e.getCause());
            }
        }
        return out;
    }

    /**
     * For each prompt's answers (as extracted, null where none) the index of each answer's class of
     * verifier-equal answers ({@link klrl.eval.Majority#classes}), -1 without an answer; prompts in parallel.
     */
    public List<int[]> answerClasses(List<List<String>> answers) {
        Verifier v = math.verifier();
        List<Future<int[]>> fs = new ArrayList<>();
        for (List<String> a : answers) {
            fs.add(pool.submit(() -> klrl.eval.Majority.classes(a, v::sameAnswer)));
        }
        return results(fs, "comparing the answers of a prompt's samples failed: ");
    }

    @Override
    public void close() {
        pool.shutdownNow();
    }
}
