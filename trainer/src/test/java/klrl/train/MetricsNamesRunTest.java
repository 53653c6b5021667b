package klrl.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
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
import klrl.metrics.TensorBoardLog;
import klrl.metrics.tensorboard.Event;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** metrics.names through a real run on the tiny model: the trainer's event file carries verl's names beside klrl's. */
@Tag("e2e")
class MetricsNamesRunTest {
    @TempDir Path tmp;

    @BeforeAll
    static void model() throws Exception {
        TrainerTest.model();
    }

    /** The run's event file: every summary as (step, tag → value), in order. */
    static List<Map.Entry<Long, Map<String, Float>>> summaries(Path run) throws Exception {
        Path ev;
        try (var files = Files.list(run)) {
            ev = files.filter(p -> p.getFileName().toString().startsWith(TensorBoardLog.PREFIX)).findFirst().orElseThrow();
        }
        List<Map.Entry<Long, Map<String, Float>>> out = new ArrayList<>();
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(ev)).order(ByteOrder.LITTLE_ENDIAN);
        while (b.hasRemaining()) {
            long len = b.getLong();
            b.getInt();
            byte[] data = new byte[(int) len];
            b.get(data);
            b.getInt();
            Event e = Event.parseFrom(data);
            if (e.hasSummary()) {
                Map<String, Float> m = new LinkedHashMap<>();
                e.getSummary().getValueList().forEach(v -> m.put(v.getTag(), v.getSimpleValue()));
                out.add(Map.entry(e.getStep(), m));
            }
        }
        return out;
    }

    @Test
    void verlNamesReachTheRunsEventFile() throws Exception {
        Path run = tmp.resolve("verl");
        TrainerTest.train(TrainerTest.small(run, Map.of("train.max_steps", 1, "eval.before_start", true, "metrics.names", "verl")), null);
        JsonNode line = TrainerTest.stepLines(run).get(0);
        assertFalse(line.has("actor/grad_norm") || line.has("critic/score/mean"), line.toString()); // metrics.jsonl: klrl's names
        Map<String, Float> step = summaries(run).stream().filter(s -> s.getKey() == 1 && s.getValue().containsKey("reward_mean"))
                .findFirst().orElseThrow().getValue();
        assertEquals((float) line.get("grad_norm").asDouble(), step.get("actor/grad_norm"));
        assertEquals(step.get("grad_norm"), step.get("actor/grad_norm"));
        assertEquals(step.get("reward_mean"), step.get("critic/score/mean"));
        assertEquals(step.get("response_length"), step.get("response_length/mean"));
        assertEquals(step.get("clip_fraction"), step.get("actor/pg_clipfrac"));
        assertEquals(step.get("time_step"), step.get("timing_s/step"));
        assertTrue(step.containsKey("kl_forward") && !step.containsKey("train/reward"), step.keySet().toString());
        // both evaluations (before the first step and after the last) under verl's validation names too
        List<Map<String, Float>> evals = summaries(run).stream().map(Map.Entry::getValue)
                .filter(s -> s.containsKey("eval_accuracy/arith-test")).toList();
        assertEquals(2, evals.size());
        for (Map<String, Float> e : evals) {
            assertEquals(e.get("eval_accuracy/arith-test"), e.get("val-core/arith-test/acc/mean@1"));
            assertEquals(e.get("eval_mean_at_k/arith-test"), e.get("val-core/arith-test/acc/mean@2")); // eval.k 2
        }
    }
}
