package klrl.toy;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import klrl.advantage.AdvantageEstimator;
import klrl.kl.KlEstimator;
import klrl.kl.KlPlacement;
import klrl.loss.Aggregation;
import klrl.loss.LossConfig;
import klrl.loss.LossTerm;
import klrl.loss.PolicyLoss;
import klrl.loss.RolloutWeights;
import klrl.loss.TokenBatch;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * The exact KL-gradient toy: a tabular autoregressive policy (one row of V logits per prefix,
 * prefixes ordered by length then lexicographically) over sequences of length T.
 *
 * <p>For each estimator × placement it computes, by enumerating all V^T sequences, the expected
 * gradient w.r.t. the policy logits of the loss that the trainer's own code builds — the same
 * KlEstimator, KlPlacement, advantage estimator ("reinforce": no baseline), PolicyLoss and KlLoss,
 * with sequence-summed aggregation and β = 1 — and compares it with the exact ∇KL(π‖π_ref).
 * Everything runs in float64 with the estimators' safeguards off.
 *
 * <p>With a sampler μ ≠ π (another engine, a temperature) the sequences are drawn from μ, the expectations
 * and the Monte-Carlo draws are over μ, and each row comes once per rollout correction: the trainer's
 * RolloutWeights (untruncated) hand the loss per-token weights π/μ (token) or their product over the
 * sequence (sequence), or none — so the table shows which placements each correction keeps unbiased.
 */
public final class KlToy {

    /**
     * @param sampler the logits of the sampler μ the sequences are drawn from (the shape of {@code policy}), or
     *                null: drawn from π itself, the on-policy toy
     */
    public record Spec(int vocab, int length, double[][] policy, double[][] reference, double[][] sampler) {
        public Spec {
            int rows = rowCount(vocab, length);
            check("policy", policy, rows, vocab);
            check("reference", reference, rows, vocab);
            if (sampler != null) {
                check("sampler", sampler, rows, vocab);
            }
        }

        public Spec(int vocab, int length, double[][] policy, double[][] reference) {
            this(vocab, length, policy, reference, null);
        }

        private static void check(String field, double[][] tab, int rows, int vocab) {
            if (tab.length != rows) {
                throw new UserError("kl-toy spec: '" + field + "' needs " + rows + " rows (V^0+…+V^(T−1)), got " + tab.length);
            }
            for (double[] r : tab) {
                if (r.length != vocab) {
                    throw new UserError("kl-toy spec: every row of '" + field + "' needs " + vocab + " logits, got " + r.length);
                }
            }
        }

        public static Spec read(Path file) {
            JsonNode n = Json.read(file);
            for (String k : List.of("vocab", "length", "policy", "reference")) {
                if (!n.has(k)) {
                    throw new UserError(file + ": field '" + k + "' is missing");
                }
            }
            return new Spec(n.get("vocab").asInt(), n.get("length").asInt(), table(file, n, "policy"), table(file, n, "reference"),
                    n.has("sampler") ? table(file, n, "sampler") : null);
        }

        private static double[][] table(Path file, JsonNode n, String field) {
            JsonNode a = n.get(field);
            if (!a.isArray()) {
                throw new UserError(file + ": field '" + field + "' must be a list of rows of logits, got " + a.getNodeType());
            }
            double[][] t = new double[a.size()][];
            for (int i = 0; i < t.length; i++) {
                if (!a.get(i).isArray()) {
                    throw new UserError(file + ": field '" + field + "' row " + i + " must be a list of logits, got " + a.get(i));
                }
                t[i] = new double[a.get(i).size()];
                for (int j = 0; j < t[i].length; j++) {
                    JsonNode x = a.get(i).get(j);
                    if (!x.isNumber()) {
                        throw new UserError(file + ": field '" + field + "' row " + i + " holds a non-number: " + x);
                    }
                    t[i][j] = x.asDouble();
                }
            }
            return t;
        }

        /** Both tables drawn N(0, 1) from a seed. */
        public static Spec random(int vocab, int length, long seed) {
            SplittableRandom r = new SplittableRandom(seed);
            int rows = rowCount(vocab, length);
            double[][] p = new double[rows][vocab], q = new double[rows][vocab];
            for (double[][] t : new double[][][] {p, q}) {
                for (double[] row : t) {
                    for (int j = 0; j < vocab; j++) {
                        row[j] = klrl.model.TinyModel.gaussian(r);
                    }
                }
            }
            return new Spec(vocab, length, p, q);
        }

        public Spec withSampler(double[][] logits) {
            return new Spec(vocab, length, policy, reference, logits);
        }

        /** The policy at temperature t (logits / t) as the sampler: a hotter or colder engine than the trainer's π. */
        public Spec withSamplerTemperature(double t) {
            if (!(t > 0) || Double.isInfinite(t)) {
                throw new UserError("--sampler-temperature must be a finite number > 0, got " + t);
            }
            double[][] mu = new double[policy.length][];
            for (int i = 0; i < mu.length; i++) {
                mu[i] = new double[vocab];
                for (int j = 0; j < vocab; j++) {
                    mu[i][j] = policy[i][j] / t;
                }
            }
            return withSampler(mu);
        }
    }

    /**
     * One estimator × placement (× rollout correction, with a sampler): how far its expected gradient is from ∇KL.
     *
     * @param policyLoss   vanilla (seq-mean-token-sum) or gspo (its seq-mean-token-mean): GSPO's objective is the
     *                     per-token mean, so its rows are measured against ∇KL/T (every toy sequence has T tokens)
     * @param correction   none, token or sequence (the weights π/μ of algorithm.rollout_correction, untruncated), or
     *                     null without a sampler
     */
    public record Row(String policyLoss, String estimator, String placement, String correction, double relativeBias, double cosine,
                      double variance, Double mcRelativeBias, Double mcVariance) {}

    public record Result(double kl, double gradNorm, List<Row> rows) {}

    static int rowCount(int v, int t) {
        long rows = 0, p = 1;
        for (int k = 0; k < t; k++) {
            rows += p;
            p *= v;
        }
        if (v < 2 || t < 1 || rows > 2_000_000) {
            throw new UserError("kl-toy: need vocab ≥ 2, length ≥ 1 and at most 2e6 prefixes");
        }
        return (int) rows;
    }

    private final Spec spec;
    private final int rows, nSeq;
    private final long[][] prefixRow, tokens; // [seq][t]

    public KlToy(Spec spec) {
        this.spec = spec;
        this.rows = rowCount(spec.vocab(), spec.length());
        long n = Math.round(Math.pow(spec.vocab(), spec.length()));
        if (n > 200_000) {
            throw new UserError("kl-toy: V^T = " + n + " sequences is too many to enumerate (max 200000)");
        }
        this.nSeq = (int) n;
        int v = spec.vocab(), t = spec.length();
        prefixRow = new long[nSeq][t];
        tokens = new long[nSeq][t];
        for (int s = 0; s < nSeq; s++) {
            int rem = s;
            for (int k = t - 1; k >= 0; k--) {
                tokens[s][k] = rem % v;
                rem /= v;
            }
            long offset = 0, pow = 1, lex = 0;
            for (int k = 0; k < t; k++) {
                prefixRow[s][k] = offset + lex; // prefix y_<k: rows of length k start at offset
                lex = lex * v + tokens[s][k];
                offset += pow;
                pow *= v;
            }
        }
    }

    /** Log-probs [1,T] of sequence s's tokens under logits table z [R,V] (differentiable in z). */
    private NDArray seqLogp(NDArray z, int s) {
        NDManager m = z.getManager();
        int v = spec.vocab(), t = spec.length();
        long[] flat = new long[t];
        for (int k = 0; k < t; k++) {
            flat[k] = prefixRow[s][k] * v + tokens[s][k];
        }
        return z.logSoftmax(1).reshape(-1).get(m.create(flat)).reshape(1, t);
    }

    private static NDArray table(NDManager m, double[][] t) {
        double[] flat = new double[t.length * t[0].length];
        for (int i = 0; i < t.length; i++) {
            System.arraycopy(t[i], 0, flat, i * t[0].length, t[0].length);
        }
        return m.create(flat, new Shape(t.length, t[0].length));
    }

    private static Engine engine() {
        return Engine.getEngine("PyTorch");
    }

    /** log π(y) for every sequence, and KL(π‖π_ref) with its exact gradient by enumeration. */
    private double[] exactKl(NDManager parent, double[] logPi, double[] grad) {
        try (NDManager m = parent.newSubManager()) {
            NDArray z = table(m, spec.policy());
            NDArray zr = table(m, spec.reference());
            z.setRequiresGradient(true);
            double kl;
            try (GradientCollector gc = engine().newGradientCollector()) {
                NDArray total = null;
                for (int s = 0; s < nSeq; s++) {
                    NDArray lp = seqLogp(z, s).sum();
                    NDArray lr = seqLogp(zr, s).sum();
                    NDArray term = lp.exp().mul(lp.sub(lr));
                    total = total == null ? term : total.add(term);
                    logPi[s] = lp.getDouble();
                }
                kl = total.getDouble();
                gc.backward(total);
            }
            System.arraycopy(z.getGradient().toDoubleArray(), 0, grad, 0, grad.length);
            return new double[] {kl};
        }
    }

    /** log μ(y) of every sequence under the logits table {@code t}. */
    private double[] sequenceLogProbs(NDManager parent, double[][] t) {
        try (NDManager m = parent.newSubManager()) {
            NDArray z = table(m, t);
            double[] out = new double[nSeq];
            for (int s = 0; s < nSeq; s++) {
                out[s] = seqLogp(z, s).sum().getDouble();
            }
            return out;
        }
    }

    /**
     * The gradient of the trainer's loss for a batch holding only sequence s, drawn from the sampler and
     * weighted by the rollout correction {@code correction} (null: no sampler, no weights — the on-policy toy).
     */
    private double[] sampleGradient(NDManager parent, int s, LossConfig cfg, RolloutWeights.Mode correction) {
        try (NDManager m = parent.newSubManager()) {
            NDArray z = table(m, spec.policy());
            NDArray zr = table(m, spec.reference());
            z.setRequiresGradient(true);
            try (GradientCollector gc = engine().newGradientCollector()) {
                NDArray logp = seqLogp(z, s);
                NDArray refLogp = seqLogp(zr, s);
                int t = spec.length();
                NDArray mask = m.ones(new Shape(1, t), DataType.FLOAT64);
                // rollout → reward (no task reward here) → KL shaping → advantages → loss, as the trainer does
                NDArray k = cfg.klEstimator().perToken(logp, refLogp, null, cfg.klSafeguards());
                NDArray scores = m.zeros(new Shape(1, t), DataType.FLOAT64);
                NDArray rewards = cfg.klPlacement().shapeRewards(scores, k, mask, cfg.klCoef());
                NDArray adv = AdvantageEstimator.parse("reinforce")
                        .compute(rewards, mask, new int[] {0}, null, AdvantageEstimator.Config.defaults()).advantages();
                // π_old is π (one update per rollout): only the sampler differs from the policy being trained
                TokenBatch b = new TokenBatch(logp, logp.stopGradient(), refLogp, adv, mask, null, null, null, null, null, null,
                        correction == null ? null : rolloutWeights(m, logp, s, correction));
                NDArray loss = LossTerm.total(LossTerm.forConfig(cfg, false), b, cfg).loss();
                gc.backward(loss);
            }
            return z.getGradient().toDoubleArray();
        }
    }

    /**
     * The trainer's rollout weights [1,T] of sequence s from log ρ_t = log π(y_t) − log μ(y_t): untruncated and
     * without rejection, so their expectations are the exact corrections the table compares.
     */
    private NDArray rolloutWeights(NDManager m, NDArray logp, int s, RolloutWeights.Mode correction) {
        int t = spec.length();
        double[] pi = logp.toDoubleArray(), mu = seqLogp(table(m, spec.sampler()), s).toDoubleArray();
        double[] logRho = new double[t];
        float[] mask = new float[t];
        for (int k = 0; k < t; k++) {
            logRho[k] = pi[k] - mu[k];
            mask[k] = 1;
        }
        RolloutWeights rw = new RolloutWeights(correction, Double.POSITIVE_INFINITY, RolloutWeights.Reject.NONE, 0.5, 2.0);
        return m.create(rw.weights(logRho, mask, 1, t), new Shape(1, t));
    }

    /** The corrections a policy loss gets rows for: none without a sampler; GSPO's sequence ratio has no token form. */
    private List<RolloutWeights.Mode> corrections(PolicyLoss.Kind loss) {
        if (spec.sampler() == null) {
            return java.util.Collections.singletonList(null);
        }
        return loss == PolicyLoss.Kind.GSPO ? List.of(RolloutWeights.Mode.NONE, RolloutWeights.Mode.SEQUENCE)
                : List.of(RolloutWeights.Mode.NONE, RolloutWeights.Mode.TOKEN, RolloutWeights.Mode.SEQUENCE);
    }

    /** log-probabilities of the sequences under the distribution the rows draw from: μ, or π without a sampler. */
    private double[] drawLogProbs(NDManager manager, double[] logPi) {
        return spec.sampler() == null ? logPi : sequenceLogProbs(manager, spec.sampler());
    }

    public Result run(int samples, long seed, NDManager manager) {
        int dim = rows * spec.vocab();
        double[] logPi = new double[nSeq], gradKl = new double[dim];
        double kl = exactKl(manager, logPi, gradKl)[0];
        double gnorm = norm(gradKl);
        double[] logQ = drawLogProbs(manager, logPi);
        // Monte-Carlo draws: sequence ids sampled from the sampler (the same draws for every row of the table).
        int[] draws = new int[samples];
        if (samples > 0) {
            double[] cdf = new double[nSeq];
            double c = 0;
            for (int s = 0; s < nSeq; s++) {
                c += Math.exp(logQ[s]);
                cdf[s] = c;
            }
            SplittableRandom r = new SplittableRandom(seed);
            for (int i = 0; i < samples; i++) {
                double u = r.nextDouble() * c;
                int idx = java.util.Arrays.binarySearch(cdf, u);
                draws[i] = Math.min(nSeq - 1, idx >= 0 ? idx + 1 : -idx - 1);
            }
        }
        List<Row> out = new ArrayList<>();
        for (PolicyLoss.Kind loss : PolicyLoss.Kind.values()) {
            double scale = loss == PolicyLoss.Kind.GSPO ? 1.0 / spec.length() : 1.0;
            double[] target = new double[dim];
            for (int i = 0; i < dim; i++) {
                target[i] = gradKl[i] * scale;
            }
            for (String est : List.of("k1", "k2", "k3")) {
                for (String pl : List.of("reward", "loss", "loss-unbiased")) {
                    for (RolloutWeights.Mode corr : corrections(loss)) {
                        out.add(row(manager, config(loss, est, pl), corr, logQ, target, gnorm * scale, draws, samples));
                    }
                }
            }
        }
        return new Result(kl, gnorm, out);
    }

    /** The trainer's loss settings of one row: β = 1, no clipping in play (on-policy), no safeguards. */
    static LossConfig config(PolicyLoss.Kind loss, String estimator, String placement) {
        Aggregation agg = loss == PolicyLoss.Kind.GSPO ? Aggregation.SEQ_MEAN_TOKEN_MEAN : Aggregation.SEQ_MEAN_TOKEN_SUM;
        return new LossConfig(agg, 0.2, 0.2, null, KlEstimator.parse(estimator), KlPlacement.parse(placement), 1.0, false, 0.0,
                null, 0.0, loss);
    }

    /**
     * One row: the expected gradient by enumeration over the sampler's distribution {@code logQ} (and from the
     * Monte-Carlo draws) against {@code target}.
     */
    private Row row(NDManager manager, LossConfig cfg, RolloutWeights.Mode corr, double[] logQ, double[] target, double tnorm,
                    int[] draws, int samples) {
        int dim = target.length;
        double[][] g = new double[nSeq][];
        double[] mean = new double[dim];
        for (int s = 0; s < nSeq; s++) {
            g[s] = sampleGradient(manager, s, cfg, corr);
            double p = Math.exp(logQ[s]);
            for (int i = 0; i < dim; i++) {
                mean[i] += p * g[s][i];
            }
        }
        double var = 0;
        for (int s = 0; s < nSeq; s++) {
            var += Math.exp(logQ[s]) * sqDist(g[s], mean);
        }
        Double mcBias = null, mcVar = null;
        if (samples > 0) {
            double[] mc = new double[dim];
            for (int d : draws) {
                for (int i = 0; i < dim; i++) {
                    mc[i] += g[d][i] / samples;
                }
            }
            mcBias = Math.sqrt(sqDist(mc, target)) / tnorm;
            double sv = 0;
            for (int d : draws) {
                sv += sqDist(g[d], mc);
            }
            mcVar = samples > 1 ? sv / (samples - 1) : 0.0;
        }
        double mn = norm(mean);
        double cos = mn <= 1e-12 * tnorm ? 0.0 : dot(mean, target) / (mn * tnorm);
        return new Row(cfg.policyLoss().id, cfg.klEstimator().name(), cfg.klPlacement().name(), corr == null ? null : id(corr),
                Math.sqrt(sqDist(mean, target)) / tnorm, cos, var, mcBias, mcVar);
    }

    /** A correction as the config spells it: none, token, sequence. */
    static String id(RolloutWeights.Mode corr) {
        return corr.name().toLowerCase(java.util.Locale.ROOT);
    }

    /** The exact ∇KL and the expected gradient of one estimator × placement, for tests (uncorrected under a sampler). */
    public double[][] expectedGradient(String estimator, String placement, NDManager manager) {
        return expectedGradient(estimator, placement, "none", manager);
    }

    /**
     * The vanilla loss's expected gradient E_μ[…] of one estimator × placement × correction (none, token or
     * sequence; any of them without a sampler, where all weights are 1), the exact ∇KL and the log-probabilities of
     * the sequences under the distribution drawn from (μ, or π without a sampler), for tests.
     */
    public double[][] expectedGradient(String estimator, String placement, String correction, NDManager manager) {
        int dim = rows * spec.vocab();
        double[] logPi = new double[nSeq], gradKl = new double[dim];
        exactKl(manager, logPi, gradKl);
        double[] logQ = drawLogProbs(manager, logPi);
        LossConfig cfg = config(PolicyLoss.Kind.VANILLA, estimator, placement);
        RolloutWeights.Mode mode = RolloutWeights.mode(correction);
        RolloutWeights.Mode corr = spec.sampler() == null ? null : mode;
        double[] mean = new double[dim];
        for (int s = 0; s < nSeq; s++) {
            double[] g = sampleGradient(manager, s, cfg, corr);
            for (int i = 0; i < dim; i++) {
                mean[i] += Math.exp(logQ[s]) * g[i];
            }
        }
        return new double[][] {mean, gradKl, logQ};
    }

    public int rows() {
        return rows;
    }

    /** Probability under π that a sequence passes through prefix row r (1 for the empty prefix). */
    public double[] prefixProbabilities(double[] logPi) {
        double[] p = new double[rows];
        for (int s = 0; s < nSeq; s++) {
            for (int k = 0; k < spec.length(); k++) {
                p[(int) prefixRow[s][k]] += Math.exp(logPi[s]);
            }
        }
        return p;
    }

    static double dot(double[] a, double[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) {
            s += a[i] * b[i];
        }
        return s;
    }

    static double norm(double[] a) {
        return Math.sqrt(dot(a, a));
    }

    static double sqDist(double[] a, double[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) {
            s += (a[i] - b[i]) * (a[i] - b[i]);
        }
        return s;
    }
}
