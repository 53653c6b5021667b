package klrl.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import klrl.loss.LossConfig;
import klrl.loss.LossTerm;
import klrl.loss.TokenBatch;
import klrl.optim.AdamW;
import klrl.optim.LrSchedule;
import klrl.util.UserError;

/**
 * The policy update of one step: ppo_epochs passes over mini-batches (groups of whole prompts), each
 * mini-batch accumulated over micro-batches and followed by one optimizer step. A micro-batch is
 * differentiated end to end, or stage by stage with per-layer recomputation when
 * train.checkpoint_layers > 0 or the layers are placed over several devices.
 */
final class PolicyUpdate {
    private final Policies nets;
    private final AdamW opt;
    private final LrSchedule lr;
    private final List<LossTerm> terms;
    private final int epochs, micro, checkpointLayers, maxSkipped;
    private final boolean staged;
    private final double gradClip;
    private final NDManager root;
    /** Per-micro-batch gradient spread (train.grad_var), or null. */
    private final GradSpread spread;

    /** Everything the update reads per token ([rows·R] arrays; PPO's two value arrays null otherwise). */
    record Inputs(SequenceBatch all, float[] oldLogp, float[] refLogp, float[] advantages, float[] returns,
                  float[] oldValues, int miniRows, float temperature, long step) {}

    /**
     * Loss metrics averaged over the passes, the mean entropy per token, the mean gradient norm over the
     * updates applied, how many updates were skipped for a non-finite loss or gradient, and the mean
     * grad_var over the mini-batches (NaN unless train.grad_var).
     */
    record Out(Map<String, Double> lossMetrics, double entropy, double gradNorm, int skipped, double gradVar) {}

    PolicyUpdate(Policies nets, AdamW opt, LrSchedule lr, List<LossTerm> terms, int epochs, int micro, int checkpointLayers,
                 boolean staged, double gradClip, int maxSkipped, boolean gradVar, NDManager root) {
        this.maxSkipped = maxSkipped;
        this.nets = nets;
        this.opt = opt;
        this.lr = lr;
        this.terms = terms;
        this.epochs = epochs;
        this.micro = micro;
        this.checkpointLayers = checkpointLayers;
        this.staged = staged || checkpointLayers > 0;
        this.gradClip = gradClip;
        this.root = root;
        Map<String, NDArray> policyParams = new LinkedHashMap<>(nets.trainable);
        policyParams.keySet().removeAll(nets.lrScale.keySet()); // the critic's tensors
        this.spread = gradVar ? new GradSpread(policyParams, root) : null;
    }

    /** Running sums over the micro-batches of one update. */
    private static final class Sums {
        final Map<String, double[]> loss = new LinkedHashMap<>();
        double entropy, gradNorm, gradVar;
        int updates, skipped, gradVars;
        /** The current mini-batch's first non-finite loss, or null. */
        String nonFiniteLoss;
    }

    Out run(Inputs in, LossConfig lc) {
        nets.policy.setTraining(true);
        int n = in.all().rows();
        Sums sums = new Sums();
        for (int epoch = 0; epoch < epochs; epoch++) {
            for (int m0 = 0; m0 < n; m0 += in.miniRows()) {
                miniBatch(in, lc, m0, Math.min(n, m0 + in.miniRows()), sums);
            }
        }
        nets.policy.setTraining(false);
        double tokens = 0;
        for (float f : in.all().responseMask()) {
            tokens += f;
        }
        int passes = epochs * ((n + in.miniRows() - 1) / in.miniRows());
        Map<String, Double> loss = new LinkedHashMap<>();
        sums.loss.forEach((key, v) -> loss.put(key, v[0] / passes));
        return new Out(loss, sums.entropy / (tokens * epochs), sums.updates == 0 ? Double.NaN : sums.gradNorm / sums.updates,
                sums.skipped, sums.gradVars == 0 ? Double.NaN : sums.gradVar / sums.gradVars);
    }

    /** Rows [m0, m1): gradients accumulated over micro-batches, then one optimizer step. */
    private void miniBatch(Inputs in, LossConfig lc, int m0, int m1, Sums sums) {
        float[] w; // aggregation weights over the whole mini-batch, so micro-batch losses add up to its loss
        try (NDManager mm = root.newSubManager()) {
            w = lc.aggregation().weights(in.all().slice(m0, m1).mask(mm)).toFloatArray();
        }
        int r = in.all().r(), micros = 0;
        double wSum = sum(w);
        for (int s0 = m0; s0 < m1; s0 += micro, micros++) {
            int s1 = Math.min(m1, s0 + micro);
            float[] weights = Arrays.copyOfRange(w, (s0 - m0) * r, (s1 - m0) * r);
            microBatch(in, lc, s0, s1, weights, (double) (s1 - s0) / (m1 - m0), sums);
            if (spread != null) {
                spread.afterMicroBatch(sum(weights) / wSum);
            }
        }
        if (spread != null) {
            double v = spread.finish(micros);
            if (Double.isFinite(v)) {
                sums.gradVar += v;
                sums.gradVars++;
            }
        }
        // A non-finite loss or gradient never reaches the weights: the optimizer skips the update.
        double gn = Double.NaN;
        if (sums.nonFiniteLoss != null) {
            opt.skip(sums.nonFiniteLoss);
            sums.nonFiniteLoss = null;
        } else {
            gn = opt.step(lr.at((int) opt.steps()), gradClip);
        }
        if (Double.isFinite(gn)) {
            sums.gradNorm += gn;
            sums.updates++;
        } else {
            sums.skipped++;
            if (opt.consecutiveSkips() >= maxSkipped) { // thrown before the step ends, so before any checkpoint of it
                throw new UserError(opt.consecutiveSkips() + " updates in a row skipped at step " + (in.step() + 1) + " (last: "
                        + opt.lastSkipReason() + "; train.max_skipped_updates=" + maxSkipped + "); stopped without"
                        + " checkpointing, so the latest checkpoint is the last good one: lower optim.lr or check the model's weights");
            }
        }
    }

    /** Rows [s0, s1): forward, loss terms, backward; metrics weighted by the rows' share of the mini-batch. */
    private void microBatch(Inputs in, LossConfig lc, int s0, int s1, float[] weights, double share, Sums sums) {
        SequenceBatch b = in.all().slice(s0, s1);
        boolean full = lc.klEstimator().needsFullLogits();
        try (NDManager mm = root.newSubManager()) {
            PolicyForward.Out[] cur = new PolicyForward.Out[1];
            LossTerm.Out o;
            if (staged) {
                o = StagedBackward.run(nets.policy, b, mm, checkpointLayers, h -> {
                    cur[0] = PolicyForward.head(nets.policy, b, mm, h, in.temperature(), full, true);
                    return loss(in, lc, b, s0, cur[0], weights, mm);
                }, x -> scaled(x.loss()));
            } else {
                try (klrl.util.Grad gc = klrl.util.Grad.record()) {
                    cur[0] = PolicyForward.run(nets.policy, b, mm, in.temperature(), full);
                    o = loss(in, lc, b, s0, cur[0], weights, mm);
                    gc.backward(scaled(o.loss()));
                }
            }
            double total = o.metrics().get("loss_total");
            if (!Double.isFinite(total) && sums.nonFiniteLoss == null) {
                sums.nonFiniteLoss = "loss " + total + " at step " + (in.step() + 1);
            }
            o.metrics().forEach((key, v) -> sums.loss.computeIfAbsent(key, z -> new double[1])[0] += v * share);
            sums.entropy += cur[0].entropy().stopGradient().mul(b.mask(mm)).sum().getFloat();
        }
    }

    /** The summed loss terms of one micro-batch (rows from s0), differentiable through {@code cur}. */
    private LossTerm.Out loss(Inputs in, LossConfig lc, SequenceBatch b, int s0, PolicyForward.Out cur, float[] weights,
                              NDManager mm) {
        int s1 = s0 + b.rows(), r = b.r();
        NDArray fullKl = null;
        if (lc.klEstimator().needsFullLogits()) {
            PolicyForward.Out ref;
            try (var off = nets.reference.adaptersOff()) {
                ref = PolicyForward.run(nets.reference, b, mm, in.temperature(), true);
            }
            fullKl = PolicyForward.fullKl(cur.logSoftmax(), ref.logSoftmax().stopGradient());
        }
        boolean ppo = nets.ppo();
        NDArray values = !ppo ? null : nets.valueHead.apply(nets.critic == nets.policy ? cur.hidden()
                : PolicyForward.run(nets.critic, b, mm, in.temperature(), false).hidden());
        TokenBatch tb = new TokenBatch(cur.logp(), slice(mm, in.oldLogp(), s0, s1, r), slice(mm, in.refLogp(), s0, s1, r),
                slice(mm, in.advantages(), s0, s1, r), b.mask(mm), cur.entropy(), fullKl, values,
                ppo ? slice(mm, in.oldValues(), s0, s1, r) : null, ppo ? slice(mm, in.returns(), s0, s1, r) : null,
                mm.create(weights, new Shape(s1 - s0, r)));
        return LossTerm.total(terms, tb, lc);
    }

    /** The loss times the optimizer's loss scale (1 unless parameters are fp16). */
    private NDArray scaled(NDArray loss) {
        return opt.lossScale() == 1 ? loss : klrl.util.Nd.mul(loss, opt.lossScale());
    }

    private static double sum(float[] v) {
        double s = 0;
        for (float x : v) {
            s += x;
        }
        return s;
    }

    private static NDArray slice(NDManager m, float[] v, int s0, int s1, int r) {
        return m.create(Arrays.copyOfRange(v, s0 * r, s1 * r), new Shape(s1 - s0, r));
    }
}
