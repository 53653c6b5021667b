package klrl.cli;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import klrl.config.ConfigLoader;
import klrl.data.Dataset;
import klrl.train.Evaluator;
import klrl.util.Json;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "eval", mixinStandardHelpOptions = true,
        description = "Greedy accuracy and mean@k of a model on a data set — a JSONL or parquet file, a folder or a glob, fields"
                + " as the config's eval.* / data.* settings say or detected (prints JSON).")
public final class EvalCommand implements Callable<Integer> {
    @Option(names = "--model", required = true) String model;
    @Option(names = "--data", defaultValue = Dataset.BUNDLED_TEST) String data;
    @Option(names = "--config", description = "YAML or preset for prompt/rollout settings (default: the run's config.yaml"
            + " when --model is a checkpoint of a run, else tiny-cpu)") String config;
    @Option(names = "--k", defaultValue = "0", description = "samples per prompt for mean@k (0 = greedy only)") int k;
    @Option(names = "--max-examples", defaultValue = "100000") int maxExamples;
    @Option(names = "--device") String device;

    @Override
    public Integer call() throws Exception {
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("model.path", model);
        o.put("model.device", device);
        o.put("eval.k", k);
        String cfg = config != null ? config : TrainCommand.runConfig(Path.of(model));
        var tc = ConfigLoader.load(cfg, o);
        var examples = klrl.run.RunData.readEval(tc, data).examples();
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("data", data);
        r.putAll(Evaluator.evaluateModel(tc, Path.of(model), examples, maxExamples, 0));
        System.out.println(Json.write(r));
        return 0;
    }
}
