package klrl.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
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
        Files.writeString(f, "rollout:\n  engine: sglang\n  weights_dir: /w\n");
        e = assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertTrue(e.getMessage().contains("rollout.urls"), e.getMessage());
        Files.writeString(f, "rollout:\n  engine: vllm\n  urls: [localhost:8000]\n  weights_dir: /w\n");
        e = assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertTrue(e.getMessage().contains("'localhost:8000' is not an http(s) URL"), e.getMessage());
        Files.writeString(f, "rollout:\n  engine: vllm\n  urls: [http://h:8000]\n");
        e = assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertTrue(e.getMessage().contains("rollout.weights_dir"), e.getMessage());
        Files.writeString(f, "train:\n  parallel: pipeline\n");
        e = assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertTrue(e.getMessage().contains("train.parallel must be auto, data or layers"), e.getMessage());
        // settings that would do nothing, or waste every generation, are refused rather than ignored
        e = assertThrows(UserError.class, () -> ConfigLoader.load(null, Map.of(), List.of("algorithm.filter_groups.enable=true",
                "rollout.n=1")));
        assertTrue(e.getMessage().contains("algorithm.filter_groups.enable needs rollout.n ≥ 2"), e.getMessage());
        e = assertThrows(UserError.class, () -> ConfigLoader.load(null, Map.of(), List.of("algorithm.scale_rewards=batch",
                "algorithm.name=rloo")));
        assertTrue(e.getMessage().contains("algorithm.scale_rewards scales GRPO's advantage; advantage rloo does not use it"),
                e.getMessage());
        assertEquals("batch", ConfigLoader.load(null, Map.of(), List.of("algorithm.scale_rewards=batch")).algorithm().scaleRewards());
        Files.writeString(f, "[1, 2]\n");
        assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertThrows(UserError.class, () -> ConfigLoader.load("no-such-preset", Map.of()));
    }

    @Test
    void attentionIsAutoUnlessSetAndTheGpuPresetsRunSdpa() throws Exception {
        assertEquals("auto", TrainConfig.defaults().model().attention());
        assertEquals("auto", ConfigLoader.load("tiny-cpu", Map.of()).model().attention());
        Path f = tmp.resolve("c.yaml");
        Files.writeString(f, "model:\n  dtype: float32\n");
        assertEquals("auto", ConfigLoader.load(f.toString(), Map.of()).model().attention());
        for (String p : List.of("qwen2.5-7b-math", "llama3.1-8b-math")) {
            assertEquals("sdpa", ConfigLoader.load(p, Map.of()).model().attention(), p);
        }
        for (String mode : List.of("sdpa", "eager", "auto")) {
            assertEquals(mode, ConfigLoader.load(null, Map.of(), List.of("model.attention=" + mode)).model().attention());
        }
        Files.writeString(f, "model:\n  attention: flash\n");
        UserError e = assertThrows(UserError.class, () -> ConfigLoader.load(f.toString(), Map.of()));
        assertTrue(e.getMessage().contains("model.attention must be sdpa, eager or auto, got 'flash'"), e.getMessage());
    }

    @Test
    void overridesWinOverTheFile() {
        TrainConfig c = ConfigLoader.load("grid-k3-loss", Map.of("kl.estimator", "k1", "kl.placement", "reward", "kl.coef", 0.5));
        assertEquals("k1", c.kl().estimator());
        assertEquals("reward", c.kl().placement());
        assertEquals(0.5, c.kl().coef());
    }

    @Test
    void setAssignmentsReachTheConfigTypedAndValidated() {
        TrainConfig c = ConfigLoader.load(null, Map.of(), java.util.List.of("model.lora.rank=64", "rollout.temperature=0.7",
                "model.lora.target_modules=[q_proj, v_proj]", "eval.before_start=false", "kl.target=null", "kl.target=0.05"));
        assertEquals(64, c.model().lora().rank());
        assertEquals(0.7, c.rollout().temperature());
        assertEquals(java.util.List.of("q_proj", "v_proj"), c.model().lora().targetModules());
        assertEquals(false, c.eval().beforeStart());
        assertEquals(0.05, c.kl().target());
        UserError typo = assertThrows(UserError.class, () -> ConfigLoader.load(null, Map.of(), java.util.List.of("rollout.max_new_token=9")));
        assertTrue(typo.getMessage().contains("--set rollout.max_new_token=9: unknown key 'rollout.max_new_token'")
                && typo.getMessage().contains("did you mean 'rollout.max_new_tokens'?"), typo.getMessage());
        UserError type = assertThrows(UserError.class, () -> ConfigLoader.load(null, Map.of(), java.util.List.of("rollout.n=many")));
        assertTrue(type.getMessage().contains("'rollout.n'") && type.getMessage().contains("wrong type"), type.getMessage());
        UserError range = assertThrows(UserError.class, () -> ConfigLoader.load(null, Map.of(), java.util.List.of("train.max_skipped_updates=0")));
        assertTrue(range.getMessage().contains("train.max_skipped_updates must be ≥ 1"), range.getMessage());
        assertThrows(UserError.class, () -> ConfigLoader.load(null, Map.of(), java.util.List.of("no-equals-sign")));
    }

    @Test
    void savedPathsAreAbsoluteAndOnlyTheEvalListIsSplit() {
        var c = ConfigLoader.absolutePaths(ConfigLoader.load(null, Map.of("data.train", "data/{a,b}/*.parquet",
                "data.eval", "data/{x,y}.jsonl,bundled:arith-test, e.jsonl", "output_dir", "runs/r")));
        String cwd = Path.of("").toAbsolutePath().toString();
        assertEquals(cwd + "/data/{a,b}/*.parquet", c.data().train());
        assertEquals(cwd + "/data/{x,y}.jsonl,bundled:arith-test," + cwd + "/e.jsonl", c.data().eval());
        assertEquals(cwd + "/runs/r", c.outputDir());
        assertEquals(null, c.model().path());
    }

    @Test
    void aUserYamlCanStartFromAPreset() throws Exception {
        Path f = tmp.resolve("mine.yaml");
        Files.writeString(f, "base: grid-k3-loss\nkl: {coef: 0.01}\nmodel: {lora: {rank: 64}}\n");
        TrainConfig mine = ConfigLoader.load(f.toString(), Map.of()), preset = ConfigLoader.load("grid-k3-loss", Map.of());
        assertEquals(0.01, mine.kl().coef());
        assertEquals(64, mine.model().lora().rank());
        assertEquals(preset.rollout(), mine.rollout());
        assertEquals(preset.kl().parsedPlacement(), mine.kl().parsedPlacement());
        Path loop = tmp.resolve("loop.yaml");
        Files.writeString(loop, "base: loop.yaml\n");
        UserError e = assertThrows(UserError.class, () -> ConfigLoader.load(loop.toString(), Map.of()));
        assertTrue(e.getMessage().contains("'base' chain loops"), e.getMessage());
    }
}
