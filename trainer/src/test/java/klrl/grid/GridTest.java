package klrl.grid;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import klrl.run.TinyDefault;
import klrl.util.Json;
import klrl.util.UserError;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The grid command's smoke preset, end to end: real child JVMs, real runs, the summary read back. */
@Tag("e2e")
class GridTest {
    @TempDir Path tmp;

    @Test
    void smokeGridRunsResumesAndSummarises() throws Exception {
        TinyDefault.ensure(s -> { }); // built once here, not by two children at once
        String text = GridSpec.source("paper-on-cpu-smoke");
        GridSpec spec = GridSpec.parse(text, "paper-on-cpu-smoke");
        Path out = tmp.resolve("g");
        List<String> lines = new ArrayList<>();
        assertEquals(0, GridRunner.run(spec, text, out, 2, lines::add));
        assertEquals(4, lines.size(), lines.toString());
        assertTrue(lines.stream().allMatch(l -> l.contains("finished")), lines.toString());
        assertEquals(0, klrl.cli.Main.run("report", "--grid", out.toString())); // the summary, as users call it

        JsonNode sum = Json.read(out.resolve("summary.json"));
        assertEquals(2, sum.get("groups").size());
        for (JsonNode r : sum.get("runs")) {
            // every number in the summary is the run's own: its last in-domain eval line and its config
            Path dir = out.resolve("runs").resolve(r.get("name").asText());
            JsonNode lastId = null;
            for (String l : Files.readAllLines(dir.resolve("metrics.jsonl"))) {
                JsonNode n = Json.MAPPER.readTree(l);
                if ("arith-test".equals(n.path("eval_set").asText())) {
                    lastId = n;
                }
            }
            assertEquals(4, lastId.get("step").asInt());
            assertEquals(lastId.get("eval_accuracy").asDouble(), r.get("id_final").asDouble(), 0.0);
            assertEquals(4, r.get("steps").asInt());
            assertTrue(r.has("grad_var_median"), r.toString()); // train.grad_var is on in the spec
            String cfg = Files.readString(dir.resolve("config.yaml"));
            assertTrue(cfg.contains("coef: 0.1"), cfg);
            assertTrue(cfg.contains(r.get("name").asText().contains("k3") ? "estimator: \"k3\"" : "estimator: \"k1\"")
                    || cfg.contains(r.get("name").asText().contains("k3") ? "estimator: k3" : "estimator: k1"), cfg);
        }
        // seeds differ: the two seeds of a cell sampled differently
        assertNotEquals(firstStep(out.resolve("runs/sync-k1-in-reward-b0.1-s0")), firstStep(out.resolve("runs/sync-k1-in-reward-b0.1-s1")));
        assertTrue(Files.isRegularFile(out.resolve("summary.md")));
        assertTrue(Files.list(out.resolve("figures")).anyMatch(p -> p.toString().endsWith(".png")));

        // resumable: a second call skips finished runs; a run without its status file continues from its checkpoint
        Path s1 = out.resolve("runs/sync-k3-in-loss-b0.1-s1");
        Files.delete(s1.resolve(GridRunner.STATUS));
        List<String> again = new ArrayList<>();
        assertEquals(0, GridRunner.run(spec, text, out, 1, again::add));
        assertEquals(3, again.stream().filter(l -> l.contains("done earlier")).count(), again.toString());
        String log = Files.readString(s1.resolve("train.log"));
        assertEquals(2, log.split("MKL kernels", -1).length - 1, log); // started once more, from its last checkpoint
        assertEquals("finished", Json.read(s1.resolve(GridRunner.STATUS)).get("status").asText());
        assertEquals(1, Files.readAllLines(s1.resolve("metrics.jsonl")).stream().filter(l -> l.contains("\"step\":4,") && l.contains("reward_mean")).count());

        // the spec of a started grid is fixed
        UserError e = org.junit.jupiter.api.Assertions.assertThrows(UserError.class,
                () -> GridRunner.run(spec, text + "# changed\n", out, 1, again::add));
        assertTrue(e.getMessage().contains("another spec"), e.getMessage());
    }

    /** The first training step's line without its timings. */
    private static String firstStep(Path run) throws Exception {
        for (String l : Files.readAllLines(run.resolve("metrics.jsonl"))) {
            if (l.contains("reward_mean")) {
                return l.replaceAll("\"(time_[a-z]+|tokens_per_s|rss_mb)\":[0-9.eE+-]+,?", "");
            }
        }
        throw new AssertionError(run + ": no step line");
    }
}
