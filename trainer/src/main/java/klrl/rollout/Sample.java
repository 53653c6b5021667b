package klrl.rollout;

/**
 * One generated sequence: which prompt it answers, the prompt and response ids, the behaviour
 * log-prob of each response token, why it stopped ("eos", "length" or "stop"), and the log-prob
 * of each token under the distribution it was actually drawn from.
 *
 * @param logprobs        log π_old(y_t): softmax(logits/T) of the weights that sampled — the sampler's
 *                        own, or recomputed by the trainer (rollout.recompute_logprobs, always with servers)
 * @param samplerLogprobs log μ(y_t): what the sampler drew from — after temperature and top-k/top-p
 *                        truncation locally, what the server reports remotely; kept when {@code logprobs}
 *                        is recomputed, so the rollout correction can weigh π_old/μ (null: the same as
 *                        {@code logprobs})
 */
public record Sample(int promptIndex, long[] promptIds, long[] responseIds, float[] logprobs, String finishReason,
                     float[] samplerLogprobs) {

    public Sample {
        samplerLogprobs = samplerLogprobs == null ? logprobs : samplerLogprobs;
    }

    /** A sample whose tokens were drawn from the distribution its log-probs describe. */
    public Sample(int promptIndex, long[] promptIds, long[] responseIds, float[] logprobs, String finishReason) {
        this(promptIndex, promptIds, responseIds, logprobs, finishReason, null);
    }

    /** The same sample answering prompt {@code index}. */
    public Sample withPromptIndex(int index) {
        return new Sample(index, promptIds, responseIds, logprobs, finishReason, samplerLogprobs);
    }

    /** The same sample with the behaviour log-probs recomputed; the sampler's stay. */
    public Sample withLogprobs(float[] recomputed) {
        return new Sample(promptIndex, promptIds, responseIds, recomputed, finishReason, samplerLogprobs);
    }
}
