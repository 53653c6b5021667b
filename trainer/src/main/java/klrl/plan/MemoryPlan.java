package klrl.plan;

import ai.djl.Device;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import klrl.config.TrainConfig;
import klrl.model.Attention;
import klrl.model.Decoder;
import klrl.model.ModelConfig;
import klrl.model.Placement;
import klrl.train.StepMetrics;
import klrl.util.UserError;

/**
 * Memory estimates from config.json and the training config alone (no weights read, nothing
 * allocated): what the fullest GPU holds, either with a whole replica on each of {@code gpus} devices
 * (data parallelism: each rolls out and trains on its share of the batch) or with the decoder layers
 * placed over them exactly as the trainer places them; for a run on CPU, what the host holds. It also
 * makes train.parallel's "auto" choice. {@code plan} prints it; the trainer checks it before any work.
 */
public final class MemoryPlan {
    private MemoryPlan() {}

    public static final double GB = 1024.0 * 1024 * 1024;

    /** Parts held throughout a step: the weights (with fp32 masters under fp16), reference, gradients, AdamW state. */
    public static final List<String> HELD = List.of("weights", "reference", "gradients", "optimizer");
    /** The update's part. */
    public static final List<String> UPDATE = List.of("activations");
    /**
     * The rollout's parts. Memory is freed between rollout and update, so a device holds the larger of
     * the two (with {@link #HELD}), never both.
     */
    public static final List<String> ROLLOUT = List.of("kv_cache", "prefill");

    /**
     * Memory of the fullest GPU, or of the host for a run on CPU, by part.
     *
     * @param partsGb        GiB of each part of {@link #HELD}, {@link #UPDATE} and {@link #ROLLOUT}: the fullest GPU's,
     *                       or one replica's on the host
     * @param rolloutChunk   sequences decoded at once (a count): the rollout runs in chunks of this many
     * @param replicas       copies of {@code partsGb} the total counts: the replicas the host holds in data
     *                       parallelism on CPU, else 1 (a GPU holds one)
     * @param totalGb        {@link #formula()} evaluated
     * @param layersPerDevice decoder layers on each device
     * @param parallel       "single" (one device), "data" (a replica per device) or "layers" (layer groups over the devices)
     * @param host           true for a run on CPU: the memory is the host's
     * @param microBatches   micro-batches per mini-batch
     * @param pipelineBusy   with layers pipelined (train.pipeline), the stages' expected busy fraction, else NaN
     * @param inFlight       micro-batches whose activations the fullest device holds at once in the update: 1, or
     *                       in a pipeline its stage's min(S − s, M) (on the host, the most any stage holds: stage 0's)
     */
    public record Plan(long parameters, long trainable, Map<String, Double> partsGb, long rolloutChunk, int replicas,
                       double totalGb, boolean fits, int[] layersPerDevice, String parallel, boolean host, int microBatches,
                       double pipelineBusy, int inFlight) {
        /** How the total is formed from the parts, by name, e.g. "weights + … + max(activations, kv_cache + prefill)". */
        public String formula() {
            return formula(k -> k);
        }

        /** {@link #formula()} with {@code part}'s text for each part (e.g. its GiB) in place of its name. */
        public String formula(java.util.function.Function<String, String> part) {
            String held = String.join(" + ", HELD.stream().map(part).toList());
            String max = "max(" + String.join(" + ", UPDATE.stream().map(part).toList()) + ", "
                    + String.join(" + ", ROLLOUT.stream().map(part).toList()) + ")";
            return replicas > 1 ? replicas + " × (" + held + " + " + max + ")" : held + " + " + max;
        }

        /** The total from the parts, as {@link #formula()} says. */
        static double total(Map<String, Double> gb, int replicas) {
            return replicas * (sum(gb, HELD) + Math.max(sum(gb, UPDATE), sum(gb, ROLLOUT)));
        }

        private static double sum(Map<String, Double> gb, List<String> keys) {
            return keys.stream().mapToDouble(gb::get).sum();
        }
    }

    /**
     * The plan of the mode train.parallel names; "auto" is data parallelism when a replica with its
     * optimizer state, update activations and a KV cache for at least one sequence fits one GPU, else
     * layer placement — the choice the trainer makes at start-up.
     */
    public static Plan plan(TrainConfig c, ModelConfig m, int gpus, double gpuMemoryGb) {
        if (gpus == 1 || !c.train().parallel().equals("layers")) {
            Plan data = plan(c, m, gpus, gpuMemoryGb, true);
            if (gpus == 1 || dataParallel(c, data)) {
                return data;
            }
        }
        return plan(c, m, gpus, gpuMemoryGb, false);
    }

    /** train.parallel's choice given the plan of a replica per device: "data", or "auto" when that replica fits. */
    public static boolean dataParallel(TrainConfig c, Plan replica) {
        String mode = c.train().parallel();
        return mode.equals("data") || (mode.equals("auto") && replica.fits());
    }

    /** @param data a whole replica per GPU with its share of the batch; else the layers placed over the GPUs */
    public static Plan plan(TrainConfig c, ModelConfig m, int gpus, double gpuMemoryGb, boolean data) {
        return plan(c, m, gpus, gpuMemoryGb, data, false);
    }

    /**
     * The plan of a run on CPU "devices" (model.device: cpu, or cpu,cpu,… for several replicas) against
     * the host's memory, in the mode the trainer picks there: a replica per device unless train.parallel
     * is "layers" (the host's memory is not bounded per device, so "auto" always finds a replica fits).
     */
    public static Plan hostPlan(TrainConfig c, ModelConfig m, int devices, double hostMemoryGb) {
        return plan(c, m, devices, hostMemoryGb, devices > 1 && !c.train().parallel().equals("layers"), true);
    }

    /**
     * @param host true on CPU: every device's share is in the host's memory (a whole model per replica, or
     *             one whole model when its layers are placed over the devices), and the rollout is not
     *             chunked unless rollout.kv_cache_gb caps it
     */
    static Plan plan(TrainConfig c, ModelConfig m, int gpus, double gpuMemoryGb, boolean data, boolean host) {
        if (gpus < 1) {
            throw new UserError("--gpus must be ≥ 1");
        }
        int groups = data ? 1 : gpus; // devices the decoder's layers are spread over
        // the fullest GPU of the trainer's own placement bounds what fits
        List<Device> devs = new ArrayList<>();
        for (int i = 0; i < groups; i++) {
            devs.add(Device.gpu(i));
        }
        Placement place = Placement.balanced(devs, m);
        int micro = microBatches(c);
        boolean pipelined = !data && groups > 1 && c.train().pipeline();
        Held held = Held.of(c, m, place, host, pipelined);
        double act = updateActivations(c, m, place, held.bytes(), micro, pipelined, host);
        double prefill = c.rollout().prefillBytes();
        double kvPerRow = 2.0 * held.layers() * m.numKvHeads() * m.headDim() * sequence(c) * held.bytes();
        long chunk = rolloutChunk(c, gpus, data, host, kvPerRow, 0.9 * gpuMemoryGb * GB - held.sum() - prefill);
        Map<String, Double> g = new java.util.LinkedHashMap<>();
        g.put("weights", (held.weights() + held.master()) / GB);
        g.put("reference", held.reference() / GB);
        g.put("gradients", held.grads() / GB);
        g.put("optimizer", held.optimizer() / GB);
        g.put("activations", act / GB);
        g.put("kv_cache", chunk * kvPerRow / GB);
        g.put("prefill", prefill / GB);
        int replicas = host && data ? gpus : 1;
        double total = Plan.total(g, replicas);
        // a GPU's rollout takes what the update leaves (chunked to fit); the host must hold everything at once
        boolean fits = chunk >= 1 && (host ? total : (held.sum() + act) / GB) <= 0.9 * gpuMemoryGb;
        int[] layers = data ? new int[gpus] : place.layerCounts();
        if (data) {
            java.util.Arrays.fill(layers, m.numLayers());
        }
        int[] flight = inFlight(place, micro, pipelined);
        return new Plan(m.parameterCount(), trainable(c, m), g, chunk, replicas, total, fits, layers,
                gpus == 1 ? "single" : data ? "data" : "layers", host, micro, pipelined ? busy(groups, micro) : Double.NaN,
                flight[host ? 0 : fullestStage(place, flight)]);
    }

    /** Positions of the longest sequence: data.max_prompt_tokens + rollout.max_new_tokens. */
    public static long sequence(TrainConfig c) {
        return c.data().maxPromptTokens() + c.rollout().maxNewTokens();
    }

    /** Parameters the optimizer updates: LoRA's adapters, or all of them. */
    static long trainable(TrainConfig c, ModelConfig m) {
        return c.model().lora().rank() > 0 ? loraParameters(c, m) : m.parameterCount();
    }

    /**
     * The parts one device holds throughout a step, in bytes, and what sizes them: {@code layers}
     * decoder layers, {@code bytes} per weight.
     */
    record Held(int bytes, int layers, double weights, double master, double reference, double grads,
                double optimizer) {
        double sum() {
            return weights + master + reference + grads + optimizer;
        }

        /**
         * The fullest device of {@code place}'s; on the host every group's share is in the one memory, so
         * the whole model counts.
         */
        static Held of(TrainConfig c, ModelConfig m, Placement place, boolean host, boolean pipelined) {
            long p = m.parameterCount();
            int bytes = c.model().dtype().equals("float16") ? 2 : 4;
            boolean lora = c.model().lora().rank() > 0;
            List<Device> devs = place.devices();
            long[] load = new long[devs.size()];
            m.expectedTensors().forEach((name, shape) -> load[devs.indexOf(Decoder.deviceOf(name, place))] += count(shape));
            long devParams = host ? p : java.util.Arrays.stream(load).max().orElse(p);
            int devLayers = host ? m.numLayers() : java.util.Arrays.stream(place.layerCounts()).max().orElse(m.numLayers());
            long devTrainable = lora ? trainable(c, m) / m.numLayers() * devLayers : devParams;
            double weights = (double) devParams * bytes;
            double reference = lora ? 0 : weights;                        // LoRA: the base with adapters off
            // fp16 training keeps fp32 master weights beside the fp16 copy
            double master = bytes == 2 ? 4.0 * devTrainable : 0;
            double grads = 4.0 * devTrainable;
            if (pipelined && m.tieWordEmbeddings() && !lora) {
                grads += (double) m.vocabSize() * m.hiddenSize() * bytes; // a tied embedding's lookup gradient apart (Pipeline)
            }
            double optimizer = 8.0 * devTrainable;                        // AdamW m and v, fp32
            return new Held(bytes, devLayers, weights, master, reference, grads, optimizer);
        }
    }

    /**
     * Micro-batches whose activations each device (stage) holds at once in the update: 1 one group at a
     * time; in a pipeline (1F1B) stage s of S runs S−1−s forwards ahead, so it holds min(S−s, M).
     */
    static int[] inFlight(Placement place, int micro, boolean pipelined) {
        int stages = place.stages();
        int[] f = new int[stages];
        for (int s = 0; s < stages; s++) {
            f[s] = pipelined ? Math.min(stages - s, micro) : 1;
        }
        return f;
    }

    /**
     * The device the update's activations fill most: the stage whose layers times micro-batches in
     * flight is the largest.
     */
    static int fullestStage(Placement place, int[] inFlight) {
        int[] counts = place.layerCounts();
        int at = 0;
        for (int s = 1; s < counts.length; s++) {
            at = counts[s] * inFlight[s] > counts[at] * inFlight[at] ? s : at;
        }
        return at;
    }

    /**
     * The update's activation bytes on the fullest device: its layers' worth for each micro-batch in
     * flight (of layer inputs with checkpointing, of whole layers without). On the host all stages'
     * add up, and every stage computes a layer at once.
     */
    static double updateActivations(TrainConfig c, ModelConfig m, Placement place, int bytes, int micro, boolean pipelined,
                                    boolean host) {
        int[] counts = place.layerCounts(), f = inFlight(place, micro, pipelined);
        int heldLayers = host ? m.numLayers() : java.util.Arrays.stream(counts).max().orElse(m.numLayers());
        if (pipelined) {
            int sum = 0;
            for (int s = 0; s < counts.length; s++) {
                heldLayers = Math.max(heldLayers, counts[s] * f[s]);
                sum += counts[s] * f[s];
            }
            heldLayers = host ? sum : heldLayers;
        }
        return activations(c, m, bytes, heldLayers, pipelined && host ? counts.length : 1);
    }

    /**
     * Sequences decoded at once, {@code kvPerRow} bytes of KV cache each: a replica rolls out its share
     * of the prompts; on a GPU as many as fit in {@code free} bytes (what is left beside the held parts
     * and the prefill), on the host all of them unless rollout.kv_cache_gb caps it.
     */
    static long rolloutChunk(TrainConfig c, int gpus, boolean data, boolean host, double kvPerRow, double free) {
        long rows = (long) (data ? (c.train().batchSize() + gpus - 1) / gpus : c.train().batchSize()) * c.rollout().n();
        if (!host) {
            return Math.max(0, Math.min(rows, (long) Math.floor(free / kvPerRow)));
        }
        return c.rollout().kvCacheGb() > 0 ? Math.min(rows, (long) Math.floor(c.rollout().kvCacheBytes() / kvPerRow)) : rows;
    }

    /**
     * Micro-batches per mini-batch: its rows over train.micro_batch_size, or, with a token budget, its
     * padded positions at the longest sequence over the budget (an upper bound: shorter rows pack more).
     */
    static int microBatches(TrainConfig c) {
        long rows = (long) c.train().miniBatchSize() * c.rollout().n();
        long budget = c.train().maxTokensPerMicroBatch();
        if (budget > 0) {
            long seq = sequence(c);
            long perMicro = Math.max(1, budget / seq);
            return (int) ((rows + perMicro - 1) / perMicro);
        }
        return (int) ((rows + c.train().microBatchSize() - 1) / c.train().microBatchSize());
    }

    /** A pipeline's busy fraction with S stages and M micro-batches of equal work: M / (M + S − 1). */
    public static double busy(int stages, int micro) {
        return (double) micro / (micro + stages - 1);
    }

    /** The fewest micro-batches per mini-batch with which S stages are at least {@code target} busy. */
    public static int microBatchesFor(int stages, double target) {
        int m = 1;
        while (busy(stages, m) < target) {
            m++;
        }
        return m;
    }

    /**
     * Activation bytes on the fullest device, whose layers hold {@code heldLayers} layers' worth of
     * micro-batches at once (a pipeline's stage, several micro-batches'), for the pass that needs the
     * most: the longest sequence's; under model.attention: auto also the longest that runs eager (just
     * under {@link Attention#AUTO_MIN_TOKENS} positions), whose scores may outweigh it.
     */
    static double activations(TrainConfig c, ModelConfig m, int bytes, int heldLayers, int computing) {
        String mode = c.model().attention();
        long seq = sequence(c), eager = Math.min(seq, Attention.AUTO_MIN_TOKENS - 1);
        double longest = activations(c, m, bytes, heldLayers, computing, seq, Attention.fused(mode, seq));
        return mode.equals("auto") && eager < seq
                ? Math.max(longest, activations(c, m, bytes, heldLayers, computing, eager, false)) : longest;
    }

    /**
     * The same for passes of {@code t} positions a row, with fused attention or eager. With activation
     * checkpointing (train.checkpoint_layers) each held layer's worth is a layer's input, plus one
     * layer's full activations ({@code computing} of them when pipeline stages share the one memory)
     * while it is recomputed; without, each is a layer's full activations, its whole graph kept for the
     * backward. A layer's full activations are s·b·h·(34 + 5·a·s/h) bytes in 16-bit (Korthikanti et
     * al.); plus the last stage's output head ({@link #head}). The 5·a·s/h term is eager attention's
     * scores and probabilities, quadratic in the sequence; fused attention keeps none of them, only the
     * keys and values repeated to the query heads (2·s·b·h more): linear.
     */
    static double activations(TrainConfig c, ModelConfig m, int bytes, int heldLayers, int computing, long t, boolean fused) {
        // positions one micro-batch computes: the token budget bounds them when set (a longer row alone still
        // needs its own length), else micro_batch_size rows of t positions
        long budget = c.train().maxTokensPerMicroBatch(), response = Math.min(t, c.rollout().maxNewTokens());
        double positions = budget > 0 ? Math.max(budget, t) : (double) c.train().microBatchSize() * t;
        double responses = budget > 0 ? Math.max(budget, response) : (double) c.train().microBatchSize() * response;
        double attention = fused ? 4.0 : 5.0 * m.numHeads() * t / m.hiddenSize();
        double oneLayer = positions * m.hiddenSize() * (34.0 + attention) * bytes / 2;
        double head = head(c, m, bytes, positions, responses);
        if (c.train().checkpointLayers() == 0) {
            return heldLayers * oneLayer + head;
        }
        double boundaries = positions * m.hiddenSize() * bytes * heldLayers;
        return boundaries + computing * oneLayer + head;
    }

    /** The output head's peak over one piece of T ≤ C response tokens (or C = 0), in fp32 [T, vocabulary] tensors ({@link #head} counts them). */
    static final double HEAD_TENSORS = 7;
    /** What the exact KL (kl.estimator: full) adds to {@link #HEAD_TENSORS}. */
    static final double EXACT_KL_TENSORS = 5;
    /** The chunked head's peak over one chunk of C tokens, in fp32 [C, vocabulary] tensors. */
    static final double CHUNK_TENSORS = 3;
    /** What the exact KL adds to {@link #CHUNK_TENSORS}: the reference's logits and log-softmax. */
    static final double CHUNK_KL_TENSORS = 2;

    /**
     * The output head's bytes in a micro-batch of {@code responses} response tokens T among {@code
     * positions}. It runs over C = model.head_chunk_tokens response tokens at a time (one piece when T ≤ C
     * or C = 0), so what depends on the vocabulary V is one piece's: min(T, C) · V · 4 · k bytes, k
     * counted in fp32 [piece, V] tensors from what the trainer computes.
     *
     * <p>One piece keeps autograd's graph: the logits, their log-softmax, its exp, and the entropy's
     * product of the two — 4; its backward makes their gradients, about 3 live at once: k = 7. The exact
     * KL (kl.estimator: full) adds the reference's logits and log-softmax, a second exp, the difference
     * of the log-softmaxes and its product with the exp: 5 more. Chunked, each [C, V] tensor is freed
     * once used and the backward builds the logits' gradient in place: the logits with their graph, the
     * log-softmax turned into the gradient, and its exp — k = 3 (measured in fp32: 935 MB more peak per
     * 512 tokens of chunk at V = 151,936, 3.0 tensors); the exact KL adds the reference's logits and
     * log-softmax: 2 more (counted from the code). In fp16 the lm_head's own output, which the graph's
     * cast keeps, adds ½; a sampling temperature ≠ 1 divides each network's fp32 logits into one more.
     *
     * <p>Beside that, [T, E] tensors in the model's dtype: the response tokens' hidden states, and their
     * gradient — autograd's in one piece; chunked, the chunks' gradients and the whole they are joined
     * into (the forward keeps only these states and [T] values, no graph); with the exact KL the
     * reference's final hidden states over all {@code positions} and their response rows.
     */
    static double head(TrainConfig c, ModelConfig m, int bytes, double positions, double responses) {
        int chunk = c.model().headChunkTokens();
        boolean whole = chunk == 0 || responses <= chunk, exactKl = c.kl().parsedEstimator().needsFullLogits();
        double scaled = c.rollout().temperature() != 1 ? 1 : 0, half = (4.0 - bytes) / 4;
        double k = (whole ? HEAD_TENSORS : CHUNK_TENSORS) + half + scaled
                + (exactKl ? (whole ? EXACT_KL_TENSORS : CHUNK_KL_TENSORS) + scaled : 0);
        double vocab = (whole ? responses : chunk) * m.vocabSize() * 4.0 * k;
        double states = (whole ? 2 : 3) * responses + (exactKl ? positions + responses : 0);
        return vocab + states * m.hiddenSize() * bytes;
    }

    /** LoRA's A and B over every target module of every layer. */
    static long loraParameters(TrainConfig c, ModelConfig m) {
        int r = c.model().lora().rank();
        long perLayer = 0;
        long h = m.hiddenSize(), q = (long) m.numHeads() * m.headDim(), kv = (long) m.numKvHeads() * m.headDim(), in = m.intermediateSize();
        for (String t : c.model().lora().targetModules()) {
            perLayer += switch (t) {
                case "q_proj" -> r * (h + q);
                case "k_proj", "v_proj" -> r * (h + kv);
                case "o_proj" -> r * (q + h);
                case "gate_proj", "up_proj" -> r * (h + in);
                case "down_proj" -> r * (in + h);
                default -> 0;
            };
        }
        return perLayer * m.numLayers();
    }

    private static long count(long[] shape) {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        return n;
    }

    /** The config keys that size each component of {@link Plan#partsGb}. */
    private static final Map<String, String> KEYS = Map.of(
            "weights", "model.path, model.dtype",
            "reference", "model.lora.rank (LoRA reads the reference from the base weights)",
            "gradients", "model.lora.rank",
            "optimizer", "model.lora.rank",
            "activations", "train.micro_batch_size, train.checkpoint_layers, train.pipeline, rollout.max_new_tokens, data.max_prompt_tokens,"
                    + " model.attention, model.head_chunk_tokens",
            "kv_cache", "rollout.n × train.batch_size, rollout.max_new_tokens, data.max_prompt_tokens, rollout.kv_cache_gb",
            "prefill", "rollout.prefill_gb");

    /**
     * Stops before any work when a run cannot fit, naming the largest part of the estimate and the keys
     * that size it. On GPUs: the fullest device's weights, optimizer state and update activations
     * against its memory (rollouts then run in chunks of what is left). On CPU: everything one step
     * holds at once, the whole rollout's KV cache included (CPU rollouts are not chunked unless
     * rollout.kv_cache_gb caps them), against the host's available memory; and on both, the rollout's
     * per-token bookkeeping in the Java heap.
     *
     * With data-parallel replicas each GPU holds a replica (the host all of them, on CPU); with the layers
     * placed over CPU devices the host holds the whole model once.
     *
     * @param devices     the run's devices: a replica on each when {@code data}, else the layers placed over them
     * @param deviceBytes memory of each GPU, or of the host's available memory for CPU; ≤ 0 = unknown (not checked)
     */
    public static void preflight(TrainConfig c, ModelConfig m, List<Device> devices, boolean data, long deviceBytes,
                                 long javaHeapBytes) {
        long rows = (long) c.train().batchSize() * c.rollout().n();
        double javaBytes = (double) rows * c.rollout().maxNewTokens() * (8 + 4) + (double) rows * 64;
        if (javaBytes > 0.8 * javaHeapBytes) {
            throw new UserError(String.format(java.util.Locale.ROOT, "rollout.n × train.batch_size = %,d sequences of up to"
                    + " rollout.max_new_tokens = %d tokens need about %.1f GiB of Java heap to record, more than the %.1f GiB"
                    + " this JVM may use (-Xmx): lower rollout.n, train.batch_size or rollout.max_new_tokens",
                    rows, c.rollout().maxNewTokens(), javaBytes / GB, javaHeapBytes / GB));
        }
        if (deviceBytes <= 0) {
            return;
        }
        boolean gpu = devices.get(0).isGpu();
        Plan p = devicePlan(c, m, devices, data, deviceBytes);
        // on CPU a KV cache too small for one sequence is the rollout's own error (it names rollout.kv_cache_gb)
        if (fitsOn(p, gpu, deviceBytes)) {
            return;
        }
        Map<String, Double> gb = p.partsGb();
        double need = p.totalGb();
        String largest = gb.entrySet().stream().max(Map.Entry.comparingByValue()).orElseThrow().getKey();
        throw new UserError(String.format(java.util.Locale.ROOT, "this run needs about %.1f GiB on %s, which has %.1f GiB%s;"
                + " the largest part is %s (%.1f GiB), sized by %s%s; `plan` shows the whole estimate", need,
                gpu ? "each of " + devices : "the host", deviceBytes / GB, gpu ? "" : " available",
                largest, gb.get(largest), KEYS.getOrDefault(largest, largest),
                largest.equals("activations") ? withSdpa(c, m, devices, data, deviceBytes, p) : ""));
    }

    /** The plan the trainer checks: the fullest GPU's against its memory, or the host's against what it has available. */
    private static Plan devicePlan(TrainConfig c, ModelConfig m, List<Device> devices, boolean data, long deviceBytes) {
        boolean gpu = devices.get(0).isGpu();
        return gpu ? plan(c, m, devices.size(), deviceBytes / GB, data) : plan(c, m, devices.size(), deviceBytes / GB, data, true);
    }

    /** Whether {@code p} fits: on a GPU what the update holds, on the host everything at once, in 90 % of the memory. */
    private static boolean fitsOn(Plan p, boolean gpu, long deviceBytes) {
        return gpu ? p.fits() : p.totalGb() <= 0.9 * deviceBytes / GB;
    }

    /**
     * When passes run eager attention (model.attention: eager, or auto below its threshold) and their scores
     * are most of {@code eager}'s activations, or dropping them would make the run fit: what it needs with model.attention: sdpa, which keeps none;
     * else nothing.
     */
    private static String withSdpa(TrainConfig c, ModelConfig m, List<Device> devices, boolean data, long deviceBytes, Plan eager) {
        if (c.model().attention().equals("sdpa")) {
            return "";
        }
        TrainConfig.Model o = c.model();
        TrainConfig fused = new TrainConfig(new TrainConfig.Model(o.path(), o.dtype(), o.device(), o.lora(), o.critic(), "sdpa", o.headChunkTokens()),
                c.data(), c.rollout(), c.algorithm(), c.kl(), c.optim(), c.train(), c.eval(), c.checkpoint(), c.metrics(),
                c.outputDir());
        Plan p = devicePlan(fused, m, devices, data, deviceBytes);
        double activations = eager.partsGb().get("activations"), scores = activations - p.partsGb().get("activations");
        boolean gpu = devices.get(0).isGpu(), fits = fitsOn(p, gpu, deviceBytes);
        if (!fits && scores <= 0.5 * activations) {
            return "";
        }
        // on a GPU the rollout's KV cache takes whatever the update leaves: what fits is the update's part
        double need = gpu ? HELD.stream().mapToDouble(p.partsGb()::get).sum() + p.partsGb().get("activations") : p.totalGb();
        return String.format(java.util.Locale.ROOT, "; eager attention's scores are about %.1f GiB of them (model.attention: %s):"
                + " with model.attention: sdpa %s about %.1f GiB (%s)", scores, c.model().attention(),
                gpu ? "the update needs" : "it needs", need, fits ? "fits" : "still too much");
    }

    /** MemAvailable of /proc/meminfo in bytes, or −1 where it cannot be read. */
    public static long hostAvailableBytes() {
        try {
            for (String l : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/meminfo"))) {
                if (l.startsWith("MemAvailable:")) {
                    // plus what this process holds: the allocator keeps freed blocks (the launch settings never
                    // trim), so a trainer started after another in the same process reuses them
                    return Long.parseLong(l.replaceAll("[^0-9]", "")) * 1024 + Math.max(0, StepMetrics.residentMb()) * (1L << 20);
                }
            }
        } catch (java.io.IOException | RuntimeException e) {
            // not Linux: not checked
        }
        return -1;
    }

    /**
     * Sequences decoded at once: rollout.kv_cache_gb per device, or, when it is 0 on GPUs, what each GPU
     * has free up to rollout.gpu_memory_utilization of its memory (read before every rollout, since the
     * update before it held activations); no cap on CPU.
     */
    public static int kvRows(TrainConfig cfg, klrl.model.Decoder policy) {
        klrl.model.Placement placement = policy.placement();
        long perSeq = klrl.rollout.RolloutEngine.kvBytesPerSequence(policy, cfg.data().maxPromptTokens() + cfg.rollout().maxNewTokens());
        long[] budget = new long[placement.stages()];
        boolean gpu = placement.output().isGpu();
        for (int i = 0; i < budget.length; i++) {
            if (cfg.rollout().kvCacheGb() > 0) {
                budget[i] = cfg.rollout().kvCacheBytes();
            } else if (gpu) {
                var u = ai.djl.util.cuda.CudaUtils.getGpuMemory(placement.devices().get(i));
                // the prefill's activations come on top of the cache while it is being filled
                budget[i] = (long) (cfg.rollout().gpuMemoryUtilization() * u.getMax()) - u.getUsed()
                        - cfg.rollout().prefillBytes();
            } else {
                budget[i] = Long.MAX_VALUE; // CPU: host memory, no cap
            }
        }
        return klrl.rollout.RolloutEngine.rowsThatFit(perSeq, budget);
    }
}
