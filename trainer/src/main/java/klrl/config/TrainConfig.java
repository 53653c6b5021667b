package klrl.config;

import java.util.List;
import klrl.advantage.AdvantageEstimator;
import klrl.kl.KlEstimator;
import klrl.kl.KlPlacement;
import klrl.loss.Aggregation;
import klrl.util.UserError;

/**
 * The whole training configuration. YAML keys are the snake_case of these component names; every
 * default lives in the {@code defaults()} methods below (the tiny CPU preset) and nowhere else, and
 * every record validates itself, naming the key that is wrong.
 */
public record TrainConfig(Model model, Data data, Rollout rollout, Algorithm algorithm, Kl kl, Optim optim,
                          Train train, Eval eval, Checkpoint checkpoint, Metrics metrics, String outputDir) {

    public static TrainConfig defaults() {
        return new TrainConfig(Model.defaults(), Data.defaults(), Rollout.defaults(), Algorithm.defaults(), Kl.defaults(),
                Optim.defaults(), Train.defaults(), Eval.defaults(), Checkpoint.defaults(), Metrics.defaults(), "runs/default");
    }

    public TrainConfig {
        metrics = metrics == null ? Metrics.defaults() : metrics; // an empty "metrics:" section, or a config.yaml saved before it existed
        require(outputDir != null && !outputDir.isBlank(), "output_dir must be set");
        require(train.miniBatchSize() <= train.batchSize(), "train.mini_batch_size must be ≤ train.batch_size");
        require(train.batchSize() % train.miniBatchSize() == 0, "train.batch_size must be a multiple of train.mini_batch_size");
        require(!algorithm.name().equals("ppo") || algorithm.resolvedAdvantage().equals("gae"), "algorithm ppo uses advantage gae");
        require(!(model.device().contains(",") && model.critic().equals("separate") && train.parallel().equals("layers")),
                "model.critic: separate needs one device per model copy; with train.parallel: layers use model.critic: head");
        require(algorithm.overlongBuffer().len() < rollout.maxNewTokens(), "algorithm.overlong_buffer.len must be below"
                + " rollout.max_new_tokens (" + rollout.maxNewTokens() + ")");
        require(!algorithm.filterGroups().enable() || rollout.n() >= 2, "algorithm.filter_groups.enable needs rollout.n ≥ 2:"
                + " with one sample per prompt every group has zero variance and each is filtered out");
        require(algorithm.scaleRewards() == null || algorithm.resolvedAdvantage().equals("grpo"), "algorithm.scale_rewards"
                + " scales GRPO's advantage; advantage " + algorithm.resolvedAdvantage() + " does not use it: leave it unset");
        require(!rollout.overlap() || algorithm.offPolicyLag() >= 1, "rollout.overlap: true needs algorithm.off_policy_lag ≥ 1"
                + " (step t trains on the rollout of step t − K while the rollout of step t is generated)");
    }

    /**
     * Whether the update's behaviour log-probs are the trainer's own forward over the samples: always with
     * a remote engine, always with GSPO (its sequence ratios are clipped within ~1e-4 of 1, so the
     * sampler's KV-cache rounding alone would clip whole sequences — verl recomputes them too), else as
     * rollout.recompute_logprobs says.
     */
    public boolean recomputesLogprobs() {
        return rollout.recomputeLogprobs() || !rollout.engine().equals("local") || algorithm.policyLoss().equals("gspo")
                || rolloutCorrection().active() || rollout.samplerTemperature() != null;
    }

    /**
     * The rollout correction in effect: as algorithm.rollout_correction says, its {@code is} unset
     * resolved by where the samples come from — token-level weights truncated at is_threshold with
     * SGLang/vLLM (sequence-level with GSPO), none with local rollouts (the sampler is the trainer's own policy).
     */
    public klrl.loss.RolloutWeights rolloutCorrection() {
        var c = algorithm.rolloutCorrection();
        // GSPO's ratio is of the whole sequence: its correction is too (the exact toy certifies sequence weights for it)
        String is = c.is() != null ? c.is() : !rollout.remote() ? "none" : algorithm.policyLoss().equals("gspo") ? "sequence" : "token";
        return new klrl.loss.RolloutWeights(klrl.loss.RolloutWeights.mode(is), c.isThreshold(), klrl.loss.RolloutWeights.reject(c.rs()),
                c.rsThresholdLower() != null ? c.rsThresholdLower() : 1 / c.rsThreshold(), c.rsThreshold());
    }

    static void require(boolean ok, String message) {
        if (!ok) {
            throw new UserError("config: " + message);
        }
    }

    /**
     * @param path   HF model folder; null = the built-in tiny model (init-tiny + a deterministic SFT warm-up)
     * @param device cpu, cuda, cuda:N, auto, or a comma-separated list (cuda:0,cuda:1 or 0,1) over which
     *               the decoder layers are placed in contiguous groups
     * @param critic PPO's critic: "head" (a value head on the policy trunk) or "separate" (its own copy
     *               of the model with a value head, trained at algorithm.value_lr)
     */
    /**
     * @param attention sdpa (libtorch's fused scaled_dot_product_attention in every full pass over packed
     *                  rows: memory linear in the sequence), eager (matmul, softmax, matmul: the scores
     *                  materialised) or auto (the default: sdpa for passes of at least
     *                  {@link klrl.model.Attention#AUTO_MIN_TOKENS} positions, eager below, chosen per pass
     *                  from its padded length); a left-padded prefill runs fused with its mask when its
     *                  pass does, decoding against the KV cache stays eager
     * @param headChunkTokens the output head of every full pass (update, reference, recomputed
     *                  log-probs, warm-up) over this many response tokens at a time, so no [tokens,
     *                  vocabulary] tensor of a whole micro-batch exists; its backward recomputes each
     *                  chunk's logits; 0 = the whole micro-batch at once
     */
    public record Model(String path, String dtype, String device, Lora lora, String critic, String attention,
                        int headChunkTokens) {
        public static Model defaults() {
            return new Model(null, "float32", "cpu", Lora.defaults(), "head", "auto", klrl.model.Decoder.DEFAULT_HEAD_CHUNK);
        }

        /** As the canonical constructor, the output head chunked by default. */
        public Model(String path, String dtype, String device, Lora lora, String critic, String attention) {
            this(path, dtype, device, lora, critic, attention, klrl.model.Decoder.DEFAULT_HEAD_CHUNK);
        }

        public Model {
            attention = attention == null ? "auto" : attention;
            require(klrl.model.Attention.MODES.contains(attention), "model.attention must be sdpa, eager or auto, got '"
                    + attention + "'");
            require(List.of("float32", "float16").contains(dtype), "model.dtype must be float32 or float16, got '" + dtype + "'");
            require(device != null, "model.device must be set (cpu, cuda, cuda:N or auto)");
            require(List.of("head", "separate").contains(critic), "model.critic must be head or separate, got '" + critic + "'");
            require(headChunkTokens >= 0, "model.head_chunk_tokens must be ≥ 0 (0 = the whole micro-batch at once), got "
                    + headChunkTokens);
        }
    }

    /** rank 0 = full fine-tuning with a frozen reference copy. */
    public record Lora(int rank, double alpha, double dropout, List<String> targetModules) {
        public static Lora defaults() {
            return new Lora(0, 16, 0.0, List.of("q_proj", "k_proj", "v_proj", "o_proj"));
        }

        public Lora {
            require(rank >= 0, "model.lora.rank must be ≥ 0");
            require(dropout >= 0 && dropout < 1, "model.lora.dropout must be in [0, 1)");
            require(targetModules != null && !targetModules.isEmpty(), "model.lora.target_modules must list modules");
        }
    }

    /**
     * @param train          JSONL or parquet file, a folder of them, or a glob; null = the bundled arithmetic train set
     * @param eval           the same, comma-separated for several sets; null = the bundled arithmetic test set
     * @param promptField    dotted path of the prompt (text or a {role, content} message list); null = detected
     *                       (prompt, messages, problem, question)
     * @param answerField    dotted path of the gold answer or a solution with \boxed{}; null = detected
     *                       (reward_model.ground_truth, answer, solution, gold)
     * @param template       user message of a plain-text prompt, {question} replaced by the row's question
     *                       (a message-list prompt is rendered as it is)
     * @param overlongPrompts a prompt over max_prompt_tokens, in the training or a held-out set: "error" refuses
     *                       the run naming its row, "filter" drops the row and says how many it dropped per file
     *                       (verl's filter_overlong_prompts, for train and validation sets alike)
     */
    public record Data(String train, String eval, String promptField, String answerField, String template,
                       String systemPrompt, boolean chatTemplate, int maxPromptTokens, String overlongPrompts) {
        public static Data defaults() {
            return new Data(null, null, null, null, "{question}", null, true, 256, "error");
        }

        /** Whether rows with a prompt over max_prompt_tokens are dropped (else the run is refused). */
        public boolean filterOverlong() {
            return overlongPrompts.equals("filter");
        }

        public klrl.data.Prompts.Format promptFormat() {
            return new klrl.data.Prompts.Format(template, systemPrompt, chatTemplate, maxPromptTokens);
        }

        public Data {
            require(template != null && template.contains("{question}"), "data.template must contain {question}");
            require(maxPromptTokens > 0, "data.max_prompt_tokens must be > 0");
            require(List.of("error", "filter").contains(String.valueOf(overlongPrompts)),
                    "data.overlong_prompts must be error (refuse a prompt over data.max_prompt_tokens) or filter (drop its row),"
                    + " got '" + overlongPrompts + "'");
        }
    }

    /**
     * @param kvCacheGb            KV-cache budget per device in GiB; rollouts run in chunks of as many
     *                             sequences as fit. 0 = sized from free GPU memory (below), no limit on CPU
     * @param gpuMemoryUtilization with kv_cache_gb 0 on GPUs: the fraction of each GPU's memory that may be in
     *                             use once the KV cache is allocated (vLLM's and verl's name for it)
     * @param prefillGb            activations one prefill pass may hold, GiB (estimated); prompts are prefilled
     *                             in groups that fit, and the free-memory sizing of the KV cache leaves it room
     * @param engine               "local" (this process generates) or "sglang" / "vllm" (inference servers at
     *                             {@code urls} generate; the weights go to them through {@code weightsDir})
     * @param urls                 the servers' base URLs, e.g. http://host:30000
     * @param weightsDir           a folder the trainer writes and every server reads (shared storage): each
     *                             update's weights go to a new version folder in it
     * @param requestTimeoutS      seconds one request may take before it is retried elsewhere
     * @param maxRetries           attempts per request (over all servers) before the step fails
     * @param maxInflight          requests in flight per server
     * @param recomputeLogprobs    the behaviour log-probs of the update are recomputed by the trainer's own
     *                             forward over the sampled sequences (verl's default) instead of taken from the
     *                             sampler; always so with a remote engine. rollout_logprob_diff shows how far
     *                             the sampler's are from them
     */
    public record Rollout(int n, int maxNewTokens, double temperature, double topP, int topK, List<String> stop,
                          double kvCacheGb, double gpuMemoryUtilization, double prefillGb, String engine, List<String> urls,
                          String weightsDir, double requestTimeoutS, int maxRetries, int maxInflight, boolean recomputeLogprobs,
                          String devices, boolean overlap, Double samplerTemperature) {
        public static Rollout defaults() {
            return new Rollout(8, 12, 1.0, 1.0, 0, List.of(), 0, 0.9, klrl.rollout.RolloutEngine.DEFAULT_PREFILL_GB,
                    "local", List.of(), null, 600, 5, 64, false, null, false, null);
        }

        /**
         * The temperature the sampler draws at: sampler_temperature when set — a sampler that is knowingly
         * not the trainer's policy, for studying the rollout correction (the trainer's log-probs stay at
         * rollout.temperature and are recomputed) — else rollout.temperature.
         */
        public double samplingTemperature() {
            return samplerTemperature != null ? samplerTemperature : temperature;
        }

        public Rollout {
            require(n >= 1, "rollout.n must be ≥ 1");
            require(maxNewTokens >= 1, "rollout.max_new_tokens must be ≥ 1");
            require(temperature > 0, "rollout.temperature must be > 0 for RL (the log-probs are of softmax(logits/T))");
            require(samplerTemperature == null || samplerTemperature > 0, "rollout.sampler_temperature must be > 0 (or unset: rollout.temperature)");
            require(topP > 0 && topP <= 1, "rollout.top_p must be in (0, 1]");
            require(topK >= 0, "rollout.top_k must be ≥ 0");
            require(kvCacheGb >= 0, "rollout.kv_cache_gb must be ≥ 0 (0 = from free GPU memory, no limit on CPU)");
            require(gpuMemoryUtilization > 0 && gpuMemoryUtilization <= 1, "rollout.gpu_memory_utilization must be in (0, 1]");
            require(prefillGb > 0, "rollout.prefill_gb must be > 0 (GiB of activations per prefill pass)");
            stop = stop == null ? List.of() : List.copyOf(stop);
            urls = urls == null ? List.of() : List.copyOf(urls);
            require(List.of("local", "sglang", "vllm").contains(engine), "rollout.engine must be local, sglang or vllm, got '" + engine + "'");
            require(engine.equals("local") || !urls.isEmpty(), "rollout.engine " + engine + " needs rollout.urls (the servers' base URLs, e.g. http://host:30000)");
            require(engine.equals("local") || (weightsDir != null && !weightsDir.isBlank()),
                    "rollout.engine " + engine + " needs rollout.weights_dir (a folder the trainer writes and every server reads)");
            for (String u : urls) {
                require(u.startsWith("http://") || u.startsWith("https://"), "rollout.urls: '" + u + "' is not an http(s) URL");
            }
            require(requestTimeoutS > 0 && maxRetries >= 1 && maxInflight >= 1,
                    "rollout.request_timeout_s must be > 0, rollout.max_retries and rollout.max_inflight ≥ 1");
            devices = devices == null || devices.isBlank() ? null : devices.strip();
            require(!overlap || devices != null, "rollout.overlap: true needs rollout.devices (where the policy's copy that"
                    + " generates" + (engine.equals("local") ? "" : " the servers' behaviour log-probs") + " lives, e.g. cpu or cuda:4,cuda:5)");
        }

        /** Whether a copy of the policy on rollout.devices generates (or, with servers, recomputes the behaviour log-probs). */
        public boolean ownDevices() {
            return devices != null;
        }

        public boolean remote() {
            return !engine.equals("local");
        }

        /** prefill_gb in bytes. */
        public long prefillBytes() {
            return gibToBytes(prefillGb);
        }

        /** kv_cache_gb in bytes (0: sized from free GPU memory, no limit on CPU). */
        public long kvCacheBytes() {
            return gibToBytes(kvCacheGb);
        }

        private static long gibToBytes(double gib) {
            return (long) (gib * (1L << 30));
        }
    }

    /**
     * @param name          grpo, rloo, reinforce++ or ppo
     * @param advantage     estimator; null = the algorithm's own (ppo → gae)
     * @param scaleRewards  GRPO's advantage scale (TRL's scale_rewards): group (÷ the group's std), batch (÷ the
     *                      batch's), none (Dr. GRPO); null = group when norm_adv_by_std, else none
     * @param policyLoss    vanilla (token-level ratios, PPO clip) or gspo (sequence-level ratios, GSPO)
     * @param overlongBuffer DAPO's overlong shaping; len 0 = off
     * @param maskTruncated responses cut at max_new_tokens leave the loss (TRL's mask_truncated_completions)
     * @param filterGroups  DAPO's dynamic sampling
     * @param rolloutCorrection importance weights π_old/μ for tokens the sampler drew from another distribution
     */
    public record Algorithm(String name, String advantage, boolean normAdvByStd, double gamma, double lambda, int ppoEpochs,
                            double clipRatioLow, double clipRatioHigh, Double clipRatioC, String lossAggMode,
                            double entropyCoef, Double valueClip, double valueCoef, double valueLr, int offPolicyLag,
                            String scaleRewards, String policyLoss, OverlongBuffer overlongBuffer, boolean maskTruncated,
                            FilterGroups filterGroups, RolloutCorrection rolloutCorrection) {
        static String defaultAdvantage(String algo) {
            return algo.equals("ppo") ? "gae" : algo;
        }

        /** The advantage estimator: the configured one, else the algorithm's own (ppo → gae). */
        public String resolvedAdvantage() {
            return advantage != null ? advantage : defaultAdvantage(name);
        }

        public static Algorithm defaults() {
            return new Algorithm("grpo", null, true, 1.0, 1.0, 1, 0.2, 0.2, null, "token-mean", 0.0, 0.5, 0.5, 1e-3, 0,
                    null, "vanilla", OverlongBuffer.defaults(), false, FilterGroups.defaults(), RolloutCorrection.defaults());
        }

        /** GRPO's advantage scale: scale_rewards when set, else from norm_adv_by_std. */
        public String resolvedScaleRewards() {
            return scaleRewards != null ? scaleRewards : normAdvByStd ? "group" : "none";
        }

        public Algorithm {
            require(List.of("grpo", "rloo", "reinforce++", "ppo").contains(name),
                    "algorithm.name must be one of grpo, rloo, reinforce++, ppo; got '" + name + "'");
            AdvantageEstimator.parse(advantage != null ? advantage : defaultAdvantage(name));
            Aggregation.parse(lossAggMode);
            require(ppoEpochs >= 1, "algorithm.ppo_epochs must be ≥ 1");
            require(clipRatioLow >= 0 && clipRatioLow < 1 && clipRatioHigh >= 0, "algorithm.clip_ratio_low/high out of range");
            require(clipRatioC == null || clipRatioC > 1, "algorithm.clip_ratio_c (dual clip) must be > 1");
            require(offPolicyLag >= 0, "algorithm.off_policy_lag must be ≥ 0");
            require(gamma >= 0 && gamma <= 1 && lambda >= 0 && lambda <= 1, "algorithm.gamma and lambda must be in [0, 1]");
            require(scaleRewards == null || List.of("group", "batch", "none").contains(scaleRewards),
                    "algorithm.scale_rewards must be group, batch or none; got '" + scaleRewards + "'");
            require(List.of("vanilla", "gspo").contains(policyLoss), "algorithm.policy_loss must be vanilla or gspo; got '" + policyLoss + "'");
            require(!policyLoss.equals("gspo") || lossAggMode.equals("seq-mean-token-mean"), "algorithm.policy_loss: gspo averages"
                    + " each sequence's tokens, then the sequences (as the GSPO paper and verl): set algorithm.loss_agg_mode: seq-mean-token-mean");
            require(!policyLoss.equals("gspo") || clipRatioC == null, "algorithm.clip_ratio_c (dual clip) is a vanilla-loss option;"
                    + " with algorithm.policy_loss: gspo leave it unset");
            overlongBuffer = overlongBuffer == null ? OverlongBuffer.defaults() : overlongBuffer;
            filterGroups = filterGroups == null ? FilterGroups.defaults() : filterGroups;
            rolloutCorrection = rolloutCorrection == null ? RolloutCorrection.defaults() : rolloutCorrection;
        }
    }

    /**
     * algorithm.rollout_correction (verl's rollout_correction; TRL's vllm_importance_sampling_correction):
     * weights ρ = π_old/μ on each token's loss terms when the sampler μ is not the trainer's π_old.
     *
     * @param is               none, token (each token its own ρ_t) or sequence (each token its sequence's Π_t ρ_t);
     *                         null = token with SGLang/vLLM rollouts (sequence with GSPO), none with local ones
     * @param isThreshold      weights above it are truncated to it (> 1)
     * @param rs               rejection: none, token, sequence or geometric (the per-token geometric mean of a
     *                         sequence's ratios) — outside [rs_threshold_lower, rs_threshold] the token or the
     *                         whole sequence gets weight 0
     * @param rsThresholdLower null = 1 / rs_threshold
     */
    public record RolloutCorrection(String is, double isThreshold, String rs, double rsThreshold, Double rsThresholdLower) {
        public static RolloutCorrection defaults() {
            return new RolloutCorrection(null, 2.0, "none", 2.0, null);
        }

        public RolloutCorrection {
            rs = rs == null ? "none" : rs;
            require(rsThresholdLower != null || rsThreshold > 1, "algorithm.rollout_correction.rs_threshold must be > 1 (the band is"
                    + " [1/rs_threshold, rs_threshold] unless rs_threshold_lower is set), got " + rsThreshold);
            // parsed once here so a wrong key is named at load time; the thresholds validate in RolloutWeights
            new klrl.loss.RolloutWeights(is == null ? klrl.loss.RolloutWeights.Mode.NONE : klrl.loss.RolloutWeights.mode(is),
                    isThreshold, klrl.loss.RolloutWeights.reject(rs),
                    rsThresholdLower != null ? rsThresholdLower : 1 / rsThreshold, rsThreshold);
        }
    }

    /**
     * DAPO's overlong reward shaping (verl's reward_model.overlong_buffer): a response longer than
     * max_new_tokens − len loses penalty × (its excess ÷ len), linearly up to penalty at the cap.
     */
    public record OverlongBuffer(int len, double penalty) {
        public static OverlongBuffer defaults() {
            return new OverlongBuffer(0, 1.0);
        }

        public OverlongBuffer {
            require(len >= 0, "algorithm.overlong_buffer.len must be ≥ 0 (0 = off)");
            require(penalty >= 0, "algorithm.overlong_buffer.penalty must be ≥ 0");
        }
    }

    /**
     * DAPO's dynamic sampling (verl's algorithm.filter_groups): prompt groups whose samples all got
     * the same {@code metric} (accuracy or reward) are dropped and more prompts sampled, up to
     * {@code maxGenBatches} generation batches a step.
     */
    public record FilterGroups(boolean enable, String metric, int maxGenBatches) {
        public static FilterGroups defaults() {
            return new FilterGroups(false, "accuracy", 10);
        }

        public FilterGroups {
            require(List.of("accuracy", "reward").contains(metric), "algorithm.filter_groups.metric must be accuracy or reward; got '" + metric + "'");
            require(maxGenBatches >= 1, "algorithm.filter_groups.max_gen_batches must be ≥ 1");
        }
    }

    /**
     * @param target  adaptive controller's target KL; null = fixed coefficient
     */
    public record Kl(String estimator, String placement, double coef, Double target, double horizon, boolean safeguards) {
        public static Kl defaults() {
            return new Kl("k1", "reward", 0.001, null, 10000, true);
        }

        public Kl {
            KlEstimator.parse(estimator);
            KlPlacement.parse(placement);
            require(coef >= 0, "kl.coef must be ≥ 0");
            require(horizon > 0, "kl.horizon must be > 0");
        }

        public KlEstimator parsedEstimator() {
            return KlEstimator.parse(estimator);
        }

        public KlPlacement parsedPlacement() {
            return KlPlacement.parse(placement);
        }
    }

    public record Optim(double lr, double weightDecay, double beta1, double beta2, double eps, int warmupSteps,
                        String schedule, double minLrRatio, double gradClip) {
        public static Optim defaults() {
            return new Optim(3e-4, 0.0, 0.9, 0.999, 1e-8, 0, "cosine", 0.1, 1.0);
        }

        public Optim {
            require(lr > 0, "optim.lr must be > 0");
            require(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "optim.beta1/beta2 must be in [0, 1)");
            require(List.of("constant", "cosine").contains(schedule), "optim.schedule must be constant or cosine");
            require(gradClip > 0, "optim.grad_clip must be > 0");
            require(warmupSteps >= 0, "optim.warmup_steps must be ≥ 0");
        }
    }

    /**
     * @param batchSize      prompts per step (each sampled rollout.n times)
     * @param miniBatchSize  prompts per optimizer step
     * @param microBatchSize sequences per forward/backward
     * @param checkpointLayers activation checkpointing: recompute the decoder in stages of this many layers
     *                         during backward (0 = keep all activations)
     * @param maxSkippedUpdates the run stops (without checkpointing the broken state) after this many
     *                          optimizer updates in a row were skipped for a non-finite loss or gradient
     * @param rewardJar         a jar with the class that {@code reward} names (a user's reward), or null
     * @param samplesEvery      every this many steps, the samples of the step's first {@code samplesPrompts}
     *                          prompts go to samples.jsonl (0 = never)
     * @param gradVar           log grad_var, the spread of the micro-batches' policy-gradient estimates
     *                          (see GradSpread; keeps one extra copy of the policy's gradient)
     * @param maxTokensPerMicroBatch padded positions (rows × (longest prompt + longest response)) per
     *                          micro-batch of every pass: rows ordered by length and packed up to it (verl's
     *                          ppo_max_token_len_per_gpu). 0 = micro_batch_size rows; when set it wins
     * @param parallel          with several devices in model.device: "data" (a replica per device, the work
     *                          of each step shared out), "layers" (the decoder's layers in contiguous groups
     *                          over the devices) or "auto" (data when a replica fits one device, else layers)
     * @param pipeline          with layers over several devices, run micro-batches through the device groups as
     *                          a pipeline (a thread per device, 1F1B in the update); false: one group at a time
     */
    public record Train(int maxSteps, int batchSize, int miniBatchSize, int microBatchSize, long seed, String reward,
                        String rewardJar, double formatRewardWeight, int rewardWorkers, long verifierTimeoutMs, int checkpointLayers,
                        int maxSkippedUpdates, int samplesEvery, int samplesPrompts, boolean gradVar, String parallel,
                        long maxTokensPerMicroBatch, boolean pipeline) {
        public static Train defaults() {
            return new Train(400, 32, 32, 128, 0, "math", null, 0.0, 2, 1000, 0, 10, 10, 2, false, "auto", 0, true);
        }

        public Train {
            require(maxSteps >= 0, "train.max_steps must be ≥ 0");
            require(batchSize >= 1 && miniBatchSize >= 1 && microBatchSize >= 1, "train batch sizes must be ≥ 1");
            require(rewardWorkers >= 1, "train.reward_workers must be ≥ 1");
            require(verifierTimeoutMs > 0, "train.verifier_timeout_ms must be > 0");
            require(checkpointLayers >= 0, "train.checkpoint_layers must be ≥ 0 (0 = no activation checkpointing)");
            require(maxSkippedUpdates >= 1, "train.max_skipped_updates must be ≥ 1");
            require(samplesEvery >= 0 && samplesPrompts >= 1, "train.samples_every must be ≥ 0 and train.samples_prompts ≥ 1");
            require(List.of("auto", "data", "layers").contains(parallel), "train.parallel must be auto, data or layers, got '" + parallel + "'");
            require(maxTokensPerMicroBatch >= 0, "train.max_tokens_per_micro_batch must be ≥ 0 (0 = train.micro_batch_size rows)");
        }
    }

    /**
     * @param k           samples per prompt for mean@k (greedy accuracy is always reported)
     * @param promptField the eval files' prompt path; null = data.prompt_field (a bundled set always reads its own)
     * @param answerField likewise for the gold answer
     */
    public record Eval(int every, int k, double temperature, int maxExamples, boolean beforeStart, String promptField,
                       String answerField) {
        /** The most samples a prompt an evaluation draws (pass@k curves run to 256 in the literature). */
        public static final int MAX_EVAL_K = 1_024;

        public static Eval defaults() {
            return new Eval(100, 4, 1.0, 200, true, null, null);
        }

        public Eval {
            require(every >= 0 && k >= 0 && maxExamples >= 1, "eval.every/k must be ≥ 0 and eval.max_examples ≥ 1");
            require(k <= MAX_EVAL_K, "eval.k must be at most " + MAX_EVAL_K + " samples a prompt, got " + k);
        }
    }

    public record Checkpoint(int every, int keep) {
        public static Checkpoint defaults() {
            return new Checkpoint(0, 2);
        }

        public Checkpoint {
            require(every >= 0 && keep >= 1, "checkpoint.every must be ≥ 0 and checkpoint.keep ≥ 1");
        }
    }

    /**
     * @param names whose names the TensorBoard event files carry: klrl (its own only), or verl or trl —
     *              then every number that has a counterpart in that trainer is written under its name too
     *              (beside klrl's, in the same event; {@link klrl.metrics.PeerNames} holds the table).
     *              metrics.jsonl keeps klrl's names whatever this says
     */
    public record Metrics(String names) {
        public static Metrics defaults() {
            return new Metrics("klrl");
        }

        public Metrics {
            require(klrl.metrics.PeerNames.CHOICES.contains(String.valueOf(names)), "metrics.names must be one of "
                    + String.join(", ", klrl.metrics.PeerNames.CHOICES) + "; got '" + names + "'");
        }
    }
}
