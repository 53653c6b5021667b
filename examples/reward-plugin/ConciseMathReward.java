package example;

import klrl.rewards.MathReward;
import klrl.rewards.Reward;

/**
 * A user's reward: the math verifier's score, minus 0.001 for every character a completion spends
 * beyond 400. A reward must be thread-safe and have a public no-argument constructor.
 */
public final class ConciseMathReward implements Reward {
    private final MathReward math = new MathReward();

    @Override
    public Score score(String prompt, String completion, String gold) {
        Score m = math.score(prompt, completion, gold);
        double penalty = 0.001 * Math.max(0, completion.length() - 400);
        return new Score(m.value() - penalty, m.details());
    }
}
