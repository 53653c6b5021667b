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
        Path mc = modelConfig;
        if (mc == null) {
            if (c.model().path() == null) {
                throw new UserError("plan: the config has no model.path; pass --model-config path/to/config.json");
            }
            mc = Path.of(c.model().path()).resolve("config.json");
        }
        ModelConfig m = ModelConfig.parse(Json.read(mc), mc.toString());
        MemoryPlan.Plan p = MemoryPlan.plan(c, m, gpus, gpuMemoryGb);
        if (json) {
            ObjectNode o = Json.MAPPER.createObjectNode();
            o.put("parameters", p.parameters());
            o.put("trainable_parameters", p.trainable());
            o.put("gpus", gpus);
            o.put("parallel", p.parallel());
            o.put("gpu_memory_gb", gpuMemoryGb);
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
}
