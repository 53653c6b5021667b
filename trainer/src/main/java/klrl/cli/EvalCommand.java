package klrl.cli;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import klrl.config.ConfigLoader;
import klrl.data.Dataset;
import klrl.train.Evaluator;
import klrl.util.Json;
import klrl.util.UserError;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "eval", mixinStandardHelpOptions = true,
        description = "Greedy accuracy, and with --k mean@k, pass@1…k and maj@k (per source too), of a model on a data set — a JSONL or parquet file, a folder or a glob, fields"
                + " as the config's eval.* / data.* settings say or detected (prints JSON).")
public final class EvalCommand implements Callable<Integer> {
    @Option(names = "--model", required = true) String model;
    @Option(names = "--data", defaultValue = Dataset.BUNDLED_TEST) String data;
    @Option(names = "--config", description = "YAML or preset for prompt/rollout settings (default: the run's config.yaml"
            + " when --model is a checkpoint of a run, else tiny-cpu)") String config;
    @Option(names = "--k", defaultValue = "0", description = "samples per prompt for mean@k, pass@1…k and maj@k (0 = greedy only;"
            + " at most 1,024)") int k;
    @Option(names = "--samples-out", paramLabel = "FILE", description = "write one JSON line per prompt: its completions, the answers"
            + " extracted, their classes of equal answers and the verdicts (a new file)") Path samplesOut;
    @Option(names = "--max-examples", defaultValue = "100000") int maxExamples;
    @Option(names = "--device") String device;

    @Override
    public Integer call() throws Exception {
        if (k < 0 || k > klrl.config.TrainConfig.Eval.MAX_EVAL_K) {
            throw new UserError("--k: expected 0 (greedy only) to " + klrl.config.TrainConfig.Eval.MAX_EVAL_K + " samples a prompt, got " + k);
        }
        if (samplesOut != null) {
            Path dir = samplesOut.toAbsolutePath().getParent();
            if (!Files.isDirectory(dir)) {
                throw new UserError("--samples-out " + samplesOut + ": the folder " + dir + " does not exist");
            }
            if (Files.exists(samplesOut)) {
                throw new UserError("--samples-out " + samplesOut + ": the file exists; name a new one");
            }
        }
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("model.path", model);
        o.put("model.device", device);
        o.put("eval.k", k);
        String cfg = config != null ? config : TrainCommand.runConfig(Path.of(model));
        var tc = ConfigLoader.load(cfg, o);
        var examples = klrl.run.RunData.readEval(tc, data).examples();
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("data", data);
        if (samplesOut == null) {
            r.putAll(Evaluator.evaluateModel(tc, Path.of(model), examples, maxExamples, 0));
        } else {
            // written beside the file and moved into place once every prompt is in: never half a file
            Path tmp = samplesOut.resolveSibling(samplesOut.getFileName() + ".part-" + ProcessHandle.current().pid());
            try (Writer w = Files.newBufferedWriter(tmp, StandardCharsets.UTF_8, StandardOpenOption.CREATE_NEW)) {
                r.putAll(Evaluator.evaluateModel(tc, Path.of(model), examples, maxExamples, 0, line -> {
                    try {
                        w.write(Json.write(line));
                        w.write('\n');
                    } catch (IOException e) {
                        throw new UncheckedIOException(e);
                    }
                }));
            } catch (IOException | RuntimeException e) {
                Files.deleteIfExists(tmp);
                throw e;
            }
            Files.move(tmp, samplesOut, StandardCopyOption.ATOMIC_MOVE);
            r.put("samples_out", samplesOut.toString());
        }
        System.out.println(Json.write(r));
        return 0;
    }
}
