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
 * what the fullest GPU holds when decoder layers are placed over {@code --gpus} devices exactly as
 * the trainer places them ({@link klrl.model.Placement#balanced}); the estimate is {@link MemoryPlan}'s.
 */
@Command(name = "plan", mixinStandardHelpOptions = true,
        description = "Parameter count and per-GPU memory (weights, reference, gradients, optimizer, activations, KV cache).")
public final class PlanCommand implements Callable<Integer> {
    @Option(names = "--config", description = "training YAML or preset (default: tiny-cpu)") String config;
    @Option(names = "--model-config", description = "the model's config.json (default: model.path/config.json)") Path modelConfig;
    @Option(names = "--gpus", defaultValue = "1", description = "GPUs the decoder layers are placed across") int gpus;
    @Option(names = "--gpu-memory-gb", defaultValue = "80") double gpuMemoryGb;
    @Option(names = "--json") boolean json;

    @Override
    public Integer call() {
        TrainConfig c = ConfigLoader.load(config, Map.of());
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
            System.out.printf("parameters %,d (trainable %,d), %d GPU(s) of %.0f GB, layers per GPU %s%n", p.parameters(),
                    p.trainable(), gpus, gpuMemoryGb, java.util.Arrays.toString(p.layersPerGpu()));
            System.out.println("per GPU (the fullest):");
            p.perGpuGb().forEach((k, v) -> System.out.printf(k.startsWith("rollout") ? "  %-12s %8.0f%n" : "  %-12s %8.2f GB%n", k, v));
            System.out.printf("  %-12s %8.2f GB  → %s%n", "total", p.totalGb(), p.fits() ? "fits" : "does NOT fit (90% of memory)");
        }
        return 0;
    }
}
