package klrl.rollout;

/**
 * One generated sequence: which prompt it answers, the prompt and response ids, the sampling
 * policy's log-prob of each response token, and why it stopped ("eos", "length" or "stop").
 */
public record Sample(int promptIndex, long[] promptIds, long[] responseIds, float[] logprobs, String finishReason) {}
