package klrl.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import klrl.rollout.Sample;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The copy of the policy on rollout.devices samples what the trainer's own replicas sample, update
 * after update: a stale or wrongly copied tensor (full fine-tuning copies every weight, LoRA the
 * adapters over shared frozen weights) would change the tokens or their log-probs.
 */
@Tag("e2e") // whole runs: after the unit tests
class RolloutCopyTest {
    @TempDir Path tmp;

    @BeforeAll
    static void model() throws Exception {
        TrainerTest.model();
    }

    @ParameterizedTest
    @ValueSource(strings = {"full", "lora"})
    void theCopySamplesWhatTheTrainingReplicasSample(String tuning) throws Exception {
        Map<String, Object> o = new HashMap<>(Map.of("train.max_steps", 4, "checkpoint.every", 0));
        if (tuning.equals("lora")) {
            o.put("model.lora.rank", 4);
        }
        Map<String, Object> copy = new HashMap<>(o);
        copy.put("rollout.devices", "cpu");
        // in turn: after each update, the next step's rollout from the copy and from the training replica
        try (Trainer a = new Trainer(TrainerTest.small(tmp.resolve("copy"), copy), null, s -> { });
             Trainer b = new Trainer(TrainerTest.small(tmp.resolve("own"), o), null, s -> { })) {
            for (int s = 0; s < 4; s++) {
                a.step(s);
                b.step(s);
                assertSameSamples(b.rollout(s + 1), a.rollout(s + 1), tuning + " after update " + (s + 1));
            }
        }
        // overlapped with lag 1 on the copy = the same lagged run generating on the training replica, in turn
        Map<String, Object> lag = new HashMap<>(o);
        lag.put("algorithm.off_policy_lag", 1);
        lag.put("train.max_steps", 5);
        Map<String, Object> ovl = new HashMap<>(lag);
        ovl.put("rollout.devices", "cpu");
        ovl.put("rollout.overlap", true);
        // a copy on the CPU takes half the trainer's libtorch threads (Replicas.generators), and kernels sum by thread
        // count: the run generating on its own replica computes on that same share, so both compute the same thing
        int share = Math.max(1, klrl.TorchThreads.current() / 2);
        klrl.TorchThreads.with(share, () -> {
            TrainerTest.train(TrainerTest.small(tmp.resolve("lag-own"), lag), null);
            return null;
        });
        TrainerTest.train(TrainerTest.small(tmp.resolve("lag-copy"), ovl), null);
        List<com.fasterxml.jackson.databind.JsonNode> own = TrainerTest.stepLines(tmp.resolve("lag-own")),
                viaCopy = TrainerTest.stepLines(tmp.resolve("lag-copy"));
        assertEquals(5, viaCopy.size());
        for (int i = 0; i < own.size(); i++) {
            Map<String, String> a = TrainerTest.comparable(own.get(i)), b = TrainerTest.comparable(viaCopy.get(i));
            a.remove("live_arrays"); // the copy's own tensors are counted beside the trainer's
            b.remove("live_arrays");
            assertEquals(a.keySet(), b.keySet(), tuning + " lagged step " + (i + 1));
            for (String k : a.keySet()) {
                // what the samples decide is equal; the update's numbers to rounding (the two runs interleave their
                // work otherwise on the threads)
                if (k.startsWith("reward") || k.startsWith("response_length") || k.equals("accuracy") || k.endsWith("version")) {
                    assertEquals(a.get(k), b.get(k), tuning + " lagged step " + (i + 1) + " " + k);
                } else {
                    double x = Double.parseDouble(a.get(k)), y = Double.parseDouble(b.get(k));
                    assertTrue(Math.abs(x - y) <= 1e-3 * Math.max(1, Math.abs(x)), tuning + " lagged step " + (i + 1) + " " + k + ": "
                            + x + " vs " + y);
                }
            }
        }
    }

    static void assertSameSamples(List<Sample> want, List<Sample> got, String what) {
        assertEquals(want.size(), got.size(), what);
        for (int i = 0; i < want.size(); i++) {
            Sample w = want.get(i), g = got.get(i);
            assertEquals(w.promptIndex(), g.promptIndex(), what);
            assertArrayEquals(w.responseIds(), g.responseIds(), what + ", sample " + i);
            for (int t = 0; t < w.logprobs().length; t++) {
                assertTrue(Math.abs(w.logprobs()[t] - g.logprobs()[t]) <= 1e-5, what + ", sample " + i + " token " + t + ": "
                        + w.logprobs()[t] + " vs " + g.logprobs()[t]);
            }
        }
    }
}
