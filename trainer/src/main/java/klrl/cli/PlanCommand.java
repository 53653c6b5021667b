package klrl.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import klrl.model.ModelConfig;
import klrl.train.MemoryPlan;
import klrl.util.Json;
import klrl.util.UserError;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Memory plan from config.json and the training config alone (no weights read, nothing allocated):
 * how the trainer would use {@code --gpus} devices (train.parallel: a replica on each, or the decoder
 * layers placed over them exactly as {@link klrl.model.Placement#balanced} does) and what the fullest
 * GPU then holds; the estimate is {@link MemoryPlan}'s.
 */
@Command(name = "plan", mixinStandardHelpOptions = true,
        description = "Parameter count and per-GPU memory (weights, reference, gradients, optimizer, activations, KV cache).")
public final class PlanCommand implements Callable<Integer> {
    @Option(names = "--config", description = "training YAML or preset (default: tiny-cpu)") String config;
    @Option(names = "--model-config", description = "the model's config.json (default: model.path/config.json)") Path modelConfig;
    @Option(names = "--gpus", defaultValue = "1", description = "GPUs of the node (a replica on each, or the layers placed over them)") int gpus;
    @Option(names = "--gpu-memory-gb", defaultValue = "80") double gpuMemoryGb;
    @Option(names = "--set", paramLabel = "KEY=VALUE", description = "any config key, as for train, e.g. --set model.lora.rank=64")
    java.util.List<String> set = new java.util.ArrayList<>();
    @Option(names = "--json") boolean json;

    @Override
    public Integer call() {
        TrainConfig c = ConfigLoader.load(config, Map.of(), set);
        ModelConfig m = modelShape(c, modelConfig);
        MemoryPlan.Plan p = MemoryPlan.plan(c, m, gpus, gpuMemoryGb);
        if (json) {
            ObjectNode o = Json.MAPPER.createObjectNode();
            o.put("parameters", p.parameters());
            o.put("trainable_parameters", p.trainable());
            o.put("gpus", gpus);
            o.put("parallel", p.parallel());
            o.put("gpu_memory_gb", gpuMemoryGb);
            o.put("micro_batch", c.train().maxTokensPerMicroBatch() > 0 ? c.train().maxTokensPerMicroBatch() + " tokens"
                    : c.train().microBatchSize() + " rows");
            var lp = o.putArray("layers_per_gpu");
            for (int layers : p.layersPerGpu()) {
                lp.add(layers);
            }
            ObjectNode g = o.putObject("per_gpu_gb");
            p.perGpuGb().forEach(g::put);
            g.put("total", p.totalGb());
            o.put("fits", p.fits());
            System.out.println(Json.write(o));
        } else {
            System.out.printf("parameters %,d (trainable %,d), %d GPU(s) of %.0f GB%n", p.parameters(), p.trainable(), gpus, gpuMemoryGb);
            System.out.println(switch (p.parallel()) {
                case "data" -> "parallel: data — a replica on each GPU, each rolling out and training on 1/" + gpus + " of the batch"
                        + (c.train().parallel().equals("auto") ? " (auto: a replica fits one GPU)" : "");
                case "layers" -> "parallel: layers — the decoder's layers over the GPUs " + java.util.Arrays.toString(p.layersPerGpu())
                        + ", one computing at a time" + (c.train().parallel().equals("auto") ? " (auto: a replica does not fit one GPU)" : "");
                default -> "one GPU";
            });
            System.out.println("per GPU (the fullest):");
            p.perGpuGb().forEach((k, v) -> System.out.printf(k.startsWith("rollout") ? "  %-12s %8.0f%n" : "  %-12s %8.2f GB%n", k, v));
            System.out.printf("  %-12s %8.2f GB  → %s%n", "total", p.totalGb(), p.fits() ? "fits" : "does NOT fit (90% of memory)");
        }
        return 0;
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
            return klrl.train.TinyDefault.shape();
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
