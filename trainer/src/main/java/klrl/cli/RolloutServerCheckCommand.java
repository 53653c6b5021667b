package klrl.cli;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import klrl.config.TrainConfig;
import klrl.data.Dataset;
import klrl.data.Example;
import klrl.data.Prompts;
import klrl.model.Decoder;
import klrl.model.Tokenizer;
import klrl.rollout.RolloutEngine;
import klrl.rollout.SamplingParams;
import klrl.rollout.remote.Dialect;
import klrl.rollout.remote.ServerPool;
import klrl.train.PolicyForward;
import klrl.train.SequenceBatch;
import klrl.util.Json;
import klrl.util.Runtime;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * Checks a live SGLang or vLLM server before a run uses it: that it answers, that it loads weights
 * from a folder and reports the version it was given, that its answers have the schema the trainer
 * reads, and how far its log-probs are from the trainer's own for the tokens it sampled.
 */
@Command(name = "rollout-server-check", mixinStandardHelpOptions = true,
        description = "Check an SGLang/vLLM server for rollouts: health, a weight-load round trip, the response schema,"
                + " and its log-probs against this trainer's for a few prompts.")
public final class RolloutServerCheckCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "URL", description = "the server's base URL, e.g. http://localhost:30000") String url;
    @Option(names = "--engine", required = true, description = "sglang or vllm") String engine;
    @Option(names = "--model", required = true, description = "the model folder the server serves, as this machine sees it")
    Path model;
    @Option(names = "--served-path", description = "that folder's path as the server sees it (default: --model)") String servedPath;
    @Option(names = "--prompts", defaultValue = "4", description = "prompts of the bundled test set to sample (default: ${DEFAULT-VALUE})")
    int prompts;
    @Option(names = "--max-new-tokens", defaultValue = "32") int maxNewTokens;
    @Option(names = "--device", defaultValue = "cpu", description = "where this trainer recomputes the log-probs") String device;
    @Option(names = "--dtype", defaultValue = "float32") String dtype;
    @Option(names = "--tolerance", defaultValue = "0.05",
            description = "largest mean |Δ log-prob| per token that passes (default: ${DEFAULT-VALUE})") double tolerance;
    @Option(names = "--json") boolean json;

    @Override
    public Integer call() throws Exception {
        if (!engine.equals("sglang") && !engine.equals("vllm")) {
            throw new klrl.util.UserError("--engine must be sglang or vllm, got '" + engine + "'");
        }
        ObjectNode out = Json.MAPPER.createObjectNode();
        out.put("url", url);
        out.put("engine", engine);
        Map<String, Boolean> checks = new LinkedHashMap<>();
        ServerPool pool = new ServerPool(List.of(url), Duration.ofSeconds(600), 2, 8, Duration.ofMillis(500));
        try {
            run(pool, out, checks);
        } catch (klrl.util.UserError | Dialect.Refused e) {
            out.put("error", e.getMessage());
            checks.putIfAbsent("completed", false);
        }
        var c = out.putObject("checks");
        checks.forEach(c::put);
        boolean ok = !checks.isEmpty() && checks.values().stream().allMatch(b -> b);
        out.put("passed", ok);
        System.out.println(json ? Json.write(out) : out.toPrettyString());
        if (!json) {
            System.out.println(ok ? "rollout-server-check passed" : "rollout-server-check FAILED: " + checks);
        }
        return ok ? 0 : 1;
    }

    private void run(ServerPool pool, ObjectNode out, Map<String, Boolean> checks) throws Exception {
        // 1. It answers; vLLM also says which model it serves (requests name it).
        pool.request(new Dialect.Call("/health", null), a -> a);
        checks.put("health", true);
        String served = null;
        if (engine.equals("vllm")) {
            served = pool.request(new Dialect.Call("/v1/models", null), a -> a.body().path("data").path(0).path("id").asText(""));
            out.put("served_model", served);
        }
        Dialect dialect = Dialect.of(engine, served);
        // 2. A weight-load round trip: the model folder itself, tagged, and the version read back.
        Dialect.Weights w = new Dialect.Weights(0, Path.of(servedPath != null ? servedPath : model.toString()), false);
        pool.onEveryServer(dialect.load(w, null), a -> {
            String v = dialect.servedVersion(a.body());
            out.put("weight_version", v); // as the server reports it
            return w.tag().equals(v) ? null : "serves weight version " + v + " after loading " + w.tag();
        }, dialect.versionQueries());
        checks.put("weight_load", true);
        out.put("version_endpoint", pool.versionEndpoints().get(0));
        // 3. Samples of a few prompts, read as the trainer reads them (schema, lengths, version).
        Prompts fmt;
        List<long[]> ids = new ArrayList<>();
        List<Long> stop;
        try (Tokenizer tok = Tokenizer.load(model)) {
            fmt = new Prompts(tok, TrainConfig.defaults().data().promptFormat());
            List<Example> exs = Dataset.load(Dataset.BUNDLED_TEST, null, null);
            for (Example e : exs.subList(0, Math.min(prompts, exs.size()))) {
                ids.add(fmt.ids(e));
            }
            stop = tok.eosIds();
        }
        SamplingParams p = new SamplingParams(maxNewTokens, 1.0, 1.0, 0, 1, List.of(), 17);
        List<Dialect.ServerSample> samples = new ArrayList<>();
        for (int i = 0; i < ids.size(); i++) {
            long[] prompt = ids.get(i);
            samples.add(pool.request(dialect.generate(prompt, p, RolloutEngine.streamSeed(p.seed(), i), stop, w),
                    a -> dialect.parse(a.body(), w, stop, maxNewTokens)));
        }
        checks.put("schema", true);
        // 4. Its log-probs against this trainer's forward over the same tokens.
        double sum = 0, max = 0;
        long n = 0;
        try (NDManager root = NDManager.newBaseManager(Runtime.device(device), "PyTorch");
             Decoder m = Decoder.load(model, root, Runtime.dtype(dtype))) {
            Runtime.noGradOutsideCollectors();
            SequenceBatch b = SequenceBatch.of(ids, samples.stream().map(Dialect.ServerSample::tokens).toList(), 0);
            float[] mine;
            try (NDManager mm = root.newSubManager()) {
                mine = PolicyForward.run(m, b, mm, 1f, null, false).logp().toFloatArray();
            }
            for (int i = 0; i < samples.size(); i++) {
                float[] theirs = samples.get(i).logprobs();
                for (int t = 0; t < theirs.length; t++) {
                    double d = Math.abs(theirs[t] - mine[i * b.r() + t]);
                    sum += d;
                    max = Math.max(max, d);
                    n++;
                }
            }
        }
        out.put("tokens_compared", n);
        out.put("logprob_diff_mean", sum / Math.max(1, n));
        out.put("logprob_diff_max", max);
        checks.put("logprobs_match", n > 0 && sum / n <= tolerance);
    }
}
