package klrl.cli;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
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
        if (maxExamples < 1) {
            throw new UserError("--max-examples: expected at least 1 prompt, got " + maxExamples);
        }
        if (samplesOut != null) {
            Path dir = samplesOut.toAbsolutePath().getParent();
            if (!Files.isDirectory(dir)) {
                throw new UserError("--samples-out " + samplesOut + ": the folder " + dir + " does not exist");
            }
            if (!Files.isWritable(dir)) {
                throw new UserError("--samples-out " + samplesOut + ": the folder " + dir + " is not writable");
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
            r.putAll(withSamplesFile(samplesOut, sink -> Evaluator.evaluateModel(tc, Path.of(model), examples, maxExamples, 0, sink)));
            r.put("samples_out", samplesOut.toString());
        }
        System.out.println(Json.write(r));
        return 0;
    }

    /** An evaluation that writes each prompt's line to a sink. */
    interface Evaluation {
        Map<String, Object> run(Consumer<Map<String, Object>> sink) throws IOException;
    }

    /**
     * Runs {@code eval} with its lines going to a file beside {@code out}, which becomes {@code out} once every
     * prompt is in: never half a file under the name asked for, and never over a file that appeared meanwhile
     * (a hard link cannot replace one). The partial file goes with the process however it ends, short of a kill -9.
     */
    static Map<String, Object> withSamplesFile(Path out, Evaluation eval) throws IOException {
        Path tmp = out.resolveSibling(out.getFileName() + ".part-" + ProcessHandle.current().pid());
        Writer w;
        try {
            w = Files.newBufferedWriter(tmp, StandardCharsets.UTF_8, StandardOpenOption.CREATE_NEW);
        } catch (IOException e) {
            throw new UserError("--samples-out " + out + ": cannot create " + tmp + " (" + e + ")");
        }
        tmp.toFile().deleteOnExit();
        try {
            Map<String, Object> r;
            try {
                r = eval.run(line -> {
                    try {
                        w.write(Json.write(line));
                        w.write('\n');
                    } catch (IOException e) {
                        throw new UncheckedIOException(e);
                    }
                });
                try {
                    w.close(); // the last lines reach the disk here
                } catch (IOException e) {
                    throw cannotWrite(out, tmp, e);
                }
            } catch (UncheckedIOException e) {
                throw cannotWrite(out, tmp, e.getCause());
            } finally {
                closeQuietly(w);
            }
            try {
                Files.createLink(out, tmp);
            } catch (java.nio.file.FileAlreadyExistsException e) {
                throw appeared(out, tmp);
            } catch (UnsupportedOperationException | IOException e) { // a file system without hard links
                if (Files.exists(out)) {
                    throw appeared(out, tmp);
                }
                Files.move(tmp, out);
            }
            return r;
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    private static UserError cannotWrite(Path out, Path tmp, IOException e) {
        return new UserError("--samples-out " + out + ": cannot write " + tmp + " (" + e + ")");
    }

    private static void closeQuietly(Writer w) {
        try {
            w.close();
        } catch (IOException e) {
            // closed already, or failing after an error that is being reported
        }
    }

    /** A file named {@code out} came while the evaluation ran: it stays, and the samples go under a name of their own. */
    private static UserError appeared(Path out, Path tmp) throws IOException {
        Path kept = out.resolveSibling(out.getFileName() + "." + ProcessHandle.current().pid());
        Files.copy(tmp, kept);
        return new UserError("--samples-out " + out + ": a file of that name appeared during the evaluation; the samples are in " + kept);
    }
}
