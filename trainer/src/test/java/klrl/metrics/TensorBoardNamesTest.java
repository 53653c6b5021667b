package klrl.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import klrl.metrics.tensorboard.Event;
import klrl.util.Json;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The event file MetricsLog writes beside metrics.jsonl, read back record by record: eval lines' pass@k,
 * maj@k and per-source scalars, and metrics.names' peer names beside klrl's own.
 */
class TensorBoardNamesTest {
    @TempDir Path tmp;

    /** A training line as the trainer writes it (a subset of its keys, each value distinct). */
    static Map<String, Object> stepLine() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("step", 3L);
        m.put("kl_k1", 0.0625);
        m.put("kl_k3", 0.03125);
        m.put("kl_forward", 0.046875);
        m.put("kl_coef", 0.001);
        m.put("lr", 3.0e-4);
        m.put("reward_mean", 0.5);
        m.put("accuracy", 0.4375);
        m.put("response_length", 7.5);
        m.put("reward_std", 0.25);
        m.put("response_length_min", 2);
        m.put("response_length_max", 12);
        m.put("truncated_fraction", 0.125);
        m.put("zero_variance_groups", 0.75);
        m.put("loss_policy", -0.1875);
        m.put("loss_total", -0.15625);
        m.put("entropy", 1.5);
        m.put("grad_norm", 2.25);
        m.put("clip_fraction", 0.0078125);
        m.put("ppo_kl", -0.001953125);
        m.put("time_rollout", 1.25);
        m.put("time_reward", 0.375);
        m.put("time_reference", 0.625);
        m.put("time_update", 1.75);
        m.put("time_step", 4.5);
        m.put("tokens_per_s", 812.5);
        m.put("live_arrays", 40L);
        return m;
    }

    /** An eval line with the fields an evaluation with eval.k 4 writes: pass@k keyed by Integer at the top, by String per source. */
    static Map<String, Object> evalLine() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("step", 3L);
        m.put("eval_set", "test");
        m.put("eval_accuracy", 0.5);
        m.put("eval_mean_at_k", 0.375);
        m.put("eval_k", 4);
        m.put("eval_examples", 16);
        m.put("eval_pass_at", new TreeMap<>(Map.of(1, 0.375, 2, 0.5, 3, 0.5625, 4, 0.625)));
        m.put("eval_maj_at_k", 0.4375);
        m.put("eval_se", Map.of("eval_accuracy", 0.125, "eval_mean_at_k", 0.0625, "eval_maj_at_k", 0.09375,
                "eval_pass_at", Map.of("1", 0.0625, "2", 0.078125, "3", 0.08, "4", 0.085)));
        Map<String, Object> bySource = new LinkedHashMap<>();
        bySource.put("data_source=math_dapo", Map.of("eval_accuracy", 0.25, "eval_mean_at_k", 0.3125, "eval_maj_at_k", 0.34375,
                "eval_examples", 8, "eval_pass_at", Map.of("1", 0.3125, "2", 0.40625, "3", 0.46875, "4", 0.53125)));
        bySource.put("level=Level 5", Map.of("eval_accuracy", 0.125, "eval_mean_at_k", 0.1875, "eval_maj_at_k", 0.21875,
                "eval_examples", 4, "eval_pass_at", Map.of(1, 0.1875, 2, 0.28125, 3, 0.3359375, 4, 0.40625)));
        m.put("eval_by_source", bySource);
        return m;
    }

    /** Writes both lines through MetricsLog into a folder of their own and returns the event file's summaries in order. */
    List<Map<String, Float>> written(String folder, PeerNames names) throws Exception {
        Path dir = Files.createDirectories(tmp.resolve(folder));
        try (MetricsLog log = new MetricsLog(dir.resolve("metrics.jsonl"), -1, names)) {
            log.write(stepLine());
            log.write(evalLine());
        }
        // metrics.jsonl keeps klrl's names, the nested values as JSON objects, whatever metrics.names says
        List<String> lines = Files.readAllLines(dir.resolve("metrics.jsonl"));
        assertEquals(2, lines.size());
        JsonNode step = Json.MAPPER.readTree(lines.get(0)), eval = Json.MAPPER.readTree(lines.get(1));
        List<String> stepKeys = new ArrayList<>();
        step.fieldNames().forEachRemaining(stepKeys::add);
        assertEquals(List.copyOf(stepLine().keySet()), stepKeys);
        assertEquals(0.625, eval.path("eval_pass_at").path("4").asDouble());
        assertEquals(0.40625, eval.path("eval_by_source").path("level=Level 5").path("eval_pass_at").path("4").asDouble());
        return events(dir);
    }

    /** Every summary in the folder's one event file, each as tag → value, checking the TFRecord framing on the way. */
    static List<Map<String, Float>> events(Path dir) throws Exception {
        Path ev;
        try (var files = Files.list(dir)) {
            List<Path> all = files.filter(p -> p.getFileName().toString().startsWith(TensorBoardLog.PREFIX)).toList();
            assertEquals(1, all.size(), all.toString());
            ev = all.get(0);
        }
        List<Map<String, Float>> out = new ArrayList<>();
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(ev)).order(ByteOrder.LITTLE_ENDIAN);
        while (b.hasRemaining()) {
            byte[] len = new byte[8];
            b.get(len);
            assertEquals(TensorBoardLog.maskedCrc(len, 8), b.getInt());
            byte[] data = new byte[(int) ByteBuffer.wrap(len).order(ByteOrder.LITTLE_ENDIAN).getLong()];
            b.get(data);
            assertEquals(TensorBoardLog.maskedCrc(data, data.length), b.getInt());
            Event e = Event.parseFrom(data);
            if (e.hasSummary()) {
                assertEquals(3, e.getStep());
                Map<String, Float> m = new LinkedHashMap<>();
                e.getSummary().getValueList().forEach(v -> assertNull(m.put(v.getTag(), v.getSimpleValue()), v.getTag()));
                out.add(m);
            }
        }
        assertEquals(2, out.size());
        return out;
    }

    @Test
    void evalLinesGetPassAtKMajAtKAndEverySourcesScalars() throws Exception {
        List<Map<String, Float>> ev = written("klrl", PeerNames.of("klrl"));
        Map<String, Float> step = ev.get(0), eval = ev.get(1);
        // a training line: its numbers under their own names and nothing else
        Set<String> numeric = new java.util.HashSet<>(stepLine().keySet());
        numeric.remove("step");
        assertEquals(numeric, step.keySet());
        assertEquals(0.5f, step.get("reward_mean"));
        // an eval line: its numbers under NAME/SET as before
        assertEquals(0.5f, eval.get("eval_accuracy/test"));
        assertEquals(0.375f, eval.get("eval_mean_at_k/test"));
        assertEquals(0.4375f, eval.get("eval_maj_at_k/test"));
        // pass@k for k = 1..eval_k, maj@N with N = eval_k
        assertEquals(0.375f, eval.get("pass@1/test"));
        assertEquals(0.5f, eval.get("pass@2/test"));
        assertEquals(0.5625f, eval.get("pass@3/test"));
        assertEquals(0.625f, eval.get("pass@4/test"));
        assertEquals(0.4375f, eval.get("maj@4/test"));
        // per source: accuracy, mean@k, pass@k, maj@N under SET/LABEL (String keys and Integer keys alike)
        assertEquals(0.25f, eval.get("eval_accuracy/test/data_source=math_dapo"));
        assertEquals(0.3125f, eval.get("eval_mean_at_k/test/data_source=math_dapo"));
        assertEquals(0.40625f, eval.get("pass@2/test/data_source=math_dapo"));
        assertEquals(0.53125f, eval.get("pass@4/test/data_source=math_dapo"));
        assertEquals(0.34375f, eval.get("maj@4/test/data_source=math_dapo"));
        assertEquals(0.125f, eval.get("eval_accuracy/test/level=Level 5"));
        assertEquals(0.1875f, eval.get("eval_mean_at_k/test/level=Level 5"));
        assertEquals(0.3359375f, eval.get("pass@3/test/level=Level 5"));
        assertEquals(0.21875f, eval.get("maj@4/test/level=Level 5"));
        // standard errors and per-source example counts are not scalars; no pass@k beyond eval_k
        assertTrue(eval.keySet().stream().noneMatch(t -> t.contains("eval_se") || t.startsWith("eval_examples/test/")
                || t.startsWith("pass@5") || t.startsWith("pass@0")), eval.keySet().toString());
        assertEquals(Set.of("eval_accuracy/test", "eval_mean_at_k/test", "eval_k/test", "eval_examples/test", "eval_maj_at_k/test",
                "pass@1/test", "pass@2/test", "pass@3/test", "pass@4/test", "maj@4/test"),
                Set.copyOf(eval.keySet().stream().filter(t -> t.chars().filter(c -> c == '/').count() == 1).toList()));
        assertEquals(3 * 4, eval.keySet().stream().filter(t -> t.startsWith("pass@")).count()); // the set and its 2 sources × 4 k
    }

    @Test
    void verlNamesGoBesideKlrlsInTheSameEvent() throws Exception {
        List<Map<String, Float>> ev = written("verl", PeerNames.of("verl"));
        Map<String, Float> step = ev.get(0), eval = ev.get(1);
        // verl's own keys (metric_utils.compute_data_metrics / compute_timing_metrics, dp_actor, core_algos, fsdp_workers)
        Map<String, String> verl = new LinkedHashMap<>();
        verl.put("reward_mean", "critic/score/mean");
        verl.put("response_length", "response_length/mean");
        verl.put("response_length_min", "response_length/min");
        verl.put("response_length_max", "response_length/max");
        verl.put("truncated_fraction", "response_length/clip_ratio");
        verl.put("kl_k1", "actor/reward_kl_penalty");
        verl.put("kl_k3", "actor/kl_loss");
        verl.put("kl_coef", "actor/kl_coef");
        verl.put("entropy", "actor/entropy");
        verl.put("clip_fraction", "actor/pg_clipfrac");
        verl.put("ppo_kl", "actor/ppo_kl");
        verl.put("grad_norm", "actor/grad_norm");
        verl.put("lr", "actor/lr");
        verl.put("loss_policy", "actor/pg_loss");
        verl.put("time_rollout", "timing_s/gen");
        verl.put("time_reward", "timing_s/reward");
        verl.put("time_reference", "timing_s/ref");
        verl.put("time_update", "timing_s/update_actor");
        verl.put("time_step", "timing_s/step");
        verl.put("tokens_per_s", "perf/throughput");
        verl.forEach((k, name) -> {
            assertEquals(step.get(k), step.get(name), name);
            assertTrue(step.containsKey(k), k); // klrl's name stays
        });
        // quantities verl does not log keep klrl's name alone; no TRL names
        Set<String> expected = new java.util.HashSet<>(stepLine().keySet());
        expected.remove("step");
        expected.addAll(verl.values());
        assertEquals(expected, step.keySet());
        // validation: val-core/<data_source>/acc/{mean@1, mean@N, best@N/mean, maj@N/mean}, val-aux for best@2 (N = 4)
        assertEquals(0.5f, eval.get("val-core/test/acc/mean@1"));
        assertEquals(0.375f, eval.get("val-core/test/acc/mean@4"));
        assertEquals(0.625f, eval.get("val-core/test/acc/best@4/mean"));
        assertEquals(0.4375f, eval.get("val-core/test/acc/maj@4/mean"));
        assertEquals(0.5f, eval.get("val-aux/test/acc/best@2/mean"));
        // a data_source breakdown under verl's data_source; other breakdowns are klrl's only
        assertEquals(0.25f, eval.get("val-core/math_dapo/acc/mean@1"));
        assertEquals(0.3125f, eval.get("val-core/math_dapo/acc/mean@4"));
        assertEquals(0.53125f, eval.get("val-core/math_dapo/acc/best@4/mean"));
        assertEquals(0.40625f, eval.get("val-aux/math_dapo/acc/best@2/mean"));
        assertEquals(0.34375f, eval.get("val-core/math_dapo/acc/maj@4/mean"));
        List<String> verlEval = eval.keySet().stream().filter(t -> t.startsWith("val-")).toList();
        assertEquals(10, verlEval.size(), verlEval.toString()); // no best@1, no best@3 (verl bootstraps N = 2, 4, …), no Level 5
        assertTrue(eval.keySet().stream().noneMatch(t -> t.startsWith("eval/") || t.startsWith("train/")), eval.keySet().toString());
        assertEquals(0.625f, eval.get("pass@4/test")); // klrl's own eval tags as without a peer
    }

    @Test
    void trlNamesAreTheTensorBoardTagsOfItsRuns() throws Exception {
        List<Map<String, Float>> ev = written("trl", PeerNames.of("trl"));
        Map<String, Float> step = ev.get(0), eval = ev.get(1);
        // GRPOTrainer's _metrics keys and Trainer's own, as transformers' TensorBoardCallback writes them
        Map<String, String> trl = new LinkedHashMap<>();
        trl.put("reward_mean", "train/reward");
        trl.put("reward_std", "train/reward_std");
        trl.put("zero_variance_groups", "train/frac_reward_zero_std");
        trl.put("response_length", "train/completions/mean_length");
        trl.put("response_length_min", "train/completions/min_length");
        trl.put("response_length_max", "train/completions/max_length");
        trl.put("truncated_fraction", "train/completions/clipped_ratio");
        trl.put("kl_k3", "train/kl");
        trl.put("entropy", "train/entropy");
        trl.put("clip_fraction", "train/clip_ratio/region_mean");
        trl.put("grad_norm", "train/grad_norm");
        trl.put("lr", "train/learning_rate");
        trl.put("loss_total", "train/loss");
        trl.put("time_step", "train/step_time");
        trl.forEach((k, name) -> assertEquals(step.get(k), step.get(name), name));
        Set<String> expected = new java.util.HashSet<>(stepLine().keySet());
        expected.remove("step");
        expected.addAll(trl.values());
        assertEquals(expected, step.keySet());
        // TRL's evaluation: the mean reward over sampled completions, eval_reward → eval/reward
        assertEquals(0.375f, eval.get("eval/reward"));
        assertFalse(eval.keySet().stream().anyMatch(t -> t.startsWith("val-")), eval.keySet().toString());
    }
}
