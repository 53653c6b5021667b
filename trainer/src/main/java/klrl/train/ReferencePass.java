package klrl.train;

import ai.djl.ndarray.NDManager;

/**
 * The graph-free passes over a step's sequences before the update, micro-batch by micro-batch:
 * log π_ref per token; for PPO the critic's values at rollout time; and, when the "full" estimator
 * shapes the reward, the exact per-token KL of the current policy against the reference. Its
 * micro-batches are shared out over the data-parallel replicas.
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

    /** Micro-batches dealt over the replicas; each writes its rows of the shared arrays. */
    static Out run(Replicas reps, SequenceBatch all, Sizes micro, float temperature, boolean exactKl) {
        int n = all.rows(), r = all.r();
        float[] refLogp = new float[n * r];
        float[] kl = exactKl ? new float[n * r] : null;
        float[] oldValues = reps.master().nets().ppo() ? new float[n * r] : null;
        overMicroBatches(reps, all, micro, (nets, mb, mm) -> {
            SequenceBatch b = mb.batch();
            PolicyForward.Out ref;
            try (var off = nets.reference.adaptersOff()) {
                ref = PolicyForward.run(nets.reference, b, mm, temperature, exactKl, false);
            }
            mb.scatter(ref.logp().toFloatArray(), refLogp);
            if (exactKl) {
                PolicyForward.Out cur = PolicyForward.run(nets.policy, b, mm, temperature, true, false);
                mb.scatter(PolicyForward.fullKl(cur.logSoftmax(), ref.logSoftmax()).toFloatArray(), kl);
            }
            if (oldValues != null) {
                PolicyForward.Out cur = PolicyForward.run(nets.critic, b, mm, temperature, false, false);
                mb.scatter(nets.valueHead.apply(cur.hidden()).toFloatArray(), oldValues);
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
        overMicroBatches(reps, all, micro, (nets, mb, mm) -> {
            PolicyForward.Out cur = PolicyForward.run(nets.policy, mb.batch(), mm, temperature, false, false);
            mb.scatter(cur.logp().toFloatArray(), logp);
        });
        return logp;
    }

    /** One micro-batch's pass on one replica: its networks, its rows, a manager closed after it. */
    private interface Pass {
        void run(Policies nets, MicroBatch mb, NDManager mm);
    }

    /** Runs {@code pass} over the micro-batches of {@code all}, dealt over the replicas; each writes its own rows. */
    private static void overMicroBatches(Replicas reps, SequenceBatch all, Sizes micro, Pass pass) {
        java.util.List<MicroBatch> mbs = micro.plan(all, 0, all.rows());
        reps.deal(mbs.size(), (rep, k) -> {
            try (NDManager mm = rep.root().newSubManager()) {
                pass.run(rep.nets(), mbs.get(k), mm);
            }
            return null;
        });
    }
}
