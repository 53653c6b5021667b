package klrl.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The recipe presets' tiny-CPU versions train: three steps of each (smaller batches), resumed from a
 * checkpoint for the third, with DAPO's dynamic sampling leaving no group without signal.
 */
@Tag("e2e")
class RecipeRunTest {
    @TempDir Path tmp;

    @BeforeAll
    static void model() throws Exception {
        TrainerTest.model();
    }

    static TrainConfig preset(String name, Path out, int steps) {
        return preset(name, out, steps, Map.of());
    }

    static TrainConfig preset(String name, Path out, int steps, Map<String, Object> extra) {
        Map<String, Object> o = new HashMap<>(Map.of("output_dir", out.toString(), "model.path", TrainerTest.base.toString(),
                "train.max_steps", steps, "train.batch_size", 4, "train.mini_batch_size", 2, "rollout.n", 8, "eval.every", 0,
                "eval.before_start", false, "checkpoint.every", 2));
        o.put("eval.max_examples", 16);
        o.put("optim.schedule", "constant");
        if (name.startsWith("dapo")) {
            o.put("algorithm.filter_groups.max_gen_batches", 16);
        }
        o.putAll(extra);
        return ConfigLoader.load(name, o);
    }

    @ParameterizedTest
    @ValueSource(strings = {"dapo-tiny-cpu", "gspo-tiny-cpu"})
    void presetTrainsAndResumes(String name) throws Exception {
        Path run = tmp.resolve(name), whole = tmp.resolve(name + "-whole");
        TrainerTest.train(preset(name, run, 2), null);
        TrainerTest.train(preset(name, run, 3), run.resolve("checkpoints/step-000002"));
        TrainerTest.train(preset(name, whole, 3), null);
        List<JsonNode> steps = TrainerTest.stepLines(run), want = TrainerTest.stepLines(whole);
        assertEquals(3, steps.size());
        for (int i = 0; i < 3; i++) { // resumed = uninterrupted (dynamic sampling's extra prompts and seeds included)
            assertEquals(TrainerTest.comparable(want.get(i)), TrainerTest.comparable(steps.get(i)), name + " step " + (i + 1));
        }
        for (JsonNode s : steps) {
            assertTrue(Double.isFinite(s.get("loss_total").asDouble()) && Double.isFinite(s.get("grad_norm").asDouble()), s.toString());
            assertEquals(0, s.get("skipped_updates").asInt(), s.toString());
            if (name.startsWith("dapo")) {
                assertEquals(0.0, s.get("zero_variance_groups").asDouble(), s.toString()); // dynamic sampling
                assertTrue(s.get("gen_batches").asInt() >= 1 && s.has("filtered_groups") && s.has("overlong_penalty"), s.toString());
            } else {
                assertTrue(s.get("clip_fraction").asDouble() >= 0 && s.has("loss_kl"), s.toString());
                // GSPO's old log-probs are the trainer's own forward (the sampler's rounding would clip whole sequences)
                assertTrue(s.has("rollout_logprob_diff_mean"), s.toString());
            }
        }
    }

    /** Dynamic sampling where the rollout runs elsewhere: data-parallel replicas, and a rollout server (the stand-in). */
    @ParameterizedTest
    @ValueSource(strings = {"data", "sglang"})
    void dynamicSamplingWithReplicasAndServers(String where) throws Exception {
        Path run = tmp.resolve(where), local = tmp.resolve(where + "-local");
        Map<String, Object> extra = new HashMap<>();
        klrl.rollout.remote.StandInServer server = null;
        try {
            if (where.equals("data")) {
                extra.put("model.device", "cpu,cpu");
                extra.put("train.parallel", "data");
            } else {
                server = new klrl.rollout.remote.StandInServer(klrl.rollout.remote.StandInServer.Kind.SGLANG, TrainerTest.base);
                extra.put("rollout.engine", "sglang");
                extra.put("rollout.urls", List.of(server.url()));
                extra.put("rollout.weights_dir", tmp.resolve("weights").toString());
            }
            TrainerTest.train(preset("dapo-tiny-cpu", run, 2, extra), null);
            TrainerTest.train(preset("dapo-tiny-cpu", local, 2), null);
        } finally {
            if (server != null) {
                server.close();
            }
        }
        List<JsonNode> got = TrainerTest.stepLines(run), want = TrainerTest.stepLines(local);
        for (int i = 0; i < 2; i++) {
            assertEquals(0.0, got.get(i).get("zero_variance_groups").asDouble(), got.get(i).toString());
            // the same prompts and samples as on one device (the extra generation batches included)
            for (String k : new String[] {"gen_batches", "filtered_groups", "reward_mean", "response_length"}) {
                assertEquals(want.get(i).get(k).asDouble(), got.get(i).get(k).asDouble(), 1e-12, where + " step " + (i + 1) + " " + k);
            }
        }
    }
}
