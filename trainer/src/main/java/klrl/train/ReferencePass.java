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

    /** Micro-batches dealt over the replicas; each writes its rows of the shared arrays. */
    static Out run(Replicas reps, SequenceBatch all, int micro, float temperature, boolean exactKl) {
        int n = all.rows(), r = all.r();
        float[] refLogp = new float[n * r];
        float[] kl = exactKl ? new float[n * r] : null;
        float[] oldValues = reps.master().nets().ppo() ? new float[n * r] : null;
        overMicroBatches(reps, all, micro, (nets, b, s0, mm) -> {
            PolicyForward.Out ref;
            try (var off = nets.reference.adaptersOff()) {
                ref = PolicyForward.run(nets.reference, b, mm, temperature, exactKl, false);
            }
            System.arraycopy(ref.logp().toFloatArray(), 0, refLogp, s0 * r, b.rows() * r);
            if (exactKl) {
                PolicyForward.Out cur = PolicyForward.run(nets.policy, b, mm, temperature, true, false);
                System.arraycopy(PolicyForward.fullKl(cur.logSoftmax(), ref.logSoftmax()).toFloatArray(), 0, kl,
                        s0 * r, b.rows() * r);
            }
            if (oldValues != null) {
                PolicyForward.Out cur = PolicyForward.run(nets.critic, b, mm, temperature, false, false);
                System.arraycopy(nets.valueHead.apply(cur.hidden()).toFloatArray(), 0, oldValues, s0 * r, b.rows() * r);
            }
        });
        return new Out(refLogp, kl, oldValues);
    }

    /**
     * log π(y_t) of the current policy per token (adapters on), [rows·R]: the behaviour log-probs of a
     * rollout generated elsewhere, recomputed here as verl does (the servers' own come from other kernels).
     */
    static float[] policyLogp(Replicas reps, SequenceBatch all, int micro, float temperature) {
        int n = all.rows(), r = all.r();
        float[] logp = new float[n * r];
        overMicroBatches(reps, all, micro, (nets, b, s0, mm) -> {
            PolicyForward.Out cur = PolicyForward.run(nets.policy, b, mm, temperature, false, false);
            System.arraycopy(cur.logp().toFloatArray(), 0, logp, s0 * r, b.rows() * r);
        });
        return logp;
    }

    /** One micro-batch's pass on one replica: its networks, rows [s0, s0 + b.rows()), a manager closed after it. */
    private interface Pass {
        void run(Policies nets, SequenceBatch b, int s0, NDManager mm);
    }

    /** Runs {@code pass} over the micro-batches of {@code all}, dealt over the replicas; each writes its own rows. */
    private static void overMicroBatches(Replicas reps, SequenceBatch all, int micro, Pass pass) {
        int n = all.rows();
        reps.deal((n + micro - 1) / micro, (rep, k) -> {
            int s0 = k * micro;
            try (NDManager mm = rep.root().newSubManager()) {
                pass.run(rep.nets(), all.slice(s0, Math.min(n, s0 + micro)), s0, mm);
            }
            return null;
        });
    }
}
