package klrl.advantage;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import java.util.LinkedHashMap;
import java.util.Map;
import klrl.util.UserError;

/**
 * Advantage estimators by name (verl's core_algos conventions). All take token-level rewards [B,T]
 * (the outcome score on each response's last token, minus β·k_t when the KL is in the reward), so
 * the in-reward KL combines with every estimator the way verl combines it.
 *
 * <p>Advantages are detached, so the recurrences run in plain double arithmetic: exact in the
 * float64 toy and the same code in float32 training.
 */
public interface AdvantageEstimator {

    /** Output: advantages and value/return targets, both [B,T], zero on padding. */
    record Result(NDArray advantages, NDArray returns) {}

    /**
     * @param groups group id per row (the n samples of one prompt share an id)
     * @param values critic values [B,T] for GAE, else null
     */
    Result compute(NDArray tokenRewards, NDArray mask, int[] groups, NDArray values, Config c);

    /**
     * @param normByStd GRPO divides by a std (false = Dr. GRPO)
     * @param eps       GRPO's std epsilon (verl: 1e-6)
     * @param batchStd  that std is the whole batch's (TRL's scale_rewards: batch), not the group's
     */
    record Config(boolean normByStd, double gamma, double lambda, double eps, boolean batchStd) {
        public Config(boolean normByStd, double gamma, double lambda, double eps) {
            this(normByStd, gamma, lambda, eps, false);
        }

        public static Config defaults() {
            return new Config(true, 1.0, 1.0, 1e-6);
        }

        /** From algorithm.scale_rewards (group, batch or none). */
        public static Config of(String scaleRewards, double gamma, double lambda) {
            return new Config(!scaleRewards.equals("none"), gamma, lambda, 1e-6, scaleRewards.equals("batch"));
        }
    }

    Map<String, AdvantageEstimator> REGISTRY = registry();

    private static Map<String, AdvantageEstimator> registry() {
        Map<String, AdvantageEstimator> m = new LinkedHashMap<>();
        m.put("grpo", Estimators::grpo);
        m.put("rloo", Estimators::rloo);
        m.put("reinforce++", Estimators::reinforcePlusPlus);
        m.put("reinforce++-baseline", Estimators::reinforcePlusPlusBaseline);
        m.put("gae", Estimators::gae);
        m.put("reinforce", Estimators::reinforce);
        return m;
    }

    static AdvantageEstimator parse(String name) {
        AdvantageEstimator e = REGISTRY.get(name);
        if (e == null) {
            throw new UserError("unknown advantage estimator '" + name + "'; expected one of " + REGISTRY.keySet());
        }
        return e;
    }

    /** Reads any float tensor as [rows][cols] doubles. */
    static double[][] rows(NDArray x) {
        long b = x.getShape().get(0), t = x.getShape().get(1);
        double[] flat = x.toType(DataType.FLOAT64, false).toDoubleArray();
        double[][] out = new double[(int) b][(int) t];
        for (int i = 0; i < b; i++) {
            System.arraycopy(flat, (int) (i * t), out[i], 0, (int) t);
        }
        return out;
    }

    /** Writes [rows][cols] doubles back as a tensor of {@code like}'s dtype and manager. */
    static NDArray tensor(double[][] v, NDArray like) {
        int b = v.length, t = b == 0 ? 0 : v[0].length;
        double[] flat = new double[b * t];
        for (int i = 0; i < b; i++) {
            System.arraycopy(v[i], 0, flat, i * t, t);
        }
        return like.getManager().create(flat, new Shape(b, t)).toType(like.getDataType(), false);
    }
}
