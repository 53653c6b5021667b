package klrl.grid;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.TreeMap;
import klrl.config.ConfigLoader;
import klrl.util.UserError;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class GridSpecTest {
    @TempDir Path tmp;

    @Test
    void paperGridHasThePreRegisteredRuns() {
        GridSpec g = GridSpec.load("paper-on-cpu");
        List<GridSpec.Run> runs = g.runs();
        assertEquals(42, runs.size());
        assertEquals(33, runs.stream().filter(r -> r.setting().equals("sync")).count());
        assertEquals(9, runs.stream().filter(r -> r.setting().equals("lag10")).count());
        assertEquals(14, runs.stream().map(GridSpec.Run::group).distinct().count());
        // every run's config is valid, and the cell's settings reach it
        for (GridSpec.Run r : runs) {
            var cfg = ConfigLoader.load(g.base(), java.util.Map.of(), r.assignments());
            assertEquals(r.seed(), cfg.train().seed());
            assertTrue(cfg.train().gradVar());
            if (r.beta() != null) {
                assertEquals(r.beta(), cfg.kl().coef(), 0.0);
            }
            if (r.cell().equals("k3-in-loss-unbiased")) {
                assertEquals("loss-unbiased", cfg.kl().placement());
                assertEquals("k3", cfg.kl().estimator());
            }
            if (r.setting().equals("lag10")) {
                assertEquals(10, cfg.algorithm().offPolicyLag());
                assertFalse(cfg.algorithm().normAdvByStd());
            }
        }
    }

    @Test
    void mistakesAreOneLineNamingTheField() throws Exception {
        Path f = tmp.resolve("g.yaml");
        String ok = "seeds: [0]\ncells: {a: {kl.estimator: k1}}\nsettings: {sync: {}}\nruns:\n  - {setting: sync, cells: [a]}\n";
        Files.writeString(f, ok);
        assertEquals(1, GridSpec.load(f.toString()).runs().size());
        String[][] bad = {
            {ok.replace("cells: [a]", "cells: [b]"), "unknown cell 'b'"},
            {ok.replace("setting: sync", "setting: lag"), "unknown setting 'lag'"},
            {ok.replace("seeds: [0]", "seeds: [x]"), "seeds: 'x' is not an integer"},
            {ok + "extra: 1\n", "unknown key 'extra'"},
            {ok.replace("runs:\n  - {setting: sync, cells: [a]}\n", "runs: 3\n"), "runs: expected a list"},
            {ok.replace("{kl.estimator: k1}", "3"), "a: expected a mapping"},
        };
        for (String[] b : bad) {
            Files.writeString(f, b[0]);
            UserError e = assertThrows(UserError.class, () -> GridSpec.load(f.toString()));
            assertTrue(e.getMessage().startsWith(f.toString()) && e.getMessage().contains(b[1]) && !e.getMessage().contains("\n"),
                    e.getMessage());
        }
        assertTrue(assertThrows(UserError.class, () -> GridSpec.load(tmp.resolve("none.yaml").toString())).getMessage()
                .contains("grid spec not found"));
    }

    @Test
    void rewardCrashIsTheMovingMeanFallingBelowHalfItsPeak() {
        TreeMap<Integer, Double> steady = new TreeMap<>(), crash = new TreeMap<>(), low = new TreeMap<>();
        for (int i = 0; i < 100; i++) {
            steady.put(i, 0.3 + 0.001 * i);
            crash.put(i, i < 50 ? 0.4 : 0.1);
            low.put(i, i < 50 ? 0.15 : 0.0); // never reached 0.2: no crash by definition
        }
        assertFalse(GridSummary.rewardCrash(steady));
        assertTrue(GridSummary.rewardCrash(crash));
        assertFalse(GridSummary.rewardCrash(low));
    }
}
