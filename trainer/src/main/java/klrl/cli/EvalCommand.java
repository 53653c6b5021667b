package klrl.cli;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import klrl.config.ConfigLoader;
import klrl.data.Dataset;
import klrl.train.Trainer;
import klrl.util.Json;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "eval", mixinStandardHelpOptions = true,
        description = "Greedy accuracy and mean@k of a model on a JSONL set (prints JSON).")
public final class EvalCommand implements Callable<Integer> {
    @Option(names = "--model", required = true) String model;
    @Option(names = "--data", defaultValue = Dataset.BUNDLED_TEST) String data;
    @Option(names = "--config", description = "YAML or preset for prompt/rollout settings (default: tiny-cpu)") String config;
    @Option(names = "--k", defaultValue = "0", description = "samples per prompt for mean@k (0 = greedy only)") int k;
    @Option(names = "--max-examples", defaultValue = "100000") int maxExamples;
    @Option(names = "--device") String device;

    @Override
    public Integer call() throws Exception {
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("model.path", model);
        o.put("model.device", device);
        o.put("data.eval", data);
        o.put("eval.k", k);
        o.put("eval.max_examples", maxExamples);
        java.nio.file.Path scratch = java.nio.file.Files.createTempDirectory("klrl-eval");
        o.put("output_dir", scratch.toString());
        try (Trainer t = new Trainer(ConfigLoader.load(config, o), null, System.err::println)) {
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("data", data);
            var examples = Dataset.load(data, null, null);
            r.putAll(t.evaluate(examples.subList(0, Math.min(maxExamples, examples.size())), 0));
            System.out.println(Json.write(r));
        } finally {
            klrl.checkpoint.Checkpoints.deleteTree(scratch);
        }
        return 0;
    }
}
