package klrl.loss;

import java.util.LinkedHashMap;
import java.util.Map;
import klrl.util.UserError;

/**
 * The rollout correction (algorithm.rollout_correction): when the tokens were drawn from a sampler μ
 * that is not the trainer's π_old (another engine, precision or kernels; a truncated or hotter
 * distribution), each token's terms of the loss are weighted by ρ = π_old/μ, as verl's
 * rollout_correction and TRL's vllm_importance_sampling_correction do.
 *
 * <p>Per response token, log ρ_t = log π_old(y_t) − log μ(y_t), in log space. {@code is}: token —
 * w_t = min(ρ_t, threshold); sequence — every token of a sequence carries min(Π_t ρ_t, threshold).
 * {@code rs} rejects (weight 0) a token (token), a whole sequence by Π_t ρ_t (sequence) or by the
 * per-token geometric mean exp(mean_t log ρ_t) (geometric) whose ratio lies outside [lower, upper];
 * rejected tokens still count in the aggregation's denominators (TRL's masks). The weights are data:
 * no gradient flows through them.
 *
 * @param isThreshold truncation from above (∞ = untruncated, for exact checks)
 */
public record RolloutWeights(Mode is, double isThreshold, Reject rs, double rsLower, double rsUpper) {

    public enum Mode { NONE, TOKEN, SEQUENCE }

    public enum Reject { NONE, TOKEN, SEQUENCE, GEOMETRIC }

    public static final RolloutWeights NONE = new RolloutWeights(Mode.NONE, 2.0, Reject.NONE, 0.5, 2.0);

    public RolloutWeights {
        if (!(isThreshold > 1)) {
            throw new UserError("algorithm.rollout_correction.is_threshold must be > 1 (weights above it are truncated to it), got "
                    + isThreshold);
        }
        if (!(rsLower >= 0 && rsLower < rsUpper)) {
            throw new UserError("algorithm.rollout_correction.rs_threshold_lower must be ≥ 0 and below rs_threshold (" + rsUpper
                    + "), got " + rsLower);
        }
    }

    /** Parses a mode of the config, naming the key when it is not one. */
    public static Mode mode(String s) {
        return switch (s) {
            case "none" -> Mode.NONE;
            case "token" -> Mode.TOKEN;
            case "sequence" -> Mode.SEQUENCE;
            default -> throw new UserError("algorithm.rollout_correction.is must be none, token or sequence; got '" + s + "'");
        };
    }

    public static Reject reject(String s) {
        return switch (s) {
            case "none" -> Reject.NONE;
            case "token" -> Reject.TOKEN;
            case "sequence" -> Reject.SEQUENCE;
            case "geometric" -> Reject.GEOMETRIC;
            default -> throw new UserError("algorithm.rollout_correction.rs must be none, token, sequence or geometric; got '" + s + "'");
        };
    }

    /** Whether any weight can differ from 1. */
    public boolean active() {
        return is != Mode.NONE || rs != Reject.NONE;
    }

    /** What the correction does, for the start-up line. */
    public String describe() {
        if (!active()) {
            return "none";
        }
        String s = is == Mode.NONE ? "" : is.name().toLowerCase(java.util.Locale.ROOT) + "-level importance weights π_old/μ"
                + (Double.isInfinite(isThreshold) ? "" : " truncated at " + isThreshold);
        if (rs != Reject.NONE) {
            s += (s.isEmpty() ? "" : ", ") + rs.name().toLowerCase(java.util.Locale.ROOT) + " rejection outside [" + rsLower + ", "
                    + rsUpper + "]";
        }
        return s;
    }

    /** Per-token weights [rows·r] (zeros on padding) and the step's correction metrics. */
    public record Out(float[] weights, Map<String, Double> metrics) {}

    /** The weights of a step: {@code old} = log π_old, {@code mu} = log μ, both [rows·r] with {@code mask}. */
    public Out apply(float[] old, float[] mu, float[] mask, int rows, int r) {
        double[] logRho = new double[old.length];
        for (int i = 0; i < old.length; i++) {
            logRho[i] = mask[i] > 0 ? (double) old[i] - mu[i] : 0;
        }
        boolean[] rejected = new boolean[logRho.length];
        double[] w = weights(logRho, mask, rows, r, rejected);
        float[] out = new float[w.length];
        for (int i = 0; i < w.length; i++) {
            out[i] = (float) w[i];
        }
        return new Out(out, metrics(logRho, w, rejected, mask, rows, r));
    }

    /** The weights from per-token log ratios log ρ [rows·r] (the exact toy calls this in float64). */
    public double[] weights(double[] logRho, float[] mask, int rows, int r) {
        return weights(logRho, mask, rows, r, new boolean[logRho.length]);
    }

    /** As above, marking in {@code rejected} the tokens rejection zeroed (a weight can also underflow to 0). */
    private double[] weights(double[] logRho, float[] mask, int rows, int r, boolean[] rejected) {
        double[] w = new double[logRho.length];
        for (int i = 0; i < rows; i++) {
            double seq = 0;
            int n = 0;
            for (int t = 0; t < r; t++) {
                if (mask[i * r + t] > 0) {
                    seq += logRho[i * r + t];
                    n++;
                }
            }
            boolean rejectRow = switch (rs) {
                case SEQUENCE -> outside(seq);
                case GEOMETRIC -> n > 0 && outside(seq / n);
                default -> false;
            };
            for (int t = 0; t < r; t++) {
                int k = i * r + t;
                if (mask[k] <= 0) {
                    continue;
                }
                double v = switch (is) {
                    case NONE -> 1.0;
                    case TOKEN -> Math.min(Math.exp(logRho[k]), isThreshold);
                    case SEQUENCE -> Math.min(Math.exp(seq), isThreshold);
                };
                rejected[k] = rejectRow || (rs == Reject.TOKEN && outside(logRho[k]));
                w[k] = rejected[k] ? 0 : v;
            }
        }
        return w;
    }

    private boolean outside(double logRatio) {
        return logRatio < Math.log(rsLower) || logRatio > Math.log(rsUpper);
    }

    /**
     * rollout_is_mean/min/max of the weights applied (after truncation; over tokens, or over sequences
     * with sequence weights; rejected ones left out), rollout_is_clipped_fraction (the share truncated),
     * rollout_rs_masked_fraction (the share of response tokens rejected).
     */
    private Map<String, Double> metrics(double[] logRho, double[] w, boolean[] rejectedToken, float[] mask, int rows, int r) {
        Map<String, Double> m = new LinkedHashMap<>();
        double sum = 0, min = Double.POSITIVE_INFINITY, max = Double.NEGATIVE_INFINITY;
        long units = 0, clipped = 0, tokens = 0, rejected = 0;
        for (int i = 0; i < rows; i++) {
            double seq = 0;
            boolean any = false, kept = false;
            for (int t = 0; t < r; t++) {
                int k = i * r + t;
                if (mask[k] <= 0) {
                    continue;
                }
                tokens++;
                seq += logRho[k];
                any = true;
                if (rejectedToken[k]) {
                    rejected++;
                    continue;
                }
                kept = true;
                if (is == Mode.TOKEN) {
                    sum += w[k];
                    min = Math.min(min, w[k]);
                    max = Math.max(max, w[k]);
                    units++;
                    clipped += Math.exp(logRho[k]) > isThreshold ? 1 : 0;
                }
            }
            if (is == Mode.SEQUENCE && any && kept) {
                double v = Math.min(Math.exp(seq), isThreshold);
                sum += v;
                min = Math.min(min, v);
                max = Math.max(max, v);
                units++;
                clipped += Math.exp(seq) > isThreshold ? 1 : 0;
            }
        }
        if (is != Mode.NONE) {
            m.put("rollout_is_mean", units == 0 ? Double.NaN : sum / units);
            m.put("rollout_is_min", units == 0 ? Double.NaN : min);
            m.put("rollout_is_max", units == 0 ? Double.NaN : max);
            m.put("rollout_is_clipped_fraction", units == 0 ? 0.0 : (double) clipped / units);
        }
        if (rs != Reject.NONE) {
            m.put("rollout_rs_masked_fraction", tokens == 0 ? 0.0 : (double) rejected / tokens);
        }
        return m;
    }

    /**
     * KL(μ‖π_old) estimated on μ's samples over the response tokens: rollout_mismatch_kl_k1 = mean of
     * log μ − log π_old, rollout_mismatch_kl_k3 = mean of ρ − 1 − log ρ with ρ = π_old/μ.
     */
    public static Map<String, Double> mismatch(float[] old, float[] mu, float[] mask) {
        double k1 = 0, k3 = 0;
        long n = 0;
        for (int i = 0; i < old.length; i++) {
            if (mask[i] > 0) {
                double d = (double) old[i] - mu[i];
                k1 -= d;
                k3 += Math.expm1(d) - d;
                n++;
            }
        }
        Map<String, Double> m = new LinkedHashMap<>();
        m.put("rollout_mismatch_kl_k1", n == 0 ? 0.0 : k1 / n);
        m.put("rollout_mismatch_kl_k3", n == 0 ? 0.0 : k3 / n);
        return m;
    }
}
