package klrl.rewards;

/**
 * Reward functions by name: "math" (this project's verifier; also "math-verify"), "hendrycks" (verl's
 * default MATH grader), "dapo" (DAPO's "Answer:" rule), "format", or the fully qualified name of a
 * user's Reward class.
 */
public final class Rewards {
    private Rewards() {}

    public static Reward byName(String name) {
        return byName(name, Rewards.class.getClassLoader());
    }

    /** As above, with user classes looked up through {@code loader} (e.g. one over a user's jar). */
    public static Reward byName(String name, ClassLoader loader) {
        switch (name) {
            case "math":
                return new MathReward();
            case "format":
                return new FormatReward();
            case "math-verify":
                return new MathReward();
            case "hendrycks":
                return new HendrycksReward();
            case "dapo":
                return new DapoReward();
            default:
                break;
        }
        Class<?> c;
        try {
            c = Class.forName(name, true, loader);
        } catch (ClassNotFoundException e) {
            throw new IllegalArgumentException("reward '" + name + "': not a built-in (math, math-verify, hendrycks, dapo, format) and no class of that name"
                    + " is on the classpath or in train.reward_jar (--reward-jar FILE)");
        }
        if (!Reward.class.isAssignableFrom(c)) {
            throw new IllegalArgumentException("reward '" + name + "': class does not implement klrl.rewards.Reward");
        }
        try {
            return (Reward) c.getDeclaredConstructor().newInstance();
        } catch (ReflectiveOperationException e) {
            throw new IllegalArgumentException("reward '" + name + "': needs a public no-argument constructor");
        }
    }
}
