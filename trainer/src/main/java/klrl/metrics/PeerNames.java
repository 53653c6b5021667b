package klrl.metrics;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.List;
import java.util.Map;

/**
 * metrics.names: the names verl and TRL give the quantities klrl logs, so that a klrl run's TensorBoard
 * curves lie under the same tags as a peer's runs. A number goes out under the peer's name only where the
 * peer logs the same quantity; the rest keep klrl's name alone.
 *
 * <p>verl's names are the keys its PPO trainer logs (its TensorBoard logger writes them unchanged). TRL's
 * are its GRPOTrainer's keys as transformers' TensorBoard and W&B callbacks write them: {@code train/}
 * before a training key, {@code eval_} turned into {@code eval/}.
 */
public final class PeerNames {
    /** The values metrics.names takes. */
    public static final List<String> CHOICES = List.of("klrl", "verl", "trl");

    /**
     * A training line's keys: klrl, verl, TRL (null: that trainer logs no such quantity). A comment
     * says where the two agree only under a condition; otherwise the definitions match.
     */
    static final String[][] STEP = {
        // klrl                         verl                                           TRL
        {"reward_mean",                 "critic/score/mean",                           "train/reward"},
        {"reward_std",                  null,                                          "train/reward_std"},             // TRL divides by n − 1
        {"zero_variance_groups",        null,                                          "train/frac_reward_zero_std"},   // TRL: with scale_rewards group or none
        {"response_length",             "response_length/mean",                        "train/completions/mean_length"},
        {"response_length_min",         "response_length/min",                         "train/completions/min_length"},
        {"response_length_max",         "response_length/max",                         "train/completions/max_length"},
        {"truncated_fraction",          "response_length/clip_ratio",                  "train/completions/clipped_ratio"},
        // verl: logged with use_kl_in_reward, kl_penalty kl; a mean of per-sequence means
        {"kl_k1",                       "actor/reward_kl_penalty",                     null},
        // verl: with use_kl_loss, kl_loss_type low_var_kl (k3 clamped to ±10), 0 without; TRL: with beta ≠ 0.
        // Both measure the policy being updated, klrl the one that sampled: equal in a step's first update
        {"kl_k3",                       "actor/kl_loss",                               "train/kl"},
        // verl: kl_loss_coef, with use_kl_loss (with the KL in the reward it logs actor/reward_kl_penalty_coeff)
        {"kl_coef",                     "actor/kl_coef",                               null},
        {"entropy",                     "actor/entropy",                               "train/entropy"},  // verl: aggregated as loss_agg_mode says (token-mean: the same)
        {"clip_fraction",               "actor/pg_clipfrac",                           "train/clip_ratio/region_mean"},
        {"clip_fraction_lower",         "actor/pg_clipfrac_lower",                     null},
        {"ppo_kl",                      "actor/ppo_kl",                                null},
        {"grad_norm",                   "actor/grad_norm",                             "train/grad_norm"},  // TRL: one optimizer step's, klrl: the mean over the step's updates
        {"lr",                          "actor/lr",                                    "train/learning_rate"},  // TRL: after the scheduler's step, the next update's
        {"loss_policy",                 "actor/pg_loss",                               null},  // verl sums over mini-batches and epochs, klrl averages: equal with one of each
        {"loss_total",                  null,                                          "train/loss"},  // TRL's loss holds its KL and entropy terms as klrl's does
        {"loss_value",                  "critic/vf_loss",                              null},  // klrl's is times algorithm.value_coef: equal at 1
        {"value_clip_fraction",         "critic/vf_clipfrac",                          null},
        {"time_rollout",                "timing_s/gen",                                null},
        {"time_reward",                 "timing_s/reward",                             null},
        {"time_reference",              "timing_s/ref",                                null},
        {"time_update",                 "timing_s/update_actor",                       null},  // klrl's holds PPO's critic update too (verl: timing_s/update_critic)
        {"time_weight_sync",            "timing_s/update_weights",                     null},
        {"time_step",                   "timing_s/step",                               "train/step_time"},
        {"tokens_per_s",                "perf/throughput",                             null},  // verl's is per GPU: equal on one device
        {"rollout_mismatch_kl_k1",      "rollout_corr/kl",                             null},
        {"rollout_mismatch_kl_k3",      "rollout_corr/k3_kl",                          null},
        {"rollout_logprob_diff_mean",   null,                                          "train/sampling/sampling_logp_difference/mean"},
        {"rollout_logprob_diff_max",    null,                                          "train/sampling/sampling_logp_difference/max"},
        {"rollout_is_mean",             "rollout_corr/rollout_is_mean",                "train/sampling/importance_sampling_ratio/mean"},  // verl's before the truncation at is_threshold
        {"rollout_is_min",              "rollout_corr/rollout_is_min",                 "train/sampling/importance_sampling_ratio/min"},   // likewise
        {"rollout_is_max",              "rollout_corr/rollout_is_max",                 "train/sampling/importance_sampling_ratio/max"},   // likewise
        {"rollout_is_clipped_fraction", "rollout_corr/rollout_is_ratio_fraction_high", null},
        {"rollout_rs_masked_fraction",  "rollout_corr/rollout_rs_masked_fraction",     null},
    };

    private final int column; // 1 verl, 2 TRL, 0 none

    private PeerNames(int column) {
        this.column = column;
    }

    /** metrics.names as the config holds it (validated there). */
    public static PeerNames of(String names) {
        int i = CHOICES.indexOf(names);
        if (i < 0) {
            throw new IllegalArgumentException("metrics.names " + names); // the config record refused it already
        }
        return new PeerNames(i);
    }

    /** klrl's own names only. */
    public static final PeerNames NONE = new PeerNames(0);

    /** A training line's scalars (klrl's names, in {@code tags}) also under the peer's names. */
    void addStep(Map<String, Float> tags) {
        if (column == 0) {
            return;
        }
        for (String[] row : STEP) {
            Float v = tags.get(row[0]);
            if (v != null && row[column] != null) {
                tags.putIfAbsent(row[column], v);
            }
        }
    }

    /**
     * An eval line of set {@code set} under the peer's names.
     *
     * <p>verl validates into {@code val-core/<data_source>/acc/…} (acc: the verifier's correctness; val-aux
     * for what is not the largest N): mean@1 is its default validation (val_kwargs n 1, greedy), which is
     * klrl's eval_accuracy; mean@N, best@N/mean (its bootstrap estimate of pass@N) and maj@N/mean for
     * N = eval.k are mean@k, pass@k and maj@k; best@j/mean for j = 2, 4, 8, … below N are in val-aux.
     * The set's name stands for verl's data_source; per-source lines labelled data_source=X go under X
     * too (a tag the set's line already wrote stays the set's).
     *
     * <p>TRL evaluates by sampling as in training and logs the mean reward over the samples, eval/reward:
     * klrl's mean@k when the reward is 1 for a correct answer and 0 otherwise. TRL's own metrics do not
     * carry an eval set's name, so with several sets each writes eval/reward at the step; so does klrl.
     */
    void addEval(String set, JsonNode line, Map<String, Float> tags) {
        if (column == 2) {
            put(tags, "eval/reward", line.get("eval_mean_at_k"));
        } else if (column == 1) {
            int k = line.path("eval_k").asInt(0);
            verlEval(set, line, k, tags);
            for (var e : line.path("eval_by_source").properties()) {
                if (e.getKey().startsWith("data_source=")) {
                    verlEval(e.getKey().substring("data_source=".length()), e.getValue(), k, tags);
                }
            }
        }
    }

    private static void verlEval(String source, JsonNode n, int k, Map<String, Float> tags) {
        String p = "/" + source + "/acc/";
        put(tags, "val-core" + p + "mean@1", n.get("eval_accuracy"));
        if (k >= 1) {
            put(tags, "val-core" + p + "mean@" + k, n.get("eval_mean_at_k"));
        }
        if (k >= 2) { // verl's bootstrap statistics exist only for N ≥ 2
            for (var e : n.path("eval_pass_at").properties()) {
                int j = TensorBoardLog.intKey(e.getKey());
                if (j == k) {
                    put(tags, "val-core" + p + "best@" + j + "/mean", e.getValue());
                } else if (j >= 2 && j < k && Integer.bitCount(j) == 1) {
                    put(tags, "val-aux" + p + "best@" + j + "/mean", e.getValue());
                }
            }
            put(tags, "val-core" + p + "maj@" + k + "/mean", n.get("eval_maj_at_k"));
        }
    }

    private static void put(Map<String, Float> tags, String tag, JsonNode v) {
        if (v != null && v.isNumber()) {
            tags.putIfAbsent(tag, (float) v.asDouble());
        }
    }
}
