package klrl.model;

import java.util.List;

/**
 * model.attention's modes and which attention a full pass runs under each: sdpa (libtorch's fused
 * scaled_dot_product_attention, memory linear in the sequence), eager (matmul, softmax, matmul: the
 * scores materialised), or auto: fused for passes of at least {@link #AUTO_MIN_TOKENS} positions,
 * eager below. A pass's length is its padded length T: a micro-batch's width, or a prefill's longest
 * prompt. Decoding against the KV cache is eager under every mode.
 */
public final class Attention {
    private Attention() {}

    /** What model.attention accepts. */
    public static final List<String> MODES = List.of("sdpa", "eager", "auto");

    /**
     * auto's threshold: passes of this many positions or more run fused. Measured with
     * {@code scripts/bench --only attention-long} (benchmarks.md, "Fused attention for long rows"): on
     * CPU sdpa and eager are even up to 128 positions and eager faster on the default run's ~20-token
     * rows; from 256 on sdpa is faster in every run, and its lead grows with the length.
     */
    public static final int AUTO_MIN_TOKENS = 256;

    /** Whether a full pass of {@code t} positions runs fused attention under {@code mode}. */
    public static boolean fused(String mode, long t) {
        return switch (mode) {
            case "sdpa" -> true;
            case "auto" -> t >= AUTO_MIN_TOKENS;
            default -> false;
        };
    }

    /** The attention a full pass of {@code t} positions runs under {@code mode}: "sdpa" or "eager". */
    public static String of(String mode, long t) {
        return fused(mode, t) ? "sdpa" : "eager";
    }

    /**
     * One line saying which attention full passes run under {@code mode}, and which one a pass of
     * {@code longest} positions (the configured prompt plus response) runs.
     */
    public static String describe(String mode, long longest) {
        String linear = "fused, activations linear in the sequence length";
        String square = "the scores are materialised: activations grow with the square of the sequence length";
        return switch (mode) {
            case "sdpa" -> "attention: sdpa — " + linear;
            case "auto" -> String.format(java.util.Locale.ROOT, "attention: auto — sdpa for passes of %,d positions or more,"
                    + " eager below; a pass of the configured maximum, %,d positions (data.max_prompt_tokens + rollout.max_new_tokens),"
                    + " would run %s",
                    AUTO_MIN_TOKENS, longest, fused(mode, longest) ? "sdpa: " + linear : "eager: " + square);
            default -> "attention: eager — " + square + " (model.attention: sdpa makes them linear)";
        };
    }
}
