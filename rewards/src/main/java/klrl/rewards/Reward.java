package klrl.rewards;

import java.util.Map;

/**
 * A reward function: (prompt, completion, gold) → score and details. Implementations must be
 * thread-safe (rewards are computed in parallel) and have a public no-argument constructor to be
 * loaded by class name from a config.
 */
public interface Reward {
    record Score(double value, Map<String, Object> details) {}

    Score score(String prompt, String completion, String gold);
}
