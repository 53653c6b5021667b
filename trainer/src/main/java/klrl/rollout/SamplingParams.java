package klrl.rollout;

import java.util.List;
import klrl.util.UserError;

/**
 * How to sample. temperature 0 is greedy. Log-probs returned with each token are
 * log softmax(logits / temperature) over the whole vocabulary (temperature 1 when greedy), before
 * top-k/top-p truncation — the same quantity the trainer recomputes from the same logits (verl and
 * TRL scale logits by the rollout temperature the same way); with truncation the engine also
 * returns each token's log-prob under the truncated, renormalised distribution it was drawn from.
 */
public record SamplingParams(int maxNewTokens, double temperature, double topP, int topK, int n,
                             List<String> stopStrings, long seed) {
    public SamplingParams {
        if (maxNewTokens < 1) {
            throw new UserError("max_new_tokens must be ≥ 1, got " + maxNewTokens);
        }
        if (temperature < 0 || Double.isNaN(temperature)) {
            throw new UserError("temperature must be ≥ 0, got " + temperature);
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new UserError("top_p must be in (0, 1], got " + topP);
        }
        if (topK < 0) {
            throw new UserError("top_k must be ≥ 0 (0 = off), got " + topK);
        }
        if (n < 1) {
            throw new UserError("n (samples per prompt) must be ≥ 1, got " + n);
        }
        stopStrings = stopStrings == null ? List.of() : List.copyOf(stopStrings);
    }

    public static SamplingParams greedy(int maxNewTokens) {
        return new SamplingParams(maxNewTokens, 0, 1, 0, 1, List.of(), 0);
    }

    public boolean greedy() {
        return temperature == 0;
    }

    /** Whether tokens are drawn from a truncated distribution (top-k or top-p), not softmax(logits/T) itself. */
    public boolean truncates() {
        return !greedy() && (topP < 1 || topK > 0);
    }
}
