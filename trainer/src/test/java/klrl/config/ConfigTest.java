package klrl.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import klrl.kl.KlEstimator;
import klrl.kl.KlPlacement;
import klrl.util.UserError;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ConfigTest {
    @TempDir Path tmp;

    @Test
    void everyPresetParsesAndValidates() {
        for (String p : ConfigLoader.PRESETS) {
            TrainConfig c = ConfigLoader.load(p, Map.of());
            assertTrue(c.train().maxSteps() > 0, p);
        }
        // the paper's grid presets set exactly their cell
        TrainConfig k3loss = ConfigLoader.load("grid-k3-loss", Map.of());
        assertEquals(new KlEstimator.K3(), k3loss.kl().parsedEstimator());
        assertEquals(new KlPlacement.Loss(), k3loss.kl().parsedPlacement());
        TrainConfig k1rew = ConfigLoader.load("grid-k1-reward", Map.of());
        assertEquals(new KlEstimator.K1(), k1rew.kl().parsedEstimator());
        assertEquals(new KlPlacement.Reward(), k1rew.kl().parsedPlacement());
    }

    @Test
    void tinyCpuPresetIsTheDefaults() {
        assertEquals(TrainConfig.defaults(), ConfigLoader.load("tiny-cpu", Map.of()));
        assertEquals(TrainConfig.defaults(), ConfigLoader.load(null, Map.of()));
    }

    @Test
    void bigModelPresetsPointAtRealModels() {
        TrainConfig q = ConfigLoader.load("qwen2.5-7b-math", Map.of());
        assertTrue(q.model().path().contains("Qwen2.5-7B"), q.model().path());
        assertEquals("cuda", q.model().device());
        TrainConfig l = ConfigLoader.load("llama3.1-8b-math", Map.of());
        assertTrue(l.model().path().contains("Llama-3.1-8B"), l.model().path());
    }

    @Test
    void unknownKeysAreNamed() throws Exception {
        Path f = tmp.resolve("c.yaml");
        Files.writeString(f, "kl:\n  estimater: k3\n");
        UserError e = assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertTrue(e.getMessage().contains("unknown key 'kl.estimater'") && e.getMessage().contains("estimator"), e.getMessage());
        Files.writeString(f, "klx: 1\n");
        e = assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertTrue(e.getMessage().contains("unknown key 'klx'"), e.getMessage());
    }

    @Test
    void badValuesAreNamed() throws Exception {
        Path f = tmp.resolve("c.yaml");
        Files.writeString(f, "optim:\n  lr: fast\n");
        UserError e = assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertTrue(e.getMessage().contains("optim.lr"), e.getMessage());
        Files.writeString(f, "kl:\n  estimator: k3+\n");
        e = assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertTrue(e.getMessage().contains("'k3+'") && e.getMessage().contains("k1, k2, k3, abs, full"), e.getMessage());
        Files.writeString(f, "rollout:\n  n: 0\n");
        e = assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertTrue(e.getMessage().contains("rollout.n"), e.getMessage());
        Files.writeString(f, "rollout:\n  prefill_gb: 0\n");
        e = assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertTrue(e.getMessage().contains("rollout.prefill_gb"), e.getMessage());
        Files.writeString(f, "[1, 2]\n");
        assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertThrows(UserError.class, () -> ConfigLoader.load("no-such-preset", Map.of()));
    }

    @Test
    void overridesWinOverTheFile() {
        TrainConfig c = ConfigLoader.load("grid-k3-loss", Map.of("kl.estimator", "k1", "kl.placement", "reward", "kl.coef", 0.5));
        assertEquals("k1", c.kl().estimator());
        assertEquals("reward", c.kl().placement());
        assertEquals(0.5, c.kl().coef());
    }
}
