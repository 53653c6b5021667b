package klrl.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import klrl.parallel.Pipeline;
import klrl.parallel.Replicas;

/**
 * The graph-free passes over a step's sequences before the update, micro-batch by micro-batch:
 * log π_ref per token; for PPO the critic's values at rollout time; and, when the "full" estimator
 * shapes the reward, the exact per-token KL of the current policy against the reference. Its
 * micro-batches are shared out over the data-parallel replicas, or flow through layer placement's pipeline.
 */
final class ReferencePass {
    private ReferencePass() {}

    /** Per-token arrays laid out as {@link SequenceBatch#tensor} reads them; null when not asked for. */
    record Out(float[] refLogp, float[] exactKl, float[] oldValues) {}

    /**
     * How a pass cuts the step's rows: train.micro_batch_size rows, or train.max_tokens_per_micro_batch
     * positions; {@code batchWide} pads every micro-batch to the whole batch's longest prompt and
     * response, as earlier versions did (kept for the benchmark and the equality tests that compare).
     */
    record Sizes(int rows, long tokens, boolean batchWide) {
        static Sizes of(klrl.config.TrainConfig cfg) {
            return new Sizes(cfg.train().microBatchSize(), cfg.train().maxTokensPerMicroBatch(), false);
        }

        /** Micro-batches of rows [from, to) of {@code all}. */
        java.util.List<MicroBatch> plan(SequenceBatch all, int from, int to) {
            return MicroBatch.plan(all, from, to, this);
        }
    }

    /** Micro-batches dealt over the replicas (or through the pipeline); each writes its rows of the shared arrays. */
    static Out run(Replicas reps, SequenceBatch all, Sizes micro, float temperature, boolean exactKl) {
        int n = all.rows(), r = all.r();
        float[] refLogp = new float[n * r];
        float[] kl = exactKl ? new float[n * r] : null;
        float[] oldValues = reps.master().nets().ppo() ? new float[n * r] : null;
        // the networks each micro-batch goes through: the reference (the base, with LoRA), the policy, the critic
        Function<Policies, List<Pipeline.Net>> nets = p -> {
            List<Pipeline.Net> l = new ArrayList<>(List.of(new Pipeline.Net(p.reference, true)));
            if (exactKl) {
                l.add(new Pipeline.Net(p.policy, false));
            }
            if (oldValues != null) {
                l.add(new Pipeline.Net(p.critic, false));
            }
            return l;
        };
        overMicroBatches(reps, all, micro, "pipeline_busy_reference", nets, (p, mb, mm, hidden) -> {
            SequenceBatch b = mb.batch();
            PolicyForward.Out ref = PolicyForward.head(p.reference, b, mm, hidden.get(0), temperature, null, false);
            mb.scatter(ref.logp().toFloatArray(), refLogp);
            if (exactKl) {
                PolicyForward.Out cur = PolicyForward.head(p.policy, b, mm, hidden.get(1), temperature,
                        new PolicyForward.Ref(p.reference, hidden.get(0)), false);
                mb.scatter(cur.fullKl().toFloatArray(), kl);
            }
            if (oldValues != null) {
                mb.scatter(p.valueHead.apply(PolicyForward.states(b, mm, hidden.get(hidden.size() - 1))).toFloatArray(), oldValues);
            }
        });
        return new Out(refLogp, kl, oldValues);
    }

    /**
     * log π(y_t) of the current policy per token (adapters on), [rows·R]: the behaviour log-probs of a
     * rollout generated elsewhere, recomputed here as verl does (the servers' own come from other kernels).
     */
    static float[] policyLogp(Replicas reps, SequenceBatch all, Sizes micro, float temperature) {
        float[] logp = new float[all.rows() * all.r()];
        overMicroBatches(reps, all, micro, "pipeline_busy_logprobs", p -> List.of(new Pipeline.Net(p.policy, false)),
                (p, mb, mm, hidden) -> {
                    PolicyForward.Out cur = PolicyForward.head(p.policy, mb.batch(), mm, hidden.get(0), temperature, null, false);
                    mb.scatter(cur.logp().toFloatArray(), logp);
                });
        return logp;
    }

    /** One micro-batch's heads: its networks, its rows, their final hidden states (in the order asked), its manager. */
    private interface Heads {
        void run(Policies nets, MicroBatch mb, NDManager mm, List<NDArray> hidden);
    }

    /**
     * Runs the micro-batches of {@code all} through {@code nets}, then {@code heads} on their hidden
     * states: through the layers' pipeline when there is one (timed as {@code metric}), else dealt over
     * the replicas. Each micro-batch writes its own rows.
     */
    private static void overMicroBatches(Replicas reps, SequenceBatch all, Sizes micro, String metric,
                                         Function<Policies, List<Pipeline.Net>> nets, Heads heads) {
        List<MicroBatch> mbs = micro.plan(all, 0, all.rows());
        Pipeline pipe = reps.pipeline();
        if (pipe != null) {
            Policies p = reps.master().nets();
            pipe.forward(metric, mbs.stream().map(MicroBatch::batch).toList(), nets.apply(p), reps.master().root(),
                    (k, hidden, mm) -> heads.run(p, mbs.get(k), mm, hidden));
            return;
        }
        reps.deal(mbs.size(), (rep, k) -> {
            try (NDManager mm = rep.root().newSubManager()) {
                SequenceBatch b = mbs.get(k).batch();
                List<NDArray> hidden = new ArrayList<>();
                for (Pipeline.Net n : nets.apply(rep.nets())) {
                    try (var off = n.adaptersOff() ? n.model().adaptersOff() : null) {
                        NDArray tokens = b.tokens(mm);
                        hidden.add(n.model().hidden(tokens, b.pass(n.model(), tokens, mm)));
                    }
                }
                heads.run(rep.nets(), mbs.get(k), mm, hidden);
            }
            return null;
        });
    }
}
