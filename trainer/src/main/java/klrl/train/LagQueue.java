package klrl.train;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import klrl.reward.RewardPool;
import klrl.rollout.Sample;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * The off-policy lag K (algorithm.off_policy_lag): step t trains on the rollout of step t − K, which
 * waits here in between. Which weights sample what is a pure function of K: the rollout of step s is
 * sampled by policy version max(0, s − K) (the number of updates made before it: the first K steps only
 * fill the queue), so step t ≥ K updates version t − K with samples of version max(0, t − 2K) — a lag
 * of min(K, t − K) versions. With rollout.overlap that rollout of step t is generated while step t
 * trains (the weights it needs are the ones the update starts from), and nothing else changes.
 *
 * <p>The queue is part of a checkpoint ({@value #FILE}): a resumed run trains on exactly the rollouts
 * the uninterrupted run would have.
 */
final class LagQueue {
    static final String FILE = "rollout_queue.json";

    private final int k;
    private final ArrayDeque<Rollouts.Generated> queue = new ArrayDeque<>();

    LagQueue(int k) {
        this.k = k;
    }

    /** The policy version that samples step s's rollout. */
    long versionAt(long step) {
        return Math.max(0, step - k);
    }

    /**
     * The rollout step t trains on: with K = 0 this step's ({@code current}, waited for); else the one
     * of step t − K, or null while the queue fills (the first K steps).
     */
    Rollouts.Generated take(Rollouts.Pending current) {
        if (k == 0) {
            return current.await();
        }
        return queue.size() == k ? queue.removeFirst() : null;
    }

    /** Queues this step's rollout for step t + K (K = 0: it was trained on already). */
    void add(Rollouts.Generated g) {
        if (k > 0) {
            queue.addLast(g);
        }
    }

    /** The queued rollouts as a checkpoint holds them: samples, scores, step and version (not the metrics, logged at their step). */
    Object state() {
        List<Object> out = new ArrayList<>();
        for (Rollouts.Generated g : queue) {
            out.add(new Saved(g.step(), g.policyVersion(), g.samples(), g.scores()));
        }
        return out;
    }

    private record Saved(long step, long policyVersion, List<Sample> samples, List<RewardPool.Scored> scores) {}

    /**
     * Refills the queue from a checkpoint taken after {@code steps} steps: it must hold the rollouts of
     * steps max(0, steps − K) … steps − 1, else one line says what it holds and what K needs. A queue
     * written before samples kept the sampler's log-probs has only π_old's: with a rollout correction
     * ({@code corrected}) a line says those rollouts train with weights of 1.
     */
    void restore(Path ckpt, long steps, boolean corrected, java.util.function.Consumer<String> log) {
        boolean withSampler = true;
        queue.clear();
        Path f = ckpt.resolve(FILE);
        List<Saved> saved = new ArrayList<>();
        if (Files.isRegularFile(f)) {
            JsonNode arr = Json.read(f);
            try {
                for (JsonNode n : arr) {
                    saved.add(Json.MAPPER.treeToValue(n, Saved.class));
                    for (JsonNode x : n.path("samples")) {
                        withSampler &= x.has("samplerLogprobs");
                    }
                }
            } catch (java.io.IOException | IllegalArgumentException e) {
                throw new UserError(f + ": not a rollout queue this trainer wrote (" + Json.firstLine(String.valueOf(e.getMessage())) + ")");
            }
        }
        long first = Math.max(0, steps - k);
        if (!Files.isRegularFile(f) && steps > first) {
            // a checkpoint from a version that did not save the queue: the lag may well be the same
            throw new UserError(ckpt + " has no " + FILE + ": algorithm.off_policy_lag " + k + " resumes on the queued rollouts of"
                    + " steps " + (first + 1) + "–" + steps + ", which this checkpoint does not hold (it was written without them);"
                    + " resume from a checkpoint that has " + FILE + ", or start the run again");
        }
        boolean ok = saved.size() == steps - first;
        for (int i = 0; ok && i < saved.size(); i++) {
            ok = saved.get(i).step() == first + i;
        }
        if (!ok) {
            throw new UserError(ckpt + " holds " + saved.size() + " queued rollouts (steps " + saved.stream().map(s -> s.step() + 1).toList()
                    + "); algorithm.off_policy_lag " + k + " needs those of steps " + (first + 1) + "–" + steps
                    + ": resume with the lag the run was started with");
        }
        for (Saved s : saved) {
            queue.addLast(new Rollouts.Generated(s.step(), s.policyVersion(), List.of(), s.samples(), s.scores(), java.util.Map.of()));
        }
        if (!withSampler && corrected) {
            log.accept("rollout correction: the queued rollouts of " + ckpt + " were saved without the sampler's log-probs;"
                    + " they train with weights of 1");
        }
    }
}
