package klrl.advantage;

import ai.djl.ndarray.NDArray;
import java.util.HashMap;
import java.util.Map;

/** The estimators of {@link AdvantageEstimator#REGISTRY}, one small function each. */
final class Estimators {
    private Estimators() {}

    /** Σ_t r_t·m_t per row: the sequence return outcome-level estimators start from. */
    static double[] scores(double[][] r, double[][] m) {
        double[] s = new double[r.length];
        for (int i = 0; i < r.length; i++) {
            for (int t = 0; t < r[i].length; t++) {
                s[i] += r[i][t] * m[i][t];
            }
        }
        return s;
    }

    static double[][] broadcast(double[] s, double[][] m) {
        double[][] out = new double[m.length][];
        for (int i = 0; i < m.length; i++) {
            out[i] = new double[m[i].length];
            for (int t = 0; t < m[i].length; t++) {
                out[i][t] = s[i] * m[i][t];
            }
        }
        return out;
    }

    static AdvantageEstimator.Result outcome(double[] adv, double[][] m, NDArray like) {
        NDArray a = AdvantageEstimator.tensor(broadcast(adv, m), like);
        return new AdvantageEstimator.Result(a, a);
    }

    /** Group statistics: per group the count, mean and unbiased std of the scores. */
    record Group(int n, double mean, double std) {}

    static Map<Integer, Group> groupStats(double[] s, int[] g) {
        Map<Integer, double[]> acc = new HashMap<>();
        for (int i = 0; i < s.length; i++) {
            double[] a = acc.computeIfAbsent(g[i], k -> new double[2]);
            a[0]++;
            a[1] += s[i];
        }
        Map<Integer, Double> ss = new HashMap<>();
        for (int i = 0; i < s.length; i++) {
            double mean = acc.get(g[i])[1] / acc.get(g[i])[0];
            ss.merge(g[i], (s[i] - mean) * (s[i] - mean), Double::sum);
        }
        Map<Integer, Group> out = new HashMap<>();
        acc.forEach((k, a) -> {
            int n = (int) a[0];
            out.put(k, new Group(n, a[1] / n, n > 1 ? Math.sqrt(ss.get(k) / (n - 1)) : 1.0));
        });
        return out;
    }

    /** Outcome advantages from each sequence's return and its group's statistics. */
    static AdvantageEstimator.Result byGroup(NDArray r, NDArray mask, int[] groups,
                                             java.util.function.BiFunction<Double, Group, Double> f) {
        double[][] m = AdvantageEstimator.rows(mask);
        double[] s = scores(AdvantageEstimator.rows(r), m);
        Map<Integer, Group> st = groupStats(s, groups);
        double[] adv = new double[s.length];
        for (int i = 0; i < s.length; i++) {
            adv[i] = f.apply(s[i], st.get(groups[i]));
        }
        return outcome(adv, m, r);
    }

    /**
     * GRPO: (s − mean_group)/(std + ε) with the group's std, or the whole batch's (TRL's scale_rewards:
     * batch), or without a std (Dr. GRPO); a lone sample keeps s.
     */
    static AdvantageEstimator.Result grpo(NDArray r, NDArray mask, int[] groups, NDArray values, AdvantageEstimator.Config c) {
        double batchStd = c.batchStd() ? batchStd(scores(AdvantageEstimator.rows(r), AdvantageEstimator.rows(mask))) : 0;
        return byGroup(r, mask, groups, (s, g) -> {
            double mean = g.n() > 1 ? g.mean() : 0.0, std = c.batchStd() ? batchStd : g.n() > 1 ? g.std() : 1.0;
            return c.normByStd() ? (s - mean) / (std + c.eps()) : s - mean;
        });
    }

    /** The unbiased std of all the batch's scores (TRL: rewards.std()); 0 for one score. */
    static double batchStd(double[] s) {
        if (s.length < 2) {
            return 0;
        }
        double mean = java.util.Arrays.stream(s).average().orElse(0), ss = 0;
        for (double x : s) {
            ss += (x - mean) * (x - mean);
        }
        return Math.sqrt(ss / (s.length - 1));
    }

    /**
     * REINFORCE++-baseline (verl's reinforce_plus_plus_baseline): each sequence's return minus its
     * group's mean (a lone sample: minus 0), on every token, then whitened over the batch's tokens.
     */
    static AdvantageEstimator.Result reinforcePlusPlusBaseline(NDArray r, NDArray mask, int[] groups, NDArray values,
                                                               AdvantageEstimator.Config c) {
        double[][] m = AdvantageEstimator.rows(mask);
        double[] s = scores(AdvantageEstimator.rows(r), m);
        Map<Integer, Group> st = groupStats(s, groups);
        double[] centred = new double[s.length];
        for (int i = 0; i < s.length; i++) {
            Group g = st.get(groups[i]);
            centred[i] = s[i] - (g.n() > 1 ? g.mean() : 0.0);
        }
        NDArray a = AdvantageEstimator.tensor(whiten(broadcast(centred, m), m), r);
        return new AdvantageEstimator.Result(a, a);
    }

    /** RLOO: s_i minus the mean of the other samples of its group, = (n·s_i − Σs)/(n−1). */
    static AdvantageEstimator.Result rloo(NDArray r, NDArray mask, int[] groups, NDArray values, AdvantageEstimator.Config c) {
        return byGroup(r, mask, groups, (s, g) -> g.n() > 1 ? (g.n() * s - g.n() * g.mean()) / (g.n() - 1) : s);
    }

    /** REINFORCE without a baseline: every token gets its sequence's return (the exact toy's setting). */
    static AdvantageEstimator.Result reinforce(NDArray r, NDArray mask, int[] groups, NDArray values, AdvantageEstimator.Config c) {
        double[][] m = AdvantageEstimator.rows(mask);
        return outcome(scores(AdvantageEstimator.rows(r), m), m, r);
    }

    /** REINFORCE++: discounted reward-to-go, reset after each response's end, whitened over the batch. */
    static AdvantageEstimator.Result reinforcePlusPlus(NDArray r, NDArray mask, int[] groups, NDArray values, AdvantageEstimator.Config c) {
        double[][] rw = AdvantageEstimator.rows(r), m = AdvantageEstimator.rows(mask);
        double[][] ret = new double[rw.length][];
        for (int i = 0; i < rw.length; i++) {
            ret[i] = new double[rw[i].length];
            double running = 0;
            for (int t = rw[i].length - 1; t >= 0; t--) {
                running = rw[i][t] + c.gamma() * running;
                ret[i][t] = running;
                running *= m[i][t];
            }
        }
        double[][] adv = whiten(ret, m);
        return new AdvantageEstimator.Result(AdvantageEstimator.tensor(adv, r), AdvantageEstimator.tensor(ret, r));
    }

    /** GAE(γ, λ) with a critic; padding carries values through (verl's masked form); advantages whitened. */
    static AdvantageEstimator.Result gae(NDArray r, NDArray mask, int[] groups, NDArray values, AdvantageEstimator.Config c) {
        if (values == null) {
            throw new klrl.util.UserError("advantage estimator 'gae' needs a critic (algo ppo)");
        }
        double[][] rw = AdvantageEstimator.rows(r), m = AdvantageEstimator.rows(mask), v = AdvantageEstimator.rows(values);
        double[][] adv = new double[rw.length][], ret = new double[rw.length][];
        for (int i = 0; i < rw.length; i++) {
            int len = rw[i].length;
            adv[i] = new double[len];
            ret[i] = new double[len];
            double next = 0, last = 0;
            for (int t = len - 1; t >= 0; t--) {
                double delta = rw[i][t] + c.gamma() * next - v[i][t];
                double lastNew = delta + c.gamma() * c.lambda() * last;
                next = v[i][t] * m[i][t] + (1 - m[i][t]) * next;
                last = lastNew * m[i][t] + (1 - m[i][t]) * last;
                adv[i][t] = last;
                ret[i][t] = (last + v[i][t]) * m[i][t];
            }
        }
        return new AdvantageEstimator.Result(AdvantageEstimator.tensor(whiten(adv, m), r), AdvantageEstimator.tensor(ret, r));
    }

    static double[][] broadcastMask(double[][] x, double[][] m) {
        double[][] out = new double[x.length][];
        for (int i = 0; i < x.length; i++) {
            out[i] = new double[x[i].length];
            for (int t = 0; t < x[i].length; t++) {
                out[i][t] = x[i][t] * m[i][t];
            }
        }
        return out;
    }

    /** verl's masked_whiten: (x − mean)/sqrt(var + 1e-8) over masked entries, var with Bessel's correction; zero on padding. */
    static double[][] whiten(double[][] x, double[][] m) {
        double n = 0, sum = 0;
        for (int i = 0; i < x.length; i++) {
            for (int t = 0; t < x[i].length; t++) {
                n += m[i][t];
                sum += x[i][t] * m[i][t];
            }
        }
        if (n < 2) {
            return broadcastMask(x, m);
        }
        double mean = sum / n, ss = 0;
        for (int i = 0; i < x.length; i++) {
            for (int t = 0; t < x[i].length; t++) {
                ss += (x[i][t] - mean) * (x[i][t] - mean) * m[i][t];
            }
        }
        double var = ss / n * (n / (n - 1));
        double inv = 1 / Math.sqrt(var + 1e-8);
        double[][] out = new double[x.length][];
        for (int i = 0; i < x.length; i++) {
            out[i] = new double[x[i].length];
            for (int t = 0; t < x[i].length; t++) {
                out[i][t] = (x[i][t] - mean) * inv * m[i][t];
            }
        }
        return out;
    }
}
