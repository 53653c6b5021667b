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
        o.put("output_dir", System.getProperty("java.io.tmpdir") + "/klrl-eval-" + ProcessHandle.current().pid());
        try (Trainer t = new Trainer(ConfigLoader.load(config, o), null, System.err::println)) {
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("data", data);
            r.putAll(t.evaluate(Dataset.load(data, null, null).subList(0,
                    Math.min(maxExamples, Dataset.load(data, null, null).size())), 0));
            System.out.println(Json.write(r));
        }
        return 0;
    }
}
