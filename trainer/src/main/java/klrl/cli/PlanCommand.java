package klrl.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import klrl.model.ModelConfig;
import klrl.plan.MemoryPlan;
import klrl.util.Json;
import klrl.util.UserError;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Memory plan from config.json and the training config alone (no weights read, nothing allocated):
 * how the trainer would use {@code --gpus} devices (train.parallel: a replica on each, or the decoder
 * layers placed over them exactly as {@link klrl.model.Placement#balanced} does) and what the fullest
 * GPU then holds; for a config on CPU (model.device: cpu), what the host's memory holds. The estimate
 * is {@link MemoryPlan}'s, and the total is printed with how it is formed from the parts, since the
 * rollout's and the update's parts are alternatives rather than a sum.
 */
@Command(name = "plan", mixinStandardHelpOptions = true,
        description = "Parameter count and per-GPU memory (weights, reference, gradients, optimizer, activations, KV cache);"
                + " for a config on CPU, the host's memory.")
public final class PlanCommand implements Callable<Integer> {
    static final double DEFAULT_GPU_MEMORY_GB = 80;

    @Option(names = "--config", description = "training YAML or preset (default: tiny-cpu)") String config;
    @Option(names = "--model-config", description = "the model's config.json (default: model.path/config.json)") Path modelConfig;
    @Option(names = "--gpus", description = "GPUs of the node (a replica on each, or the layers placed over them; default: 1);"
            + " a config on CPU takes its devices from model.device instead") Integer gpus;
    @Option(names = "--gpu-memory-gb", paramLabel = "GB", description = "memory of each GPU in GB (default: 80); for a config on"
            + " CPU (model.device: cpu), the host memory to plan against (default: what this machine has available now)")
    Double gpuMemoryGb;
    @Option(names = "--set", paramLabel = "KEY=VALUE", description = "any config key, as for train, e.g. --set model.lora.rank=64")
    java.util.List<String> set = new java.util.ArrayList<>();
    @Option(names = "--json", description = "print the plan as one JSON object: the parts and total in GB, how the total is"
            + " formed from them (total_formula, total_terms), and the rollout chunk as a count of sequences")
    boolean json;

    @Override
    public Integer call() {
        TrainConfig c = ConfigLoader.load(config, Map.of(), set);
        int cpus = cpuDevices(c);
        if (cpus > 0 && gpus != null) {
            throw new UserError("plan: --gpus counts GPUs, but this config runs on the CPU (model.device: " + c.model().device()
                    + "); plan it for GPUs with --set model.device=cuda, or for several CPU replicas with --set model.device=cpu,cpu");
        }
        ModelConfig m = modelShape(c, modelConfig);
        int devices = cpus > 0 ? cpus : gpus == null ? 1 : gpus;
        double memoryGb = cpus > 0 ? hostMemoryGb() : gpuMemoryGb == null ? DEFAULT_GPU_MEMORY_GB : gpuMemoryGb;
        MemoryPlan.Plan p = cpus > 0 ? MemoryPlan.hostPlan(c, m, devices, memoryGb) : MemoryPlan.plan(c, m, devices, memoryGb);
        if (json) {
            System.out.println(Json.write(json(c, p, devices, memoryGb)));
        } else {
            text(c, p, devices, memoryGb);
        }
        return 0;
    }

    /** The plan as one JSON object: the parts and total in GB, how the total is formed, the rollout chunk as a count. */
    private static ObjectNode json(TrainConfig c, MemoryPlan.Plan p, int devices, double memoryGb) {
        String micro = c.train().maxTokensPerMicroBatch() > 0 ? c.train().maxTokensPerMicroBatch() + " tokens"
                : c.train().microBatchSize() + " rows";
        ObjectNode o = Json.MAPPER.createObjectNode();
        o.put("parameters", p.parameters());
        o.put("trainable_parameters", p.trainable());
        o.put("device", p.host() ? "cpu" : "gpu");
        o.put(p.host() ? "cpu_devices" : "gpus", devices);
        o.put("parallel", p.parallel());
        o.put("attention", c.model().attention());
        // what a pass as long as the longest sequence (prompt + response) runs
        o.put("attention_longest_pass", klrl.model.Attention.of(c.model().attention(), MemoryPlan.sequence(c)));
        o.put(p.host() ? "host_memory_gb" : "gpu_memory_gb", memoryGb);
        o.put("micro_batch", micro);
        o.put("micro_batches_per_mini_batch", p.microBatches());
        if (!Double.isNaN(p.pipelineBusy())) {
            o.put("pipeline_busy", p.pipelineBusy());
            o.put("micro_batches_for_busy_0_9", MemoryPlan.microBatchesFor(p.layersPerDevice().length, 0.9));
            o.put("micro_batches_in_flight", p.inFlight());
        }
        var lp = o.putArray(p.host() ? "layers_per_device" : "layers_per_gpu");
        for (int layers : p.layersPerDevice()) {
            lp.add(layers);
        }
        // GB only: the parts (one replica's, with several on the host) and the total
        ObjectNode g = o.putObject(p.host() ? "host_gb" : "per_gpu_gb");
        p.partsGb().forEach(g::put);
        g.put("total", p.totalGb());
        o.put("total_formula", p.formula());
        ObjectNode terms = o.putObject("total_terms");
        MemoryPlan.HELD.forEach(terms.putArray("sum")::add);
        var max = terms.putArray("plus_max_of");
        MemoryPlan.UPDATE.forEach(max.addArray()::add);
        MemoryPlan.ROLLOUT.forEach(max.addArray()::add);
        terms.put("times", p.replicas());
        o.put("rollout_chunk_sequences", p.rolloutChunk());
        o.put("fits", p.fits());
        return o;
    }

    /** The plan as text: the devices and how they are used, the attention, the parts and how the total is formed. */
    private void text(TrainConfig c, MemoryPlan.Plan p, int devices, double memoryGb) {
        if (p.host()) {
            System.out.printf("parameters %,d (trainable %,d), %d CPU device%s, host memory %.1f GB%s%n", p.parameters(), p.trainable(),
                    devices, devices == 1 ? "" : "s", memoryGb, gpuMemoryGb == null ? " available" : " (--gpu-memory-gb)");
        } else {
            System.out.printf("parameters %,d (trainable %,d), %d GPU%s of %.0f GB%n", p.parameters(), p.trainable(), devices,
                    devices == 1 ? "" : "s", memoryGb);
        }
        String unit = p.host() ? "CPU devices" : "GPUs";
        System.out.println(switch (p.parallel()) {
            case "data" -> "parallel: data — a replica on each of the " + devices + " " + unit + ", each rolling out and training on 1/"
                    + devices + " of the batch" + (p.host() ? ", all in the host's memory"
                    : c.train().parallel().equals("auto") ? " (auto: a replica fits one GPU)" : "");
            case "layers" -> "parallel: layers — the decoder's layers over the " + unit + " " + java.util.Arrays.toString(p.layersPerDevice())
                    + (c.train().pipeline() ? ", micro-batches flowing through them as a pipeline" : ", one computing at a time (train.pipeline: false)")
                    + (p.host() ? ", all in the host's memory" : c.train().parallel().equals("auto") ? " (auto: a replica does not fit one GPU)" : "");
            default -> p.host() ? "one CPU device" : "one GPU";
        });
        if (p.parallel().equals("layers")) {
            pipelineLines(c, p).forEach(System.out::println);
        }
        long seq = MemoryPlan.sequence(c);
        int eager = klrl.model.Attention.AUTO_MIN_TOKENS - 1;
        System.out.println(klrl.model.Attention.describe(c.model().attention(), seq) + (c.model().attention().equals("auto") && seq > eager
                ? "; the activations are sized for the larger of that pass and an eager one of " + eager + " positions" : ""));
        System.out.println(!p.host() ? "per GPU (the fullest):" : p.replicas() > 1 ? "per replica (" + p.replicas() + " in the host's memory):"
                : "host memory:");
        p.partsGb().forEach((k, v) -> System.out.printf("  %-12s %8.2f GB%s%n", k, v,
                MemoryPlan.UPDATE.contains(k) ? "  (update)" : MemoryPlan.ROLLOUT.contains(k) ? "  (rollout)" : ""));
        System.out.printf("  %-12s %,8d sequences decoded at once%s%n", "rollout chunk", p.rolloutChunk(),
                p.host() ? (c.rollout().kvCacheGb() > 0 ? " (rollout.kv_cache_gb caps it)" : " (all: on CPU the rollout is not chunked"
                        + " unless rollout.kv_cache_gb caps it)") : " (as many as fit in 90% of the GPU beside the held parts and the prefill)");
        System.out.printf("  %-12s %8.2f GB  → %s%n", "total", p.totalGb(),
                p.fits() ? "fits" : p.host() ? "does NOT fit (90% of the host's memory)" : "does NOT fit (90% of memory)");
        System.out.println("    = " + p.formula());
        System.out.println("    = " + p.formula(k -> String.format(java.util.Locale.ROOT, "%.2f", p.partsGb().get(k))));
        // the parts listed above add up to more than the total: say why
        System.out.println("    (update and rollout are not held at once: memory is freed between them, so the larger counts)");
    }

    /**
     * Layer placement's pipeline: the expected busy fraction for the config's micro-batches per
     * mini-batch and the count that reaches 0.9; where local generation stands.
     */
    static List<String> pipelineLines(TrainConfig c, MemoryPlan.Plan p) {
        List<String> out = new java.util.ArrayList<>();
        int stages = p.layersPerDevice().length, m = p.microBatches(), enough = MemoryPlan.microBatchesFor(stages, 0.9);
        if (c.train().pipeline()) {
            boolean budget = c.train().maxTokensPerMicroBatch() > 0;
            String how = budget ? "up to " + m : String.valueOf(m); // with a token budget rows shorter than the longest pack more
            out.add(String.format(java.util.Locale.ROOT, "pipeline: %d stages, %s micro-batches per mini-batch → expected busy %s%.2f"
                    + " in the update (M / (M + S − 1); the reference pass cuts the whole step's rows, so more)", stages, how,
                    budget ? "up to " : "", p.pipelineBusy()));
            if (c.kl().parsedEstimator().needsFullLogits()) {
                // the update's loss runs the reference's forward for the exact KL, in the head's thread: the last stage's
                out.add("  kl.estimator: full: the last stage also runs the reference's forward over each micro-batch inside the"
                        + " update (the exact KL needs the reference's logits), so it is busier than the others and this estimate"
                        + " is optimistic");
            }
            if (p.pipelineBusy() < 0.9 || budget) {
                long rows = (long) c.train().miniBatchSize() * c.rollout().n();
                long seq = MemoryPlan.sequence(c);
                out.add("  0.9 takes " + enough + " micro-batches per mini-batch" + (rows < enough
                        ? ": more rows per mini-batch (train.mini_batch_size × rollout.n = " + rows + ")"
                        : budget ? ": train.max_tokens_per_micro_batch ≤ " + rows / enough * seq + " when every row is as long as "
                                + seq + " tokens (" + rows + " rows per mini-batch; shorter rows pack more: check pipeline_busy)"
                        : ": train.micro_batch_size ≤ " + rows / enough + " (" + rows + " rows per mini-batch)"));
            }
            if (c.train().checkpointLayers() == 0) {
                out.add(inFlightLine(p));
            }
        }
        if (c.rollout().engine().equals("local")) {
            out.add("generation: local decoding over placed layers runs one device at a time; for full fine-tuning generate"
                    + " with SGLang or vLLM servers (rollout.engine: sglang | vllm, src/site/markdown/rollout-servers.md)");
        }
        return out;
    }

    /** Without activation checkpointing a pipeline's stage keeps the whole graphs of its micro-batches in flight: say how many. */
    static String inFlightLine(MemoryPlan.Plan p) {
        return "activations: " + (p.host() ? "stage 0" : "the fullest GPU") + " holds " + p.inFlight() + " micro-batch"
                + (p.inFlight() == 1 ? "'s" : "es'") + " whole activations (every layer's, not only its input: stage s keeps"
                + " min(S − s, M) micro-batches in flight) because activation checkpointing is off (train.checkpoint_layers: 0);"
                + " train.checkpoint_layers: 1 keeps only each layer's input and recomputes the layer in the backward, which lowers it";
    }

    /** CPU "devices" of model.device (cpu, or cpu,cpu,… for several replicas in the host's memory); 0 when it names GPUs. */
    static int cpuDevices(TrainConfig c) {
        String[] d = c.model().device().split(",");
        return java.util.Arrays.stream(d).allMatch(s -> s.strip().equals("cpu")) ? d.length : 0;
    }

    /** --gpu-memory-gb, else the memory this machine has available now (what the trainer's start-up check compares with). */
    private double hostMemoryGb() {
        if (gpuMemoryGb != null) {
            return gpuMemoryGb;
        }
        long available = MemoryPlan.hostAvailableBytes();
        if (available <= 0) {
            throw new UserError("plan: this machine's available memory cannot be read (no /proc/meminfo); pass the host's memory"
                    + " in GB with --gpu-memory-gb");
        }
        return available / MemoryPlan.GB;
    }

    /** Shapes this command knows without any model on disk: a folder name ending as a key → a bundled config.json. */
    static final Map<String, String> KNOWN = Map.of("qwen2.5-7b", "models/qwen2.5-7b/config.json",
            "qwen2.5-7b-instruct", "models/qwen2.5-7b/config.json", "llama-3.1-8b", "models/llama3.1-8b/config.json",
            "llama-3.1-8b-instruct", "models/llama3.1-8b/config.json");

    /**
     * The model's shape: --model-config; else model.path/config.json when it is on disk; else, for a
     * model folder named as a shipped preset's (Qwen2.5-7B, Llama-3.1-8B), the bundled config.json; for
     * the built-in tiny model, its own.
     */
    static ModelConfig modelShape(TrainConfig c, Path modelConfig) {
        if (modelConfig != null) {
            return ModelConfig.parse(Json.read(modelConfig), modelConfig.toString());
        }
        if (c.model().path() == null) {
            return klrl.run.TinyDefault.shape();
        }
        Path mc = Path.of(c.model().path()).resolve("config.json");
        if (java.nio.file.Files.isRegularFile(mc)) {
            return ModelConfig.parse(Json.read(mc), mc.toString());
        }
        Path name = Path.of(c.model().path()).getFileName();
        String key = name == null ? "" : name.toString().toLowerCase(java.util.Locale.ROOT).replaceFirst("^meta-", "");
        String resource = KNOWN.get(key);
        if (resource == null) {
            throw new UserError("plan: " + mc + " not found, and " + c.model().path() + " is not a model whose shape is known"
                    + " (" + String.join(", ", new java.util.TreeSet<>(KNOWN.keySet())) + "); pass --model-config path/to/config.json");
        }
        try (var in = PlanCommand.class.getClassLoader().getResourceAsStream(resource)) {
            System.err.println("plan: " + mc + " is not on disk; using the published shape of " + name);
            return ModelConfig.parse(Json.MAPPER.readTree(in), resource);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }
}
